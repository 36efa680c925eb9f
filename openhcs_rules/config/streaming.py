"""The ``streaming:`` section of a screen config, turned into the viewers to reach.

Accepted forms (off by default)::

    streaming: {napari: true}                                   # napari on 127.0.0.1:5555
    streaming:
      napari: {host: login01, port: 5555}                       # a viewer cluster jobs can reach
      fiji: {port: 5565, xvfb: true}                            # Fiji on a private X display
      curve_keys_dir: ~/.config/openhcs-rules/curve             # needed when a host is not loopback

Per viewer: ``host`` (default 127.0.0.1), ``port`` (napari 5555, fiji 5565), ``transport`` (auto: shared
memory on the viewer's own host, compressed inline frames from other hosts), ``xvfb`` (start the viewer on
a private X display), ``start`` (whether the workflow may start it when nothing answers).

Here, not in :mod:`openhcs_rules.streaming`, so that the config checks (:mod:`openhcs_rules.config.checks`)
read it without importing the streaming code; how a viewer is started is :mod:`openhcs_rules.streaming.ensure`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openhcs_rules.config.schema import schema_default, validate_section
from openhcs_rules.errors import ConfigError
from openhcs_rules.messaging.addresses import is_loopback

#: viewer kind -> default base port (record: the headless viewer used by tests and benchmarks)
DEFAULT_PORTS = {"napari": 5555, "fiji": 5565, "record": 5575}


def _viewer_default(key: str) -> Any:
    return schema_default("streaming", "napari", key)


def _top_default(key: str) -> Any:
    return schema_default("streaming", key)


@dataclass(frozen=True)
class ViewerTarget:
    """One enabled viewer: where it listens and how senders and the starter treat it (defaults: the schema's)."""

    kind: str
    host: str = _viewer_default("host")
    port: int = DEFAULT_PORTS["napari"]
    transport: str = _viewer_default("transport")
    xvfb: bool = _viewer_default("xvfb")
    start: bool = _viewer_default("start")
    keys_dir: str | None = _top_default("curve_keys_dir")
    connect_timeout_s: float = _top_default("connect_timeout_s")
    ack_timeout_s: float = _top_default("ack_timeout_s")
    start_timeout_s: float = float(_top_default("start_timeout_s"))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _viewer(kind: str, value: bool | dict[str, Any], top: dict[str, Any]) -> ViewerTarget | None:
    """One viewer of a section the schema accepted (so only what a schema cannot say is checked here)."""
    if value is False:
        return None
    options = {} if value is True else value
    given = {key: options.get(key, _viewer_default(key)) for key in ("enabled", "host", "transport", "xvfb", "start")}
    if not given["enabled"]:
        return None
    host = given["host"]
    keys_dir = top["curve_keys_dir"]
    if keys_dir is None and not is_loopback(host):
        raise ConfigError(
            f"streaming.{kind}.host {host!r} is reachable from other machines: set streaming.curve_keys_dir to a "
            "folder of CURVE keys (created by `openhcs-rules viewer keys --keys-dir DIR`; shared with the jobs)"
        )
    return ViewerTarget(
        kind=kind,
        host=host,
        port=int(options.get("port", DEFAULT_PORTS[kind])),  # the schema also takes 5555.0 as an integer
        transport=given["transport"],
        xvfb=given["xvfb"],
        start=given["start"],
        keys_dir=str(Path(keys_dir).expanduser()) if keys_dir else None,
        connect_timeout_s=float(top["connect_timeout_s"]),
        ack_timeout_s=float(top["ack_timeout_s"]),
        start_timeout_s=float(top["start_timeout_s"]),
    )


def viewer_targets(streaming: dict[str, Any] | None) -> list[ViewerTarget]:
    """The enabled viewers of a ``streaming`` config section (empty when streaming is off).

    The section is checked against the schema's ``streaming`` block, the one definition of what it accepts
    (a job gets the block as JSON, unchecked until here); this adds only what a schema cannot express.
    """
    if streaming is None or streaming == {}:
        return []
    section = validate_section("streaming", streaming)
    targets = [_viewer(kind, section[kind], section) for kind in DEFAULT_PORTS]
    enabled = [t for t in targets if t is not None]
    addresses = [t.address for t in enabled]
    if len(addresses) != len(set(addresses)):
        raise ConfigError(f"streaming: two viewers share an address ({addresses}); give each its own port")
    return enabled
