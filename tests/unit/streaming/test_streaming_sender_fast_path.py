"""The shared-memory stream's per-frame fast path: what it skips must not change what goes over the wire.

The sender encodes a plane's header once and then only fills in each frame's id, time and slot; it takes
in acks without a poll call per send; the viewer wakes its data thread once for a batch's acks and
releases. Frames sent back to back (each copied while the viewer still handles the previous ones) arrive
in order, and every slot comes back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager

import numpy as np
import pytest

from openhcs_rules.messaging import messages
from openhcs_rules.messaging.addresses import find_free_base_port
from openhcs_rules.messaging.errors import MessageError
from openhcs_rules.messaging.server import DualChannelServer
from openhcs_rules.streaming import shm
from openhcs_rules.streaming.frames import Frame, FrameMeta
from openhcs_rules.streaming.sender import FrameSender
from openhcs_rules.viewers.record_viewer import FrameRecord
from openhcs_rules.viewers.viewer_server import ViewerServer

needs_shm = pytest.mark.skipif(not shm.available(), reason="POSIX shared memory is not available on this platform")


@contextmanager
def _pumped_viewer(show: Callable[[list[Frame]], None], **handlers: Callable[..., object]) -> Iterator[ViewerServer]:
    """A record ViewerServer whose main-thread loop (``pump`` with ``show``) runs on a thread; stopped on exit."""
    server = ViewerServer("record", find_free_base_port(), hold_min_bytes=0)
    server.handlers.update(handlers)
    stop = threading.Event()

    def main_thread() -> None:
        while not stop.is_set():
            server.pump(show, budget_s=0.2, block_s=0.05)

    server.start()
    pump = threading.Thread(target=main_thread, daemon=True)
    pump.start()
    try:
        yield server
    finally:
        stop.set()
        pump.join(5)
        server.stop()


def _made(sender: FrameSender, frame_id: int, meta: FrameMeta, array: np.ndarray, sent_ns: int, **transport):
    """The frame message as messages.make builds it (what the header was before the fast path)."""
    return messages.make(
        "frame",
        id=frame_id,
        sent_ns=sent_ns,
        sender=sender.sender_id,
        component=meta.component_fields(),
        step=meta.step_fields(),
        role=meta.role,
        dtype=array.dtype.name,
        shape=list(array.shape),
        **transport,
    )


def test_the_cached_header_decodes_to_the_message_make_builds_for_every_frame():
    sender = FrameSender("127.0.0.1", find_free_base_port(), transport="inline", codec="raw")
    try:
        metas = [
            FrameMeta("plate", "B02", 2, 3, 1, 4, 1, "denoise", "labels", channel_name='DAPI "blue"'),
            FrameMeta("plate", "B03", 1, 1, 1, 1, 0, "raw"),
        ]
        arrays = [np.zeros((16, 32), np.uint16), np.zeros((8, 8), np.float32)]
        for frame_id, (meta, array, slot) in enumerate(
            [
                (metas[0], arrays[0], "ohcs_1_0123abcd_1"),
                (metas[0], arrays[0], "ohcs_1_0123abcd_2"),  # same plane, cached part, another slot
                (metas[1], arrays[1], "ohcs_1_0123abcd_1"),
                (metas[0], arrays[1], "ohcs_1_0123abcd_3"),  # same metadata, other dtype and shape
            ],
            start=1,
        ):
            raw = sender._header(meta, array, 10**15 + frame_id, transport="shm", shm=slot, hold_bytes=1 << 20)
            expected = _made(
                sender, frame_id, meta, array, 10**15 + frame_id, transport="shm", shm=slot, hold_bytes=1 << 20
            )
            assert messages.decode(raw) == expected
        raw = sender._header(metas[1], arrays[0], 7, transport="inline", codec="raw")
        assert messages.decode(raw) == _made(sender, 5, metas[1], arrays[0], 7, transport="inline", codec="raw")
        with pytest.raises(MessageError, match="segment name"):  # a slot name is checked on every frame
            sender._header(metas[0], arrays[0], 8, transport="shm", shm="../etc/passwd", hold_bytes=1 << 20)
        with pytest.raises(MessageError):  # and a plane's fields when its header is first made
            sender._header(FrameMeta("p", "A01", 0, 1, 1, 1, 0, "raw"), arrays[0], 9, transport="inline", codec="raw")
        assert len(sender._headers) <= 256
    finally:
        sender.close(0)


def test_replies_queued_in_a_batch_wake_the_data_thread_once():
    server = DualChannelServer("test", find_free_base_port())
    try:

        def wakes() -> int:
            try:
                return len(os.read(server._wake_read, 4096))
            except BlockingIOError:
                return 0

        ack = messages.make("ack", id=1)
        server.reply_later(b"peer", ack)
        server.reply_later(b"peer", ack)
        assert wakes() == 2  # one each outside a batch
        with server.replies_batched():
            for _ in range(3):
                server.reply_later(b"peer", ack)
            with server.replies_batched():  # nested: still one wake-up, at the end of the outer batch
                server.reply_later(b"peer", ack)
            assert wakes() == 0
        assert wakes() == 1
        with server.replies_batched():
            pass
        assert wakes() == 0  # nothing queued: no wake-up
        queued = []
        while not server._deferred.empty():
            queued.append(server._deferred.get_nowait())
        assert len(queued) == 6 and all(messages.decode(raw)["type"] == "ack" for _, raw in queued)
    finally:
        server.stop()


@needs_shm
def test_frames_sent_back_to_back_arrive_in_order_and_every_slot_comes_back():
    """The sender copies the next frames while the viewer still shows earlier ones (several in flight)."""
    record = FrameRecord(keep=True)
    shown: list[tuple[int, int]] = []

    def show(batch: list[Frame]) -> None:
        shown.extend((frame.meta.site, int(frame.array[0, 0])) for frame in batch)
        time.sleep(0.002)  # a display slower than the sender: frames queue up behind it
        record.show(batch)

    with _pumped_viewer(show, clear=record.clear) as server:
        sender = FrameSender("127.0.0.1", server.port, transport="shm", max_shm_bytes=16 * 64 * 64 * 2)
        try:
            sites, count, peak = 3, 60, 0
            for value in range(count):
                plane = np.full((64, 64), value, np.uint16)
                assert sender.send(FrameMeta("p", "A01", value % sites + 1, 1, 1, 1, 0, "raw"), plane)
                assert sender.pool.in_flight + sender.held <= 16
                peak = max(peak, sender.pool.in_flight)
            assert peak > 1  # sent without waiting for the previous frame's ack
            assert sender.flush(10) and sender.dropped == 0 and sender.fallbacks == 0
            assert shown == [(value % sites + 1, value) for value in range(count)]  # every frame, in send order
            planes = [record.frames[("raw", "p", "A01", site + 1, 1, 1, 1)] for site in range(sites)]
            for site, plane in enumerate(planes):  # each kept plane shows its last frame (a loan, or a copy of it
                assert int(plane.array[0, 0]) == count - sites + site  # when it came in behind a backlog)
            deadline = time.monotonic() + 5
            while sender.held != sum(plane.on_loan for plane in planes) and time.monotonic() < deadline:
                sender.poll(0.05)  # the releases of replaced planes follow their acks
            assert sender.held == sum(plane.on_loan for plane in planes)
            server._work.put((record.clear, {"type": "clear"}, [], Future()))  # the `clear` command, on the main thread
            deadline = time.monotonic() + 10
            while sender.held and time.monotonic() < deadline:
                sender.poll(0.05)
            assert sender.held == 0 and sender.pool.in_flight == 0  # every slot came back
        finally:
            sender.close(2)
    assert shm.our_segments(os.getpid()) == []


@needs_shm
@pytest.mark.parametrize("transport", ["shm", "inline"])
def test_a_big_endian_frame_shows_its_values(transport):
    """The message names the dtype without a byte order: the sender sends native bytes."""
    record = FrameRecord(keep=True)
    with _pumped_viewer(record.show) as server:
        sender = FrameSender("127.0.0.1", server.port, transport=transport, codec="raw")
        try:
            plane = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 13).astype(">u2")
            assert sender.send(FrameMeta("p", "A01", 1, 1, 1, 1, 0, "raw"), plane)
            assert sender.flush(10)
            shown = record.frames[("raw", "p", "A01", 1, 1, 1, 1)].array
            np.testing.assert_array_equal(np.asarray(shown), plane.astype(np.uint16))
        finally:
            sender.close(2)
    assert shm.our_segments(os.getpid()) == []
