"""The execution server's client: requests on the control channel, and a run's events as they happen.

:meth:`ExecutionClient.watch` gives every event of a run in order, from the one after ``after``: it asks the
server's progress channel (base + 1000) to push them, renews that watch every :data:`RENEW_S` seconds, and,
when nothing arrives for a while, asks the control channel for what it may have missed (a server restarted
in between forgets its watchers; the store does not forget events). It ends after the event that puts the
run in a terminal state (``run_state`` with a terminal state), so ``submit --wait`` ends when the run does.

:func:`hybrid_streaming` and :meth:`ExecutionClient.authorize_stream_key` are the client's half of a hybrid run
(the server computes, the viewer is on this machine): the config's ``curve_keys_dir`` names the viewer's
keys folder here; its public key goes to the server as ``viewer_keys`` (the path itself is not sent: it
means nothing there), and the server's streaming public key is authorized in that folder, so the viewer
accepts the run's frames.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
import zmq
import zmq.auth

from openhcs_rules.errors import ConfigError
from openhcs_rules.execution.states import RunState
from openhcs_rules.messaging import messages
from openhcs_rules.messaging.addresses import check_base_port, connect_host, data_port, tcp_endpoint
from openhcs_rules.messaging.auth import AUTHORIZED, load_client_keys, secure_client_socket
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
    def submit(
        self,
        config: str,
        pipeline: str | None = None,
        pipeline_name: str | None = None,
        viewer_keys: dict[str, str] | None = None,
        platemaps: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Submit a screen; ``viewer_keys`` (viewer kind -> public key) for viewers on this machine, see
        :func:`hybrid_streaming`; ``platemaps`` (plate -> CSV text) read here, see :func:`local_platemaps`."""
        fields = {"config": config, "pipeline": pipeline, "pipeline_name": pipeline_name}
        return dict(self.call("submit", **fields, viewer_keys=viewer_keys or None, platemaps=platemaps or None))

    def stream_key(self) -> str:
        """The server's streaming public key (Z85): the key its runs' jobs present to a viewer."""
        return str(self.call("stream_key")["public_key"])

    def authorize_stream_key(self, viewer_keys_dir: str | Path) -> Path:
        """Let a viewer started with ``viewer_keys_dir`` accept this server's runs: its streaming public key
        (checked, public only) in ``authorized_clients/execution-server-<host>.key``; the file's path."""
        from openhcs_rules.execution.submission import check_public_key, write_certificate

        public = check_public_key(self.stream_key(), f"the stream key of {self.host}:{self.port}")
        folder = Path(viewer_keys_dir).expanduser() / AUTHORIZED
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"execution-server-{re.sub(r'[^A-Za-z0-9._-]', '_', self.host)}.key"
        write_certificate(path, public)
        return path

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


def local_platemaps(config_text: str, base: str | Path = ".") -> dict[str, str]:
    """The plate maps a config names that exist on this machine (relative paths from ``base``), as texts.

    A plate map is written by the person submitting, on their machine: it travels with the submission and
    the server keeps a copy in the run folder. A path that does not exist here is left to the server (a map
    under its data roots).
    """
    try:
        config = yaml.safe_load(config_text)
    except yaml.YAMLError:
        return {}
    plates = config.get("plates") if isinstance(config, dict) else None
    found: dict[str, str] = {}
    for name, plate in (plates or {}).items() if isinstance(plates, dict) else ():
        path = plate.get("platemap") if isinstance(plate, dict) else None
        if not isinstance(path, str):
            continue
        local = Path(path).expanduser()
        local = local if local.is_absolute() else Path(base) / local
        if local.is_file():
            found[str(name)] = local.read_text(encoding="utf-8-sig")
    return found


@dataclass(frozen=True)
class HybridStreaming:
    """A config ready to send for a run that streams to viewers on this machine (see :func:`hybrid_streaming`)."""

    config: str  # the config text to send: without the local curve_keys_dir
    keys_dir: Path | None = None  # the viewer's keys folder here, where the server's key is to be authorized
    viewer_keys: dict[str, str] = field(default_factory=dict)


class _PlainDumper(yaml.SafeDumper):
    """Writes shared values out in full: the server refuses YAML anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def hybrid_streaming(config_text: str, base: str | Path = ".") -> HybridStreaming:
    """The config to submit and the keys to send when its ``streaming`` section names a ``curve_keys_dir``.

    That folder is the viewer's keys folder on this machine (relative paths from ``base``): its
    ``server.key`` is the public key of the viewer(s), sent for every enabled viewer; the path is removed
    from the config, which is otherwise sent as written. A config without it is sent unchanged (the server
    then refuses viewers beyond loopback, saying why).
    """
    try:
        config = yaml.safe_load(config_text)
    except yaml.YAMLError:
        return HybridStreaming(config_text)  # the server names the problem, with its line
    streaming = config.get("streaming") if isinstance(config, dict) else None
    if not isinstance(streaming, dict) or not streaming.get("curve_keys_dir"):
        return HybridStreaming(config_text)
    from openhcs_rules.config.streaming import viewer_targets

    keys_dir = Path(str(streaming["curve_keys_dir"])).expanduser()
    keys_dir = keys_dir if keys_dir.is_absolute() else Path(base) / keys_dir
    server_key = keys_dir / "server.key"
    try:
        public, _ = zmq.auth.load_certificate(server_key)
    except (OSError, ValueError):
        raise ConfigError(
            f"streaming.curve_keys_dir: no viewer key at {server_key}; start the viewer on this machine with "
            f"`openhcs-rules viewer start --kind KIND --host ADDRESS --keys-dir {keys_dir}` (it makes the keys), "
            "or make them first with `openhcs-rules viewer keys --keys-dir DIR`"
        ) from None
    kinds = [target.kind for target in viewer_targets(streaming)]
    config = {**config, "streaming": {key: value for key, value in streaming.items() if key != "curve_keys_dir"}}
    text = yaml.dump(config, Dumper=_PlainDumper, sort_keys=False)
    if not kinds:  # streaming is off: nothing to authorize
        return HybridStreaming(text)
    return HybridStreaming(text, keys_dir, dict.fromkeys(kinds, public.decode("ascii")))


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
