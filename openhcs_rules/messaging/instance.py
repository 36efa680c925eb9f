"""Instance management: check -> connect -> start -> wait for pong, for any dual-channel server.

* check: this process already saw the server answer a moment ago (no network round trip);
* connect: a server of the expected kind answers ping on the port;
* start: only on this machine, only if both ports are free, spawn the server as a detached process (own
  session, output to a log file) so it outlives the job or command that started it;
* wait: ping until it answers, the process exits, or the timeout passes - each with a clear error.

A port held by something that does not answer ping (or answers as another kind) is reported with its
holder and never killed: it may be someone else's work. The only process this module ever terminates is
one it started itself that never became ready.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openhcs_rules.messaging.addresses import data_port, is_local_host, port_holder, port_is_free
from openhcs_rules.messaging.client import ControlClient
from openhcs_rules.messaging.errors import (
    PortInUseError,
    ServerError,
    ServerNotResponding,
    ServerStartError,
)

log = logging.getLogger(__name__)

#: a pong seen this recently counts as "connected" without asking again
FRESH_S = 2.0
PROBE_TIMEOUT_S = 0.5

_seen: dict[tuple[str, int], tuple[float, dict[str, Any]]] = {}


@dataclass
class ServerSpec:
    """How to reach, and if needed start, one server."""

    kind: str
    port: int
    host: str = "127.0.0.1"
    keys_dir: str | None = None
    command: list[str] = field(default_factory=list)  # argv that starts it; empty = never start
    env: dict[str, str] | None = None
    log_path: Path | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def probe(spec: ServerSpec, timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, Any] | None:
    """The pong of a server answering on the port, or None when nothing answers.

    Raises :class:`PortInUseError` when a server of another kind answers, and lets
    :class:`AuthenticationError` through: both need a person, not a retry.
    """
    with ControlClient(spec.host, spec.port, spec.keys_dir, timeout_s=timeout_s) as client:
        try:
            pong = client.ping()
        except (ServerNotResponding, ServerError):
            return None
    server = pong["server"]
    if server.get("kind") != spec.kind:
        raise PortInUseError(
            f"port {spec.port} on {spec.host} is held by a {server.get('kind')!r} server (pid {server.get('pid')}), "
            f"not a {spec.kind} viewer: choose another port for {spec.kind}"
        )
    _seen[(spec.host, spec.port)] = (time.monotonic(), pong)
    return pong


def check(spec: ServerSpec) -> dict[str, Any] | None:
    """The last pong if this process saw one within :data:`FRESH_S` (no network)."""
    seen = _seen.get((spec.host, spec.port))
    if seen and time.monotonic() - seen[0] < FRESH_S and seen[1]["server"].get("kind") == spec.kind:
        return seen[1]
    return None


def _held_ports(spec: ServerSpec) -> list[str]:
    held = []
    for port in (spec.port, data_port(spec.port)):
        if not port_is_free(spec.host, port):
            held.append(f"port {port} by {port_holder(port)}")
    return held


def start(spec: ServerSpec) -> subprocess.Popen[bytes]:
    """Spawn the server detached: new session (a job's kill does not reach it), output to its log file."""
    if not spec.command:
        raise ServerStartError(f"no {spec.kind} server answers on {spec.address} and none can be started from here")
    held = _held_ports(spec)
    if held:
        raise PortInUseError(
            f"cannot start a {spec.kind} viewer on {spec.address}: "
            + "; ".join(held)
            + " - it does not answer ping as a viewer, so it is left alone; stop it or choose another port"
        )
    log_path = spec.log_path or Path(os.devnull)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            spec.command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=spec.env,
        )
    log.info("started %s viewer on %s (pid %d, log %s)", spec.kind, spec.address, process.pid, log_path)
    return process


def _log_tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.is_file():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n  | ".join(["", *text]) if text else ""


def wait_ready(spec: ServerSpec, process: subprocess.Popen[bytes] | None, timeout_s: float) -> dict[str, Any]:
    """Ping until the server answers; an early exit or the timeout raises :class:`ServerStartError`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerStartError(
                f"the {spec.kind} viewer for {spec.address} exited with status {process.returncode} before it "
                f"answered ping; its log ({spec.log_path}):{_log_tail(spec.log_path)}"
            )
        pong = probe(spec, timeout_s=min(0.5, max(0.05, deadline - time.monotonic())))
        if pong is not None and pong["status"].get("ready", True):
            return pong
        time.sleep(0.05)
    if process is not None:
        process.terminate()  # ours, and never ready: do not leave it holding the port
    raise ServerStartError(
        f"the {spec.kind} viewer for {spec.address} did not answer ping within {timeout_s:.0f} s; "
        f"its log ({spec.log_path}):{_log_tail(spec.log_path)}"
    )


def ensure_server(spec: ServerSpec, timeout_s: float = 60.0, allow_start: bool = True) -> dict[str, Any]:
    """check -> connect -> start -> wait; returns ``{"state": "connected"|"started", "pong": ...}``."""
    seen = check(spec)
    if seen is not None:
        return {"state": "connected", "pong": seen}
    pong = probe(spec)
    if pong is not None:
        return {"state": "connected", "pong": pong}
    if not allow_start or not is_local_host(spec.host):
        where = "that host" if not is_local_host(spec.host) else "this host"
        raise ServerNotResponding(
            f"no {spec.kind} viewer answers on {spec.address}; start it on {where} with "
            f"`openhcs-rules viewer start --kind {spec.kind} --port {spec.port} --host {spec.host}`"
        )
    started = time.monotonic()
    process = start(spec)
    pong = wait_ready(spec, process, timeout_s)
    return {"state": "started", "pong": pong, "start_s": round(time.monotonic() - started, 3)}


def stop_server(spec: ServerSpec, timeout_s: float = 15.0) -> dict[str, Any]:
    """Ask a server to shut down over its control channel and wait until both ports are free.

    Raises :class:`PortInUseError` when the port is held by something that does not answer as this kind.
    """
    pong = probe(spec)
    if pong is None:
        held = _held_ports(spec) if is_local_host(spec.host) else []
        if held:
            raise PortInUseError(
                f"nothing answers as a {spec.kind} viewer on {spec.address}, but "
                + "; ".join(held)
                + ": not stopping a process this tool did not identify"
            )
        return {"state": "not running"}
    with ControlClient(spec.host, spec.port, spec.keys_dir, timeout_s=5.0) as client:
        client.call("shutdown")
    _seen.pop((spec.host, spec.port), None)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if probe(spec, timeout_s=0.2) is None and (not is_local_host(spec.host) or not _held_ports(spec)):
                return {"state": "stopped", "pid": pong["server"].get("pid")}
        except PortInUseError:
            pass
        time.sleep(0.1)
    raise ServerStartError(f"the {spec.kind} viewer on {spec.address} acknowledged shutdown but still holds its port")
