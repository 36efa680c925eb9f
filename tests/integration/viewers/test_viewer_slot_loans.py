"""A viewer shows large shared-memory frames straight from the sender's slot (a loan), one owner at a time.

Real sender, real viewer server (in this process, so the test drives its main thread; a subprocess where a
process gets killed): a held slot is never written by the sender until the viewer gives it back; replacing
or clearing the plane gives it back; the viewer holds at most what the sender lends; a sender whose slots
are all held sends inline at once instead of waiting; a killed viewer or sender leaves /dev/shm clean.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from openhcs_rules.messaging.addresses import find_free_base_port
from openhcs_rules.messaging.client import ControlClient
from openhcs_rules.streaming import shm
from openhcs_rules.streaming.frames import FrameMeta
from openhcs_rules.streaming.sender import FrameSender
from openhcs_rules.viewers.record_viewer import FrameRecord
from openhcs_rules.viewers.viewer_server import HOLD_MIN_BYTES, ViewerServer

pytestmark = pytest.mark.skipif(not shm.available(), reason="POSIX shared memory is not available on this platform")

SHAPE = (512, 512)  # 512 KiB of uint16: large enough to be shown from the slot
FRAME_BYTES = SHAPE[0] * SHAPE[1] * 2
assert FRAME_BYTES >= HOLD_MIN_BYTES


def meta(z: int, step: str = "raw") -> FrameMeta:
    return FrameMeta("p", "A01", 1, 1, z, 1, 0, step)


def key(z: int, step: str = "raw") -> tuple:
    return (step, "p", "A01", 1, 1, z, 1)


def plane(value: int) -> np.ndarray:
    return np.full(SHAPE, value, np.uint16)


@pytest.fixture
def server():
    server = ViewerServer("record", find_free_base_port())
    server.start()
    yield server
    server.stop()


def pump_until(server, show, sender, condition, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        server.pump(show, budget_s=0.05, block_s=0.01)
        sender.poll(0.01)
    assert condition()


def recording_acquire(sender) -> list[str]:
    """Every slot name the sender's pool hands out, in order."""
    used: list[str] = []
    acquire = sender.pool.acquire

    def wrapper(nbytes):
        segment = acquire(nbytes)
        if segment is not None:
            used.append(segment.name)
        return segment

    sender.pool.acquire = wrapper
    return used


def test_a_held_slot_is_not_written_until_its_plane_is_replaced_or_cleared(server):
    record = FrameRecord()
    sender = FrameSender("127.0.0.1", server.port)
    used = recording_acquire(sender)

    def show_z1(batch):  # the display keeps z=1 planes; other frames are only looked at
        record.show([frame for frame in batch if frame.meta.z == 1])

    assert sender.send(meta(1), plane(1))
    pump_until(server, show_z1, sender, lambda: sender.held == 1)
    held_name, first = used[0], record.frames[key(1)]
    assert first.on_loan and not first.array.flags.writeable  # the sender's slot itself, read-only
    for value in range(2, 12):  # frames the display does not keep: their acks free their slots at once
        assert sender.send(meta(2), plane(value))
        pump_until(server, show_z1, sender, lambda: sender.in_flight == 0)
    assert held_name not in used[1:] and len(set(used[1:])) == 1  # one free slot reused, the held one never
    assert int(first.array.min()) == int(first.array.max()) == 1 and sender.held == 1

    assert sender.send(meta(1), plane(20))  # replaces the held plane: its slot goes back after the show
    pump_until(server, show_z1, sender, lambda: sender.in_flight == 0 and sender.held == 1)  # acked, A released
    assert used[-1] != held_name and sender.held == 1 and record.frames[key(1)].on_loan and not first.on_loan
    assert int(record.frames[key(1)].array.max()) == 20
    assert sender.send(meta(3), plane(30)) and held_name in used[-2:]  # free again: reused

    server.handlers["clear"] = record.clear
    with ThreadPoolExecutor(1) as pool, ControlClient("127.0.0.1", server.port, timeout_s=10) as client:
        cleared = pool.submit(client.call, "clear")
        pump_until(server, show_z1, sender, cleared.done)
        assert cleared.result() == {"cleared": 1}
    pump_until(server, show_z1, sender, lambda: sender.held == 0)
    assert server.status()["slots_held"] == 0
    sender.close()
    assert shm.our_segments(os.getpid()) == []


def test_the_viewer_holds_at_most_what_the_sender_lends_and_copies_the_oldest_out(server):
    record = FrameRecord()
    sender = FrameSender("127.0.0.1", server.port, max_shm_bytes=8 * FRAME_BYTES)  # lends half: 4 slots
    for z in range(1, 7):
        assert sender.send(meta(z), plane(z))
        pump_until(server, record.show, sender, lambda: sender.in_flight == 0)
    pump_until(server, record.show, sender, lambda: sender.held == 4)
    assert [record.frames[key(z)].on_loan for z in range(1, 7)] == [False, False, True, True, True, True]
    assert server.loans.detached == 2 and server.loans.total_bytes == 4 * FRAME_BYTES
    for z in range(1, 7):  # detached planes became copies of the same pixels
        assert int(record.frames[key(z)].array.min()) == int(record.frames[key(z)].array.max()) == z
    assert sender.fallbacks == 0 and sender.dropped == 0
    sender.close()
    assert shm.our_segments(os.getpid()) == []
    for z in range(3, 7):  # the sender unlinked the slots it lent; the viewer's views stay readable
        assert int(record.frames[key(z)].array.max()) == z


