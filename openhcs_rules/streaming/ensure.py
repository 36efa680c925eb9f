"""Make sure every enabled viewer is up before a plate's wells are processed (the workflow's first step).

For each viewer: check -> connect -> start -> wait for pong (:mod:`openhcs_rules.zmq.instance`). Streaming
is a side effect, so a viewer that cannot be reached or started is a warning and a line in the returned
report, never an exception: the screen still runs, the jobs just find no viewer and say so once.
"""

from __future__ import annotations

import logging
from typing import Any

from openhcs_rules.errors import OpenHCSError
from openhcs_rules.streaming.config import ViewerTarget, viewer_command, viewer_log_path, viewer_targets
from openhcs_rules.zmq.auth import ensure_keys
from openhcs_rules.zmq.instance import ServerSpec, ensure_server

log = logging.getLogger(__name__)


def server_spec(target: ViewerTarget) -> ServerSpec:
    """The instance manager's view of a viewer target (with the command that starts it)."""
    return ServerSpec(
        kind=target.kind,
        port=target.port,
        host=target.host,
        keys_dir=target.keys_dir,
        command=viewer_command(target) if target.start else [],
        log_path=viewer_log_path(target.kind, target.port),
    )


def ensure_viewer(target: ViewerTarget) -> dict[str, Any]:
    """One viewer: ``{"state": connected|started|unavailable, ...}``; never raises for a viewer problem."""
    report: dict[str, Any] = {"host": target.host, "port": target.port}
    try:
        if target.keys_dir:
            ensure_keys(target.keys_dir)
        result = ensure_server(server_spec(target), timeout_s=target.start_timeout_s, allow_start=target.start)
    except OpenHCSError as exc:
        log.warning("streaming to %s at %s is off: %s", target.kind, target.address, exc)
        return {**report, "state": "unavailable", "error": str(exc)}
    server = result["pong"]["server"]
    report.update(state=result["state"], pid=server.get("pid"), server_host=server.get("host"), auth=server.get("auth"))
    if "start_s" in result:
        report["start_s"] = result["start_s"]
    log.info("%s viewer %s at %s (pid %s)", target.kind, result["state"], target.address, server.get("pid"))
    return report


def ensure_viewers(streaming_config: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every enabled viewer of the ``streaming`` config section, checked/started: ``{kind: report}``."""
    return {target.kind: ensure_viewer(target) for target in viewer_targets(streaming_config)}
