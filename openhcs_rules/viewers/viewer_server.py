"""The server half every viewer process shares: frames in on the data thread, work out on the main thread.

GUI toolkits (Qt for napari, AWT for ImageJ) want their objects touched from one thread, and a viewer
must keep up with a fast producer. So the data thread only turns a message into an array and queues it;
the viewer's main thread calls :meth:`ViewerServer.pump`, which hands over every queued frame in one batch
(a burst becomes one redraw per layer) and runs viewer commands (clear, layers, macro...) in arrival
order, so a command sent after frames sees those frames.

Shared-memory frames are zero-copy while the viewer keeps up: the array handed to the main thread is a
read-only view of the sender's slot, and the frame is acknowledged after the display had it. A display
that keeps the frame (:meth:`Frame.keep`) gets the slot itself *on loan* when the sender lends slots
(``hold_bytes``) and the frame is large enough to be worth it (:data:`HOLD_MIN_BYTES`, and at least half
its slot): the ack says ``held`` and the display shows the sender's memory, no copy on either side after
the sender's own. When the display drops the plane (replaced by a newer frame, cleared), a ``release``
gives the slot back - sent only after the display returned, so it has redrawn from the new data by then.
Per sender, the loans stay within the ``hold_bytes`` it lends: past it the oldest loan is detached (the
display's plane becomes a private copy) and given back, so a stream of distinct planes (a whole plate)
costs the old single copy in the viewer, while a plane replaced again and again (a live view, the
benchmark) costs none. Other kept frames are copied (a display never keeps a view it does not own).
When frames start to queue, the data thread copies them out and acknowledges at once instead, so a busy
GUI never holds the sender's in-flight slots. Inline frames are acknowledged on receipt (a raw inline
frame is a view of the received message, the viewer's own memory: a display keeps it without a copy).

Memory is bounded before it is spent: a frame's declared size must fit ``max_frame_bytes`` (checked before
a segment is mapped or a payload decompressed), the frames received but not yet shown must fit
``max_queued_bytes`` (past it a frame gets a ``queue_full`` error reply telling the sender to slow down),
and a viewer may refuse frames for new layers past its limit (:attr:`ViewerServer.admit_frame`).
"""

from __future__ import annotations

import functools
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
from openhcs_rules.streaming.frames import Frame, FrameMeta, Plane

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
#: smallest frame a display shows straight from the sender's slot: below it a copy costs less than the
#: loan does (a mapping and a slot pinned for as long as the plane is shown, one more message to give it back)
HOLD_MIN_BYTES = 256 << 10