def test_a_sender_whose_every_slot_is_held_sends_inline_at_once_and_counts_it(server):
    record = FrameRecord()
    # a pool of two slots, both lendable: the viewer may hold all of them
    sender = FrameSender("127.0.0.1", server.port, max_shm_bytes=2 * FRAME_BYTES, hold_bytes=2 * FRAME_BYTES)
    sender.full_wait_s = 5.0
    for z in (1, 2):
        assert sender.send(meta(z), plane(z))
    pump_until(server, record.show, sender, lambda: sender.held == 2)
    started = time.perf_counter()
    assert sender.send(meta(3), plane(3))  # no free slot and none in flight: waiting would free nothing
    assert time.perf_counter() - started < 1.0
    assert sender.fallbacks == 1 and sender.dropped == 0
    pump_until(server, record.show, sender, lambda: sender.in_flight == 0)
    third = record.frames[key(3)]
    assert not third.on_loan and int(third.array.min()) == int(third.array.max()) == 3
    assert sender.send(meta(1), plane(10))  # every slot still held: inline again
    pump_until(server, record.show, sender, lambda: sender.in_flight == 0 and sender.held == 1)
    assert sender.fallbacks == 2  # the z=1 slot came back when its plane was replaced...
    assert sender.send(meta(4), plane(4))  # ...so this one goes through shared memory again
    assert sender.fallbacks == 2
    pump_until(server, record.show, sender, lambda: sender.in_flight == 0)
    assert record.frames[key(4)].on_loan and int(record.frames[key(1)].array.max()) == 10
    sender.close()
    assert shm.our_segments(os.getpid()) == []


def test_a_sender_that_lends_nothing_gets_every_slot_back_with_the_ack(server):
    record = FrameRecord()
    sender = FrameSender("127.0.0.1", server.port, hold_bytes=0)  # as senders before loans behave
    for value in (1, 2, 3):
        assert sender.send(meta(1, step=f"s{value}"), plane(value))
        pump_until(server, record.show, sender, lambda: sender.in_flight == 0)
    assert sender.held == 0 and server.loans.lent == 0
    for value in (1, 2, 3):  # private copies: the reused slot did not change them
        kept = record.frames[key(1, step=f"s{value}")]
        assert not kept.on_loan and int(kept.array.max()) == value
    sender.close()


def test_a_viewer_killed_while_holding_slots_leaves_dev_shm_clean(tmp_path):
    port = find_free_base_port()
    log = open(tmp_path / "record.log", "wb")  # closed in the finally below
    viewer = subprocess.Popen(
        [sys.executable, "-m", "openhcs_rules.viewers.record_viewer", "--port", str(port)], stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with ControlClient("127.0.0.1", port, timeout_s=1) as client:
                    client.ping()
                break
            except Exception:  # noqa: BLE001 - not up yet
                assert time.monotonic() < deadline, (tmp_path / "record.log").read_text()
                time.sleep(0.1)
        sender = FrameSender("127.0.0.1", port, ack_timeout_s=1.0)
        for z in (1, 2, 3):
            assert sender.send(meta(z), plane(z))
        assert sender.flush(10)
        deadline = time.monotonic() + 10
        while sender.held < 3 and time.monotonic() < deadline:
            sender.poll(0.05)
        assert sender.held == 3 and len(shm.our_segments(os.getpid())) == 3
        os.kill(viewer.pid, signal.SIGKILL)
        viewer.wait(10)
        sender.send(meta(4), plane(4))  # into a free slot; its ack never comes
        started = time.perf_counter()
        sender.close(timeout_s=2)
        assert time.perf_counter() - started < 5
        assert shm.our_segments(os.getpid()) == []
    finally:
        if viewer.poll() is None:
            viewer.kill()
        log.close()


_KILLED_SENDER = """
import os, signal, sys
import numpy as np
from openhcs_rules.streaming.frames import FrameMeta
from openhcs_rules.streaming.sender import FrameSender
sender = FrameSender("127.0.0.1", int(sys.argv[1]))
for z in (1, 2):
    sender.send(FrameMeta("p", "A01", 1, 1, z, 1, 0, "raw"), np.full((512, 512), z, np.uint16))
while sender.held < 2:
    sender.poll(0.05)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_sender_killed_while_the_viewer_holds_its_slots_is_swept_and_the_planes_stay_readable(server):
    record = FrameRecord()
    child = subprocess.Popen([sys.executable, "-c", _KILLED_SENDER, str(server.port)])
    deadline = time.monotonic() + 30
    while child.poll() is None and time.monotonic() < deadline:
        server.pump(record.show, budget_s=0.05, block_s=0.02)
    assert child.returncode == -signal.SIGKILL
    left = shm.our_segments(child.pid)
    assert len(left) == 2 and all(record.frames[key(z)].on_loan for z in (1, 2))
    assert set(left) <= set(shm.sweep_orphans())  # what every viewer and every new sender does
    assert shm.our_segments(child.pid) == []
    for z in (1, 2):  # unlinked, not unmapped: the viewer still shows the right pixels
        assert int(record.frames[key(z)].array.min()) == int(record.frames[key(z)].array.max()) == z
    record.clear({}, [])  # gives the slots back to a sender that is gone: nothing to do, nothing raised
    server.loans.flush(server.reply_later)
    assert server.status()["slots_held"] == 0
