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

Memory is bounded before it is spent: a frame's declared size must fit ``max_frame_bytes`` (checked before
a segment is mapped or a payload decompressed), the frames received but not yet shown must fit
``max_queued_bytes`` (past it a frame gets a ``queue_full`` error reply telling the sender to slow down),
and a viewer may refuse frames for new layers past its limit (:attr:`ViewerServer.admit_frame`).
"""

from __future__ import annotations

import logging
import queue
import socket as pysocket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from openhcs_rules.messaging import messages
from openhcs_rules.messaging.addresses import DEFAULT_HOST
from openhcs_rules.messaging.errors import MessageError, QueueFullError
from openhcs_rules.messaging.server import DualChannelServer, Reply
from openhcs_rules.streaming import codec as codecs
from openhcs_rules.streaming import shm
from openhcs_rules.streaming.frames import Frame, FrameMeta

log = logging.getLogger(__name__)

#: a viewer command: runs on the main thread, gets the request and its payload frames
Handler = Callable[[dict[str, Any], list[bytes]], Reply]

#: the data thread's question to the viewer before a frame is queued: raise LimitError to refuse it
Admit = Callable[[FrameMeta, tuple[int, int]], None]

MAX_FRAME_BYTES = codecs.MAX_FRAME_BYTES
#: frames received but not yet shown, in bytes: 4 of the largest frames, or 64 planes of 2048x2048 uint16,
#: so a GUI that falls behind a fast producer holds at most this much instead of growing without bound
MAX_QUEUED_BYTES = 512 << 20

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
        max_frame_bytes: int = MAX_FRAME_BYTES,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
    ) -> None:
        super().__init__(kind, port, host, keys_dir, name)
        self.max_frame_bytes = max_frame_bytes
        self.max_queued_bytes = max_queued_bytes
        self.reader = shm.SegmentReader()
        self.handlers: dict[str, Handler] = {}
        self.status_extra: Callable[[], dict[str, Any]] | None = None
        self.admit_frame: Admit | None = None
        self._queued_bytes = 0
        self._queued_lock = threading.Lock()
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
    def on_data(self, message: dict[str, Any], payload: list[bytes | memoryview]) -> dict[str, Any] | None:
        if message["type"] == "release":
            self.reader.release(message["names"])
            return None
        if message["type"] != "frame":
            return messages.error_message("unsupported", f"{message['type']!r} is not a data message")
        shape = (message["shape"][0], message["shape"][1])
        meta = FrameMeta.from_message(message)
        self._check_room(codecs.check_frame_size(message["dtype"], shape, self.max_frame_bytes))
        if self.admit_frame is not None:
            self.admit_frame(meta, shape)
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
            array = codecs.decode(payload[0], message["codec"], message["dtype"], shape, self.max_frame_bytes)
        received = time.monotonic_ns()
        if message["sender"].rsplit(":", 1)[0] == self._hostname:  # monotonic clocks compare on one host only
            self.latencies_ns.append(received - message["sent_ns"])
        self.frames_received += 1
        self.bytes_received += array.nbytes
        frame = Frame(meta, array, message["sent_ns"], received)
        self._count_queued(array.nbytes)
        if deferred:
            identity = self.data_identity
            frame.on_release = lambda: self.reply_later(identity, ack)
        self._work.put(frame)
        return None if deferred else ack

    def _check_room(self, nbytes: int) -> None:
        """Refuse a frame that would take the not-yet-shown frames past :attr:`max_queued_bytes`.

        An empty queue always takes one frame (its size is already capped), so a limit below the frame cap
        slows a sender down instead of refusing it for ever.
        """
        queued = self._queued_bytes
        if queued and queued + nbytes > self.max_queued_bytes:
            raise QueueFullError(
                f"viewer queue full: {queued} bytes queued, limit {self.max_queued_bytes} (--max-queue-mib); "
                f"the {nbytes}-byte frame is refused - the sender should slow down and retry"
            )

    def _count_queued(self, nbytes: int) -> None:
        with self._queued_lock:
            self._queued_bytes += nbytes

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
            queued_bytes=self._queued_bytes,
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
                self._count_queued(-sum(frame.array.nbytes for frame in batch))
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
