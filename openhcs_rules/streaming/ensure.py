"""Make sure every enabled viewer is up before a plate's wells are processed (the workflow's first step).

For each viewer: check -> connect -> start -> wait for pong (:mod:`openhcs_rules.messaging.instance`). Streaming
is a side effect, so a viewer that cannot be reached or started is a warning and a line in the returned
report, never an exception: the screen still runs, the jobs just find no viewer and say so once.

In the workflow (``workflow/rules/viewers.smk``) the local rule ``ensure_viewer`` runs this for one viewer
per job and writes its report to :data:`VIEWER_RECORD`; the rule ``viewers`` then writes the streaming
block the well jobs read to :data:`VIEWER_SETTINGS` (see :func:`settings_text`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from openhcs_rules.config.streaming import DEFAULT_PORTS, ViewerTarget, viewer_targets
from openhcs_rules.errors import OpenHCSError
from openhcs_rules.messaging.auth import ensure_keys
from openhcs_rules.messaging.instance import ServerSpec, ensure_server

log = logging.getLogger(__name__)


def viewer_command(target: ViewerTarget) -> list[str]:
    """The argv that starts ``target``'s viewer process with this interpreter."""
    command = [sys.executable, "-m", f"openhcs_rules.viewers.{target.kind}_viewer", "--port", str(target.port)]
    command += ["--host", target.host]
    if target.keys_dir:
        command += ["--keys-dir", target.keys_dir]
    if target.xvfb:
        command.append("--xvfb")
    return command


def viewer_log_path(kind: str, port: int) -> Path:
    """Where a started viewer writes its output: ``$XDG_CACHE_HOME/openhcs-rules/viewers/<kind>-<port>.log``."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "openhcs-rules" / "viewers" / f"{kind}-{port}.log"


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
        if target.keys_dir and target.start:
            # keys are made only for a viewer this may start: a folder holding another machine's viewer key
            # (server.key without its secret, e.g. a remote run's) would otherwise get a new server keypair
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


#: under the workflow's working directory: one viewer's report (the identity it answered with), per run
VIEWER_RECORD = ".openhcs/viewers/{kind}-{port}.json"
#: the streaming block every well job reads (an input of theirs that never makes them run again)
VIEWER_SETTINGS = ".openhcs/viewers.json"


def viewer_section(streaming_config: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    """The ``streaming`` block with only ``kind`` left enabled: what ``viewer ensure`` gets for one viewer."""
    section = dict(streaming_config or {})
    for other in DEFAULT_PORTS:
        if other != kind:
            section.pop(other, None)
    return section


def viewer_records(streaming_config: dict[str, Any] | None) -> list[str]:
    """:data:`VIEWER_RECORD` of every enabled viewer (the outputs of the workflow's ``ensure_viewer`` jobs)."""
    return [VIEWER_RECORD.format(kind=t.kind, port=t.port) for t in viewer_targets(streaming_config)]


def settings_text(streaming_config: dict[str, Any] | None) -> str:
    """The content of :data:`VIEWER_SETTINGS`: the block as JSON, ``{}`` when no viewer is enabled."""
    block = streaming_config if viewer_targets(streaming_config) else {}
    return json.dumps(block, sort_keys=True) + "\n"


def write_settings(path: str | Path, streaming_config: dict[str, Any] | None) -> bool:
    """Write :func:`settings_text` to ``path`` unless it already holds exactly that; True when written.

    Atomic (a reader sees the old or the new block), and no write at all when nothing changed, so the many
    Snakemake processes of one run that parse the Snakefile do not touch the file.
    """
    from openhcs_rules.core.files import atomic_write_text

    path = Path(path)
    text = settings_text(streaming_config)
    try:
        if path.read_text() == text:
            return False
    except (FileNotFoundError, NotADirectoryError):
        pass
    os.makedirs(path.parent, exist_ok=True)
    atomic_write_text(path, text)
    return True
