"""The ``streaming:`` section of a screen config, turned into the viewers to reach (and how to start them).

Accepted forms (off by default)::

    streaming: {napari: true}                                   # napari on 127.0.0.1:5555
    streaming:
      napari: {host: login01, port: 5555}                       # a viewer cluster jobs can reach
      fiji: {port: 5565, xvfb: true}                            # Fiji on a private X display
      curve_keys_dir: ~/.config/openhcs-rules/curve             # needed when a host is not loopback

Per viewer: ``host`` (default 127.0.0.1), ``port`` (napari 5555, fiji 5565), ``transport`` (auto: shared
memory on the viewer's own host, compressed inline frames from other hosts), ``xvfb`` (start the viewer on
a private X display), ``start`` (whether the workflow may start it when nothing answers).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openhcs_rules.errors import ConfigError
from openhcs_rules.zmq.addresses import DEFAULT_HOST, check_base_port, is_loopback

#: viewer kind -> default base port (record: the headless viewer used by tests and benchmarks)
DEFAULT_PORTS = {"napari": 5555, "fiji": 5565, "record": 5575}
VIEWER_OPTIONS = {"enabled", "host", "port", "transport", "xvfb", "start"}
TOP_OPTIONS = {"curve_keys_dir", "connect_timeout_s", "ack_timeout_s", "start_timeout_s"}


@dataclass(frozen=True)
class ViewerTarget:
    """One enabled viewer: where it listens and how senders and the starter treat it."""

    kind: str
    host: str = DEFAULT_HOST
    port: int = 5555
    transport: str = "auto"
    xvfb: bool = False
    start: bool = True
    keys_dir: str | None = None
    connect_timeout_s: float = 1.0
    ack_timeout_s: float = 5.0
    start_timeout_s: float = 120.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _viewer(kind: str, value: Any, top: dict[str, Any]) -> ViewerTarget | None:
    if value is None or value is False:
        return None
    options: dict[str, Any] = {} if value is True else value
    if not isinstance(options, dict):
        raise ConfigError(f"streaming.{kind} must be true/false or a mapping of {sorted(VIEWER_OPTIONS)}")
    unknown = set(options) - VIEWER_OPTIONS
    if unknown:
        raise ConfigError(f"streaming.{kind}: unknown option(s) {sorted(unknown)}; use {sorted(VIEWER_OPTIONS)}")
    if not options.get("enabled", True):
        return None
    host = str(options.get("host", DEFAULT_HOST))
    try:
        port = check_base_port(int(options.get("port", DEFAULT_PORTS[kind])))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"streaming.{kind}.port: {exc}") from None
    transport = options.get("transport", "auto")
    if transport not in ("auto", "shm", "inline"):
        raise ConfigError(f"streaming.{kind}.transport must be auto, shm or inline, not {transport!r}")
    keys_dir = top.get("curve_keys_dir")
    if keys_dir is None and not is_loopback(host):
        raise ConfigError(
            f"streaming.{kind}.host {host!r} is reachable from other machines: set streaming.curve_keys_dir to a "
            "folder of CURVE keys (created by `openhcs-rules viewer keys --keys-dir DIR`; shared with the jobs)"
        )
    return ViewerTarget(
        kind=kind,
        host=host,
        port=port,
        transport=transport,
        xvfb=bool(options.get("xvfb", False)),
        start=bool(options.get("start", True)),
        keys_dir=str(Path(keys_dir).expanduser()) if keys_dir else None,
        connect_timeout_s=float(top.get("connect_timeout_s", 1.0)),
        ack_timeout_s=float(top.get("ack_timeout_s", 5.0)),
        start_timeout_s=float(top.get("start_timeout_s", 120.0)),
    )


def viewer_targets(streaming: dict[str, Any] | None) -> list[ViewerTarget]:
    """The enabled viewers of a ``streaming`` config section (empty when streaming is off)."""
    if not streaming:
        return []
    if not isinstance(streaming, dict):
        raise ConfigError("streaming must be a mapping like {napari: true, fiji: false}")
    unknown = set(streaming) - set(DEFAULT_PORTS) - TOP_OPTIONS
    if unknown:
        raise ConfigError(f"streaming: unknown key(s) {sorted(unknown)}; viewers are {sorted(DEFAULT_PORTS)}")
    targets = [_viewer(kind, streaming.get(kind), streaming) for kind in DEFAULT_PORTS]
    enabled = [t for t in targets if t is not None]
    addresses = [t.address for t in enabled]
    if len(addresses) != len(set(addresses)):
        raise ConfigError(f"streaming: two viewers share an address ({addresses}); give each its own port")
    return enabled


def viewer_command(target: ViewerTarget) -> list[str]:
    """The argv that starts ``target``'s viewer process with this interpreter."""
    command = [sys.executable, "-m", f"openhcs_rules.streaming.{target.kind}_viewer", "--port", str(target.port)]
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
