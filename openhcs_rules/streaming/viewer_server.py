"""The server half every viewer process shares: frames in on the data thread, work out on the main thread.

GUI toolkits (Qt for napari, AWT for ImageJ) want their objects touched from one thread, and a viewer
must keep up with a fast producer. So the data thread only turns a message into an array and queues it;
the viewer's main thread calls :meth:`ViewerServer.pump`, which hands over every queued frame in one batch
(a burst becomes one redraw per layer) and runs viewer commands (clear, layers, macro...) in arrival
order, so a command sent after frames sees those frames.

Shared-memory frames are zero-copy while the viewer keeps up: the array is a read-only view of the
sender's slot, the main thread copies it into its layer, and only then is the frame acknowledged (the
sender reuses the slot). When frames start to queue, the data thread copies them out and acknowledges at
once instead, so a busy GUI never holds the sender's slots. Inline frames are acknowledged on receipt.
"""

from __future__ import annotations

import logging
import queue
import socket as pysocket
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from openhcs_rules.streaming import codec as codecs
from openhcs_rules.streaming import shm
from openhcs_rules.streaming.frames import Frame, FrameMeta
from openhcs_rules.zmq import messages
from openhcs_rules.zmq.addresses import DEFAULT_HOST
from openhcs_rules.zmq.errors import MessageError
from openhcs_rules.zmq.server import DualChannelServer, Reply

log = logging.getLogger(__name__)

#: a viewer command: runs on the main thread, gets the request and its payload frames
Handler = Callable[[dict[str, Any], list[bytes]], Reply]

COMMAND_TIMEOUT_S = 60.0
#: shared-memory frames are passed on without a copy while fewer than this many items wait
ZERO_COPY_QUEUE = 4
_HOUSEKEEPING_S = 5.0


class ViewerServer(DualChannelServer):
    """A :class:`DualChannelServer` that turns frame messages into numpy arrays for a viewer."""

    def __init__(
        self,
        kind: str,
        port: int,
        host: str = DEFAULT_HOST,
        keys_dir: str | Path | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(kind, port, host, keys_dir, name)
        self.reader = shm.SegmentReader()
        self.handlers: dict[str, Handler] = {}
        self.status_extra: Callable[[], dict[str, Any]] | None = None
        self._work: queue.SimpleQueue[Frame | tuple[Handler, dict[str, Any], list[bytes], Future[Reply]]] = (
            queue.SimpleQueue()
        )
        self._hostname = pysocket.gethostname()
        self.frames_received = 0
        self.bytes_received = 0
        self.frames_shown = 0
        self.latencies_ns: deque[int] = deque(maxlen=100_000)
        self._housekeeping_at = time.monotonic()

    # -- data thread ------------------------------------------------------------------------------------
    def on_data(self, message: dict[str, Any], payload: list[bytes]) -> dict[str, Any] | None:
        if message["type"] == "release":
            self.reader.release(message["names"])
            return None
        if message["type"] != "frame":
            return messages.error_message("unsupported", f"{message['type']!r} is not a data message")
        shape = (message["shape"][0], message["shape"][1])
        ack = messages.make("ack", id=message["id"])
        deferred = False
        if message["transport"] == "shm":
            if payload:
                raise MessageError("a shared-memory frame carries no payload")
            # Zero copy while the viewer keeps up: the main thread copies the view into its layer and the
            # ack follows; when frames queue up, copy now and ack at once so the sender never waits on a GUI.
            deferred = self._work.qsize() < ZERO_COPY_QUEUE
            read = self.reader.view if deferred else self.reader.read
            array = read(message["shm"], message["dtype"], shape)
        else:
            if len(payload) != 1:
                raise MessageError(f"an inline frame carries one payload part, got {len(payload)}")
            array = codecs.decode(payload[0], message["codec"], message["dtype"], shape)
        received = time.monotonic_ns()
        if message["sender"].rsplit(":", 1)[0] == self._hostname:  # monotonic clocks compare on one host only
            self.latencies_ns.append(received - message["sent_ns"])
        self.frames_received += 1
        self.bytes_received += array.nbytes
        frame = Frame(FrameMeta.from_message(message), array, message["sent_ns"], received)
        if deferred:
            identity = self.data_identity
            frame.on_release = lambda: self.reply_later(identity, ack)
        self._work.put(frame)
        return None if deferred else ack

    # -- control thread ---------------------------------------------------------------------------------
    def on_control(self, message: dict[str, Any], payload: list[bytes]) -> Reply:
        kind = message["type"]
        if kind == "stats":
            return messages.make("reply", result=self.stats()), []
        handler = self.handlers.get(kind)
        if handler is None:
            return messages.error_message("unsupported", f"a {self.kind} viewer does not handle {kind!r}"), []
        future: Future[Reply] = Future()
        self._work.put((handler, message, payload, future))
        return future.result(timeout=COMMAND_TIMEOUT_S)

    def status(self) -> dict[str, Any]:
        status = super().status()
        status.update(
            frames_received=self.frames_received,
            frames_shown=self.frames_shown,
            bytes_received=self.bytes_received,
            queued=self._work.qsize(),
        )
        if self.status_extra is not None:
            status.update(self.status_extra())
        return status

    def stats(self) -> dict[str, Any]:
        """Receive latencies (send -> array held in this process), for benchmarks and diagnosis."""
        return {
            "frames_received": self.frames_received,
            "bytes_received": self.bytes_received,
            "latencies_ns": list(self.latencies_ns),
        }

    # -- main thread ------------------------------------------------------------------------------------
    def pump(self, show: Callable[[list[Frame]], None], budget_s: float = 0.05, block_s: float = 0.0) -> int:
        """Hand queued frames to ``show`` in batches and run queued commands, in arrival order.

        Returns how many items were processed; stops after ``budget_s`` so a GUI stays responsive.
        """
        deadline = time.monotonic() + budget_s
        batch: list[Frame] = []
        done = 0
        timeout = block_s
        while time.monotonic() < deadline:
            try:
                item = self._work.get(timeout=timeout) if timeout > 0 else self._work.get_nowait()
            except queue.Empty:
                break
            timeout = 0
            done += 1
            if isinstance(item, Frame):
                batch.append(item)
                continue
            self._show(show, batch)
            batch = []
            self._run_command(*item)
        self._show(show, batch)
        self._housekeeping()
        return done

    def _show(self, show: Callable[[list[Frame]], None], batch: list[Frame]) -> None:
        if batch:
            try:
                show(batch)
            except Exception:  # noqa: BLE001 - a frame the viewer cannot show must not stop the viewer
                log.exception("%s: could not show %d frame(s)", self.name, len(batch))
            finally:
                for frame in batch:
                    frame.release()  # acknowledges zero-copy frames: their slots go back to the sender
            self.frames_shown += len(batch)

    @staticmethod
    def _run_command(handler: Handler, message: dict[str, Any], payload: list[bytes], future: Future[Reply]) -> None:
        try:
            future.set_result(handler(message, payload))
        except Exception as exc:  # noqa: BLE001 - becomes the error reply of that request
            log.exception("command %s failed", message["type"])
            future.set_result((messages.error_message("failed", f"{type(exc).__name__}: {exc}"), []))

    def _housekeeping(self) -> None:
        if time.monotonic() - self._housekeeping_at > _HOUSEKEEPING_S:
            self._housekeeping_at = time.monotonic()
            self.reader.expire()
            removed = shm.sweep_orphans()
            if removed:
                log.warning("%s: removed %d segment(s) left by killed senders", self.name, len(removed))

    def stop(self, timeout_s: float = 2.0) -> None:
        super().stop(timeout_s)
        self.reader.close()
