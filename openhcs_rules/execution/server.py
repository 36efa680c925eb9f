"""``openhcs-rules serve``: the execution server next to the data.

One process: the ZMQ control channel on the base port (request/reply: submit, runs, run, events, cancel,
resume, logs, results, pipelines, stream_key; every request answered, errors included, by the
:class:`~openhcs_rules.messaging.server.DualChannelServer` it builds on) and the progress channel on
base + 1000, where a client asks to *watch* a run and the server pushes that run's numbered events to it.

Why progress is pushed per watcher rather than broadcast on a PUB socket: a PUB socket filters topics on the
subscriber's side, so every client would receive every user's events; here the server checks, for each
``watch``, that the peer may see the run, and sends events only to that peer. A watch names the last event
the client saw (``after``), so a late or reconnecting client gets every event from there, in order, without
gaps: the events come from the durable store, not from memory. A client renews its watch every few
seconds; a watch not renewed for :data:`WATCH_TTL_S` is dropped (ZMQ does not tell a ROUTER when a peer
leaves).

Runs are executed by the :class:`~openhcs_rules.execution.runner.RunSupervisor` (one Snakemake process
per run, own folder and process group) and recorded in the
:class:`~openhcs_rules.execution.store.RunStore`; this module only validates requests, checks who may do
what (:mod:`openhcs_rules.execution.users`) and answers.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from openhcs_rules.errors import OpenHCSError
from openhcs_rules.execution.runner import RunSupervisor
from openhcs_rules.execution.service import MAX_EVENTS, RunNotVisible, RunService
from openhcs_rules.execution.states import CancelMode
from openhcs_rules.execution.store import RunStore
from openhcs_rules.execution.submission import ServerPolicy, SubmissionError, ensure_stream_keys
from openhcs_rules.execution.users import Users
from openhcs_rules.messaging import messages
from openhcs_rules.messaging.addresses import DEFAULT_HOST
from openhcs_rules.messaging.errors import MessageError
from openhcs_rules.messaging.server import DualChannelServer, Reply

log = logging.getLogger(__name__)

#: the execution server's base port (control; progress on base + 1000)
DEFAULT_PORT = 7777
#: a watch not renewed within this many seconds is dropped
WATCH_TTL_S = 30.0
#: events pushed to one watcher per round (the rest follow in the next rounds, in order)
PUSH_BATCH = 200
#: how often the pusher looks for new events
PUSH_INTERVAL_S = 0.05
#: the largest message accepted on the progress channel (a watch is ~100 bytes)
PROGRESS_MAX_BYTES = 64 * 1024


@dataclass
class _Watch:
    run_id: str
    sent: int  # seq of the last event sent
    renewed: float  # monotonic time of the last watch message


class ExecutionServer(DualChannelServer):
    """Accepts screens, runs them through the supervisor, and answers and pushes their state and events."""

    def __init__(
        self,
        policy: ServerPolicy,
        store: RunStore,
        supervisor: RunSupervisor,
        port: int = DEFAULT_PORT,
        host: str = DEFAULT_HOST,
        keys_dir: str | Path | None = None,
        operators: tuple[str, ...] = (),
    ) -> None:
        super().__init__("execution", port, host=host, keys_dir=keys_dir)
        self.policy = policy
        self.store = store
        self.supervisor = supervisor
        self.users = Users(keys_dir, operators)
        self.service = RunService(policy, store, supervisor, self.users.is_operator)
        self._watches: dict[bytes, _Watch] = {}
        self._watch_lock = threading.Lock()
        self._pusher: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        # the streaming identity exists before any client asks for it (and a broken folder stops the start)
        ensure_stream_keys(self.policy.stream_keys_folder())
        self.supervisor.start()
        super().start()
        self._pusher = threading.Thread(target=self._push_loop, name=f"{self.name}-push", daemon=True)
        self._pusher.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop answering; runs go on (their Snakemake processes are re-adopted by the next server)."""
        super().stop(timeout_s)
        if self._pusher is not None:
            self._pusher.join(timeout_s)
        self.supervisor.stop()

    def status(self) -> dict[str, Any]:
        return {**super().status(), "runs": self.service.counts(), "watchers": len(self._watches)}

    def _open_data_channel(self) -> threading.Thread:
        data = self._bind(zmq.ROUTER, self.data_port, PROGRESS_MAX_BYTES, "progress")
        data.setsockopt(zmq.SNDHWM, 10_000)  # events queued per slow watcher before ZMQ drops (it re-watches)
        return threading.Thread(target=self._serve_data, args=(data,), daemon=True)

    # -- control requests -------------------------------------------------------------------------------
    def on_control(self, message: dict[str, Any], payload: list[bytes]) -> Reply:
        user = self.users.name_of(self.control_user)
        kind = message["type"]
        try:
            result = self._control(kind, message, user)
        except SubmissionError as exc:
            return messages.error_message("invalid_submission", str(exc)), []
        except MessageError as exc:
            return messages.error_message(exc.code or "bad_request", str(exc)), []
        except OpenHCSError as exc:  # e.g. a run that cannot be resumed in its state
            return messages.error_message("refused", str(exc)), []
        if isinstance(result, tuple):  # the base's reply to a request it does not know
            return result
        return messages.make("reply", result=result), []

    def _control(self, kind: str, message: dict[str, Any], user: str) -> Any:
        service = self.service
        if kind == "submit":
            run = service.submit(
                user,
                message["config"],
                message.get("pipeline"),
                message.get("pipeline_name"),
                viewer_keys=message.get("viewer_keys"),
                platemaps=message.get("platemaps"),
            )
            log.info("run %s accepted from %s: plates %s", run["run_id"], user, ", ".join(run["plates"]))
            return run
        if kind == "stream_key":
            return {"public_key": service.stream_public_key()}
        if kind == "pipelines":
            return {"pipelines": service.pipelines()}
        if kind == "runs":
            return {"runs": service.runs(user, everyone=bool(message.get("all")))}
        if kind == "run":
            return service.run(user, message["run_id"])
        if kind == "events":
            run_id = message["run_id"]
            events = service.events(user, run_id, int(message.get("after", 0)), int(message.get("limit", MAX_EVENTS)))
            return {"events": [event.to_dict() for event in events], "last_seq": service.run(user, run_id)["last_seq"]}
        if kind == "cancel":
            return service.cancel(user, message["run_id"], message.get("mode", CancelMode.DRAIN.value))
        if kind == "resume":
            return service.resume(user, message["run_id"])
        if kind == "logs":
            return {"log": service.logs(user, message["run_id"], message.get("tail"))}
        if kind == "results":
            return {"files": service.results(user, message["run_id"])}
        return super().on_control(message, [])

    # -- progress channel -------------------------------------------------------------------------------
    def on_data(self, message: dict[str, Any], payload: list[bytes | memoryview]) -> dict[str, Any] | None:
        if message["type"] != "watch":
            return messages.error_message("unsupported", "the progress channel takes only 'watch' messages")
        user = self.users.name_of(self.data_user)
        try:
            record = self.service.visible_run(message["run_id"], user)
        except RunNotVisible as exc:
            return messages.error_message("unknown_run", str(exc))
        identity = self.data_identity
        with self._watch_lock:
            current = self._watches.get(identity)
            after = int(message.get("after", 0))
            if current is not None and current.run_id == record.run_id:
                current.renewed = time.monotonic()  # a renewal never moves the position back or forth
            else:
                self._watches[identity] = _Watch(record.run_id, after, time.monotonic())
        return messages.make("reply", result={"watching": record.run_id, "last_seq": record.last_seq})

    def _push_loop(self) -> None:
        while not self._stop.wait(PUSH_INTERVAL_S):
            try:
                self._push_once()
            except Exception:  # noqa: BLE001 - the pusher must outlive any one bad round
                log.exception("%s: pushing events failed", self.name)

    def _push_once(self) -> None:
        now = time.monotonic()
        with self._watch_lock:
            for identity in [key for key, watch in self._watches.items() if now - watch.renewed > WATCH_TTL_S]:
                del self._watches[identity]
            watches = list(self._watches.items())
        for identity, watch in watches:
            events = self.store.events_since(watch.run_id, watch.sent, PUSH_BATCH)
            for event in events:
                body = messages.make(
                    "event", run_id=event.run_id, seq=event.seq, time=event.time, event=event.type, body=event.body
                )
                self.reply_later(identity, body)
            if events:
                with self._watch_lock:
                    if self._watches.get(identity) is watch:
                        watch.sent = events[-1].seq