class SlotLoans:
    """The senders' slots this viewer's displays show without a copy; main thread only (``count`` and
    ``total_bytes`` are plain counters other threads may read for status).

    Each loan belongs to one sender connection (its ZMQ identity) and counts against that sender's
    ``hold_bytes`` by the size of its whole slot (the memory it pins). Give-backs wait in :attr:`pending`
    until :meth:`flush`, which the server calls after the display returned (and after the acks of the frames
    it just showed, so a sender always hears ``held`` before the ``release`` of that slot).
    """

    def __init__(self, reader: shm.SegmentReader) -> None:
        self.reader = reader
        self._loans: dict[bytes, dict[Plane, tuple[str, int]]] = {}  # identity -> plane -> (slot, bytes), oldest first
        self._acked: set[Plane] = set()
        self.pending: dict[bytes, list[str]] = {}
        self.lent = 0  # frames shown straight from a sender's slot
        self.detached = 0  # loans copied out early to stay within a sender's hold_bytes
        self.count = 0  # slots held now
        self.total_bytes = 0  # their bytes

    def held_bytes(self, identity: bytes) -> int:
        """Slot bytes held for one sender connection."""
        return sum(nbytes for _, nbytes in self._loans.get(identity, {}).values())

    def __len__(self) -> int:
        return self.count

    def lend(self, frame: Frame, identity: bytes, name: str, slot_bytes: int, budget: int) -> Plane:
        """The frame's slot as a :class:`Plane` on loan, making room within ``budget`` by detaching the oldest."""
        if slot_bytes > budget:
            return Plane(frame.array.copy())
        while self._loans.get(identity) and self.held_bytes(identity) + slot_bytes > budget:
            next(iter(self._loans[identity])).detach()  # the display keeps a copy; the slot goes back later
            self.detached += 1
        plane = Plane(frame.array, give_back=functools.partial(self._give_back, identity))
        self._loans.setdefault(identity, {})[plane] = (name, slot_bytes)
        self.reader.hold(name)
        self.lent += 1
        self.count += 1
        self.total_bytes += slot_bytes
        return plane

    def acknowledged(self, plane: Plane | None) -> bool:
        """The frame of ``plane`` is being acknowledged: True when the ack must say ``held`` (still on loan)."""
        if plane is None or not plane.on_loan:
            return False
        self._acked.add(plane)
        return True

    def _give_back(self, identity: bytes, plane: Plane) -> None:
        book = self._loans.get(identity, {})
        entry = book.pop(plane, None)
        if not book:
            self._loans.pop(identity, None)
        if entry is None:
            return
        self.count -= 1
        self.total_bytes -= entry[1]
        self.reader.unhold(entry[0])
        if plane in self._acked:  # otherwise its ack has not left yet and will say "not held"
            self._acked.discard(plane)
            self.pending.setdefault(identity, []).append(entry[0])

    def flush(self, send: Callable[[bytes, dict[str, Any]], None]) -> None:
        """Send one ``release`` per sender for the slots given back since the last flush."""
        pending, self.pending = self.pending, {}
        for identity, names in pending.items():
            for start in range(0, len(names), 4096):  # the schema's limit per message
                send(identity, messages.make("release", names=names[start : start + 4096]))

    def surrender(self) -> None:
        """Give every loan back without waiting for its display (the viewer is stopping)."""
        for book in list(self._loans.values()):
            for plane in list(book):
                self._acked.add(plane)
                plane.drop()


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
        hold_min_bytes: int = HOLD_MIN_BYTES,
    ) -> None:
        super().__init__(kind, port, host, keys_dir, name)
        self.max_frame_bytes = max_frame_bytes
        self.max_queued_bytes = max_queued_bytes
        self.hold_min_bytes = hold_min_bytes
        self.reader = shm.SegmentReader()
        self.loans = SlotLoans(self.reader)
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
        self.latencies_ns: deque[int] = deque(maxlen=100_000)  # send() -> array in this process (data thread)
        self.shown_latencies_ns: deque[int] = deque(maxlen=100_000)  # send() -> the display returned
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
        slot_bytes = 0
        if message["transport"] == "shm":
            if payload:
                raise MessageError("a shared-memory frame carries no payload")
            # Zero copy while the viewer keeps up: the main thread gets the view (and its display may keep
            # the slot on loan) and the ack follows; when frames queue up, copy now and ack at once so the
            # sender never waits on a GUI.
            deferred = self._work.qsize() < ZERO_COPY_QUEUE
            read = self.reader.view if deferred else self.reader.read
            array = read(message["shm"], message["dtype"], shape)
            slot_bytes = self.reader.size(message["shm"]) if deferred else 0
        else:
            if len(payload) != 1:
                raise MessageError(f"an inline frame carries one payload part, got {len(payload)}")
            array = codecs.decode(payload[0], message["codec"], message["dtype"], shape, self.max_frame_bytes)
        received = time.monotonic_ns()
        same_host = message["sender"].rsplit(":", 1)[0] == self._hostname  # monotonic clocks compare on one host
        if same_host:
            self.latencies_ns.append(received - message["sent_ns"])
        self.frames_received += 1
        self.bytes_received += array.nbytes
        frame = Frame(meta, array, message["sent_ns"], received, borrowed=deferred, same_host=same_host)
        self._count_queued(array.nbytes)
        if deferred:
            identity = self.data_identity
            frame.on_release = functools.partial(self._acknowledge, frame, identity, ack)
            budget = message.get("hold_bytes", 0)
            if budget and array.nbytes >= self.hold_min_bytes and 2 * array.nbytes >= slot_bytes:
                frame.lend = functools.partial(
                    self.loans.lend, identity=identity, name=message["shm"], slot_bytes=slot_bytes, budget=budget
                )
        self._work.put(frame)
        return None if deferred else ack

    def _acknowledge(self, frame: Frame, identity: bytes, ack: dict[str, Any]) -> None:
        """(main thread) The display had the frame: ack it, saying ``held`` when the display keeps its slot."""
        if self.loans.acknowledged(frame.kept):
            ack = messages.make("ack", id=ack["id"], held=True)
        self.reply_later(identity, ack)

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
            slots_held=self.loans.count,
            slot_bytes_held=self.loans.total_bytes,
        )
        if self.status_extra is not None:
            status.update(self.status_extra())
        return status

    def stats(self) -> dict[str, Any]:
        """Latencies (send -> array in this process; send -> display returned), for benchmarks and diagnosis."""
        return {
            "frames_received": self.frames_received,
            "bytes_received": self.bytes_received,
            "latencies_ns": list(self.latencies_ns),
            "shown_latencies_ns": list(self.shown_latencies_ns),
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
                shown = time.monotonic_ns()
                with self.replies_batched():  # the acks and releases of the batch: one wake-up of the data thread
                    for frame in batch:
                        if frame.same_host:
                            self.shown_latencies_ns.append(shown - frame.sent_ns)
                        frame.release()  # acks zero-copy frames: a slot not kept (or kept as a copy) goes back
                    self._count_queued(-sum(frame.array.nbytes for frame in batch))
                    self.loans.flush(self.reply_later)  # slots the display stopped showing, after their acks
            self.frames_shown += len(batch)

    def _run_command(
        self, handler: Handler, message: dict[str, Any], payload: list[bytes], future: Future[Reply]
    ) -> None:
        try:
            future.set_result(handler(message, payload))
        except Exception as exc:  # noqa: BLE001 - becomes the error reply of that request
            log.exception("command %s failed", message["type"])
            future.set_result((messages.error_message("failed", f"{type(exc).__name__}: {exc}"), []))
        finally:
            self.loans.flush(self.reply_later)  # e.g. clear: the layers are gone, their slots go back

    def _housekeeping(self) -> None:
        if time.monotonic() - self._housekeeping_at > _HOUSEKEEPING_S:
            self._housekeeping_at = time.monotonic()
            self.reader.expire()
            removed = shm.sweep_orphans()
            if removed:
                log.warning("%s: removed %d segment(s) left by killed senders", self.name, len(removed))

    def stop(self, timeout_s: float = 2.0) -> None:
        """Give held slots back to senders still running (best effort), then stop serving."""
        self.loans.surrender()
        self.loans.flush(self.reply_later)
        deadline = time.monotonic() + min(0.5, timeout_s)
        while not self._deferred.empty() and time.monotonic() < deadline:  # the data thread sends them
            time.sleep(0.005)
        super().stop(timeout_s)
        self.reader.close()
