"""The execution server's client: requests on the control channel, and a run's events as they happen.

:meth:`ExecutionClient.watch` gives every event of a run in order, from the one after ``after``: it asks the
server's progress channel (base + 1000) to push them, renews that watch every :data:`RENEW_S` seconds, and,
when nothing arrives for a while, asks the control channel for what it may have missed (a server restarted
in between forgets its watchers; the store does not forget events). It ends after the event that puts the
run in a terminal state (``run_state`` with a terminal state), so ``submit --wait`` ends when the run does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zmq

from openhcs_rules.execution.states import RunState
from openhcs_rules.messaging import messages
from openhcs_rules.messaging.addresses import check_base_port, connect_host, data_port, tcp_endpoint
from openhcs_rules.messaging.auth import load_client_keys, secure_client_socket
from openhcs_rules.messaging.client import ControlClient
from openhcs_rules.messaging.errors import MessageError, ServerError

#: a client renews its watch this often (the server drops watches older than 30 s)
RENEW_S = 10.0
#: with no event for this long, the client asks the control channel for missed events
CATCH_UP_S = 2.0


def parse_server(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``tcp://HOST:PORT`` (or ``[v6]:PORT``) as (host, port)."""
    text = address.removeprefix("tcp://")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"server address {address!r}: expected HOST:PORT, e.g. localhost:7777")
    return host.strip("[]") or "127.0.0.1", check_base_port(int(port))


class ExecutionClient:
    """Talks to one execution server; every method raises ServerError with the server's reason on refusal."""

    def __init__(self, host: str, port: int, keys_dir: str | Path | None = None, timeout_s: float = 30.0) -> None:
        self.host, self.port = host, check_base_port(port)
        self.keys_dir = keys_dir
        self.timeout_s = timeout_s
        self._control = ControlClient(host, port, keys_dir=keys_dir, timeout_s=timeout_s)

    def close(self) -> None:
        self._control.close()

    def __enter__(self) -> ExecutionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, kind: str, **fields: Any) -> Any:
        """One control request; its ``result``."""
        return self._control.call(kind, **{key: value for key, value in fields.items() if value is not None})

    # -- requests ---------------------------------------------------------------------------------------
    def submit(self, config: str, pipeline: str | None = None, pipeline_name: str | None = None) -> dict[str, Any]:
        return dict(self.call("submit", config=config, pipeline=pipeline, pipeline_name=pipeline_name))

    def runs(self, everyone: bool = False) -> list[dict[str, Any]]:
        return list(self.call("runs", all=everyone or None)["runs"])

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.call("run", run_id=run_id))

    def events(self, run_id: str, after: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        return list(self.call("events", run_id=run_id, after=after, limit=limit)["events"])

    def cancel(self, run_id: str, mode: str = "drain") -> dict[str, Any]:
        return dict(self.call("cancel", run_id=run_id, mode=mode))

    def resume(self, run_id: str) -> dict[str, Any]:
        return dict(self.call("resume", run_id=run_id))

    def logs(self, run_id: str, tail: int | None = None) -> str:
        return str(self.call("logs", run_id=run_id, tail=tail)["log"])

    def results(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.call("results", run_id=run_id)["files"])

    def pipelines(self) -> list[str]:
        return list(self.call("pipelines")["pipelines"])

    # -- events as they happen --------------------------------------------------------------------------
    def watch(self, run_id: str, after: int = 0, stop_when_done: bool = True) -> Iterator[dict[str, Any]]:
        """Every event of the run after ``after``, in order and without gaps, as the server stores them.

        Each event: ``{"run_id", "seq", "time", "type", "body"}``. Ends after the event that makes the run
        terminal (with ``stop_when_done``), or when the caller stops iterating.
        """
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if self.keys_dir:
            secure_client_socket(sock, load_client_keys(self.keys_dir))
        sock.connect(tcp_endpoint(connect_host(self.host), data_port(self.port)))
        seen = after
        try:
            current = self.run(run_id)
            if stop_when_done and RunState(current["state"]).terminal:
                # a finished run: what is stored is all there is
                yield from self._replay(run_id, seen)
                return
            # a terminal state in the history (a run cancelled, then resumed) does not end the watch
            history_end = int(current["last_seq"])

            def _ends_run(event: dict[str, Any]) -> bool:
                return event["seq"] > history_end and _is_terminal_state(event)

            sock.send(messages.encode(messages.make("watch", run_id=run_id, after=seen)))
            renewed = last_event = time.monotonic()
            while True:
                now = time.monotonic()
                if now - renewed >= RENEW_S:
                    sock.send(messages.encode(messages.make("watch", run_id=run_id, after=seen)))
                    renewed = now
                if now - last_event >= CATCH_UP_S:
                    # nothing pushed for a while: a restarted server forgot this watch, or the run ended
                    for event in self._replay(run_id, seen):
                        seen = event["seq"]
                        yield event
                        if stop_when_done and _ends_run(event):
                            return
                    if stop_when_done and RunState(self.run(run_id)["state"]).terminal:
                        for event in self._replay(run_id, seen):
                            yield event
                        return
                    sock.send(messages.encode(messages.make("watch", run_id=run_id, after=seen)))
                    renewed = last_event = time.monotonic()
                if not sock.poll(200):
                    continue
                message = _decode(sock.recv())
                if message["type"] == "error":
                    raise ServerError(f"{self.host}:{self.port} refused to watch {run_id}: {message['error']}")
                if message["type"] != "event" or message["run_id"] != run_id:
                    continue  # the watch's acknowledgement
                last_event = time.monotonic()
                if message["seq"] <= seen:
                    continue  # already seen (a catch-up overlapped the push)
                if message["seq"] != seen + 1:
                    # a gap (ZMQ dropped pushes to a slow client): fetch the missing ones from the store
                    for event in self._replay(run_id, seen, upto=message["seq"] - 1):
                        seen = event["seq"]
                        yield event
                event = _event_of(message)
                seen = event["seq"]
                yield event
                if stop_when_done and _ends_run(event):
                    return
        finally:
            sock.close(linger=0)

    def _replay(self, run_id: str, after: int, upto: int | None = None) -> Iterator[dict[str, Any]]:
        """Stored events after ``after`` (up to ``upto``), page by page."""
        while True:
            page = self.events(run_id, after=after)
            for event in page:
                if upto is not None and event["seq"] > upto:
                    return
                after = event["seq"]
                yield event
            if not page:
                return


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        return messages.decode(raw)
    except MessageError as exc:
        raise ServerError(f"the progress channel sent a malformed message: {exc}") from None


def _event_of(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": message["run_id"],
        "seq": message["seq"],
        "time": message["time"],
        "type": message["event"],
        "body": message["body"],
    }


def _is_terminal_state(event: dict[str, Any]) -> bool:
    """True for an event that puts a run in a terminal state."""
    if event["type"] != "run_state":
        return False
    try:
        return RunState(event["body"].get("state")).terminal
    except ValueError:
        return False
