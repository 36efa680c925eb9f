"""Slot loans without processes: who may write a shared-memory slot when, and what a display keeps.

The sender's pool never hands out a slot the viewer holds; the viewer's reader never unmaps a segment a
display holds; the viewer's loan book stays within what each sender lends, detaching the oldest loan to a
private copy; the napari grid shows planes without copying them.
"""

from __future__ import annotations

import numpy as np
import pytest

from openhcs_rules.streaming import shm
from openhcs_rules.streaming.frames import Frame, FrameMeta, Plane
from openhcs_rules.viewers.layout import PlaneGrid
from openhcs_rules.viewers.viewer_server import SlotLoans

needs_shm = pytest.mark.skipif(not shm.available(), reason="POSIX shared memory is not available on this platform")
META = FrameMeta("p", "A01", 1, 1, 1, 1, 0, "raw")


@needs_shm
def test_a_held_slot_is_not_reused_until_the_viewer_releases_it():
    pool = shm.SegmentPool(max_bytes=3 * 4096)
    try:
        first = pool.acquire(4096)
        pool.hold(first.name)  # acked with held: the viewer shows it
        assert (pool.held, pool.in_flight) == (1, 0)
        others = [pool.acquire(4096), pool.acquire(4096)]
        assert first.name not in [s.name for s in others]
        assert pool.acquire(4096) is None  # full: two in flight, one held
        pool.release(others[0].name)  # a plain ack frees at once
        assert pool.acquire(4096).name == others[0].name
        assert not pool.release_held(others[1].name)  # in flight: a viewer's release must not free it
        assert pool.release_held(first.name)  # the display replaced it
        assert pool.acquire(4096).name == first.name
    finally:
        pool.close()
    assert pool.names() == [] and all(n not in shm.our_segments() for n in (first.name, others[0].name))


@needs_shm
def test_free_slots_are_reused_best_fit_then_most_recently_freed():
    pool = shm.SegmentPool(max_bytes=1 << 20)
    try:
        small, big, small2 = pool.acquire(4096), pool.acquire(65536), pool.acquire(4096)
        for segment in (small, big, small2):
            pool.release(segment.name)
        assert pool.acquire(4000).name == small2.name  # fits, and freed last: likeliest still in cache
        assert pool.acquire(4000).name == small.name
        assert pool.acquire(4000).name == big.name  # only the big one is left
    finally:
        pool.close()


@needs_shm
def test_closing_the_pool_unlinks_held_slots_and_a_reader_mapping_stays_valid():
    pool = shm.SegmentPool()
    segment = pool.acquire(64 * 64 * 2)
    segment.write(np.full((64, 64), 7, np.uint16))
    pool.hold(segment.name)
    reader = shm.SegmentReader()
    view = reader.view(segment.name, "uint16", (64, 64))
    reader.hold(segment.name)
    pool.close()  # the owner's last act: the name is gone...
    assert segment.name not in shm.our_segments()
    reader.release([segment.name])  # ...the sender says so, but a display still shows the view
    assert int(view.sum()) == 7 * 64 * 64
    del view
    reader.unhold(segment.name)  # the last hold ends: the mapping closes now
    assert reader.size(segment.name) == 0
    reader.close()


@needs_shm
def test_the_reader_keeps_held_mappings_past_its_limit_and_expiry():
    pool = shm.SegmentPool()
    reader = shm.SegmentReader(max_open=2, idle_s=0.0)
    try:
        segments = [pool.acquire(4096) for _ in range(4)]
        views = [reader.view(s.name, "uint8", (64, 64)) for s in segments[:1]]
        reader.hold(segments[0].name)
        for segment in segments[1:]:
            reader.view(segment.name, "uint8", (64, 64))
        reader.expire()
        assert reader.size(segments[0].name) == 4096 and reader.held == 1
        assert int(views[0].sum()) == 0
    finally:
        reader.close()
        pool.close()


@needs_shm
def test_a_new_mapping_is_readable_when_displays_hold_more_mappings_than_the_limit():
    """Loans outlive their senders (a closed sender's planes stay shown), so displays may hold max_open
    mappings or more; the mapping made for a new frame must still be readable, not closed at once."""
    pool = shm.SegmentPool()
    reader = shm.SegmentReader(max_open=2)
    try:
        segments = [pool.acquire(4096) for _ in range(5)]
        for value, segment in enumerate(segments, start=1):
            segment.write(np.full((64, 64), value, np.uint8))
        held = [reader.view(s.name, "uint8", (64, 64)) for s in segments[:2]]
        for segment in segments[:2]:
            reader.hold(segment.name)
        for value, segment in enumerate(segments[2:], start=3):  # each new one past the limit, twice over
            assert int(reader.view(segment.name, "uint8", (64, 64)).max()) == value
            assert int(reader.read(segment.name, "uint8", (64, 64)).min()) == value
        assert [int(view.max()) for view in held] == [1, 2]
        assert reader.size(segments[-1].name) == 4096  # the newest stays mapped for its frame's next read
    finally:
        reader.close()
        pool.close()


def _frame(array, lend=None, borrowed=False):
    return Frame(META, array, 0, 0, borrowed=borrowed, lend=lend)


def test_keep_copies_a_borrowed_view_and_keeps_an_owned_array():
    owned = np.arange(6, dtype=np.uint16).reshape(2, 3)
    assert _frame(owned).keep().array is owned  # a decoded inline frame is the viewer's own
    borrowed = _frame(owned, borrowed=True).keep()
    assert borrowed.array is not owned and not borrowed.on_loan
    np.testing.assert_array_equal(borrowed.array, owned)
    frame = _frame(owned)
    assert frame.keep() is frame.keep()


def test_a_plane_on_loan_is_given_back_once_and_detaches_to_a_copy():
    given = []
    slot = np.arange(12, dtype=np.uint16).reshape(3, 4)
    plane = Plane(slot, give_back=given.append)
    detached = []
    plane.on_detach = lambda: detached.append(True)
    assert plane.on_loan
    plane.detach()
    assert plane.array is not slot and detached == [True] and given == [plane] and not plane.on_loan
    slot[:] = 0  # the sender writes the next frame: the display's copy is unaffected
    assert int(plane.array.sum()) == sum(range(12))
    plane.drop()
    plane.detach()
    assert given == [plane]


class _Reader:
    def __init__(self):
        self.holds = {}

    def hold(self, name):
        self.holds[name] = self.holds.get(name, 0) + 1

    def unhold(self, name):
        self.holds[name] -= 1


def test_loans_stay_within_what_each_sender_lends_and_give_back_after_the_ack():
    reader = _Reader()
    loans = SlotLoans(reader)
    slot_bytes = 100
    frames = [_frame(np.full((2, 2), i, np.uint8), borrowed=True) for i in range(4)]
    planes = []
    for i, frame in enumerate(frames):
        plane = loans.lend(frame, identity=b"a", name=f"ohcs_1_0000000{i}_1", slot_bytes=slot_bytes, budget=250)
        planes.append(plane)
        assert loans.acknowledged(plane)  # the ack says held
    assert [p.on_loan for p in planes] == [False, False, True, True]  # two fit in 250 bytes
    assert loans.detached == 2 and loans.held_bytes(b"a") == 200 and len(loans) == 2
    assert [int(p.array[0, 0]) for p in planes] == [0, 1, 2, 3]  # detached planes are copies of the same pixels
    sent = []
    loans.flush(lambda identity, message: sent.append((identity, message["names"])))
    assert sent == [(b"a", ["ohcs_1_00000000_1", "ohcs_1_00000001_1"])]
    other = loans.lend(
        _frame(np.zeros((2, 2), np.uint8)), identity=b"b", name="ohcs_2_00000000_1", slot_bytes=100, budget=100
    )
    assert other.on_loan and loans.held_bytes(b"a") == 200  # each sender has its own budget
    other.drop()  # dropped before its ack left: the ack will say "not held", no release message
    assert not loans.acknowledged(other)
    planes[3].drop()
    loans.flush(lambda identity, message: sent.append((identity, message["names"])))
    assert sent[-1] == (b"a", ["ohcs_1_00000003_1"]) and len(sent) == 2
    assert reader.holds == {f"ohcs_1_0000000{i}_1": 0 for i in range(4)} | {
        "ohcs_1_00000002_1": 1,
        "ohcs_2_00000000_1": 0,
    }
    big = loans.lend(
        _frame(np.ones((2, 2), np.uint8)), identity=b"c", name="ohcs_3_00000000_1", slot_bytes=300, budget=250
    )
    assert not big.on_loan  # larger than the whole budget: a copy


def test_the_grid_reads_only_the_planes_asked_for_and_zeros_where_none_came():
    grid = PlaneGrid(("well", "z"), (2, 3), np.uint16)
    first = Plane(np.full((2, 3), 5, np.uint16))
    assert grid.put({"well": "B02", "z": 2}, first) == (True, None)
    replacement = Plane(np.full((2, 3), 6, np.uint16))
    assert grid.put({"well": "B02", "z": 2}, replacement) == (False, first)  # the caller drops the old one
    assert grid.put({"well": "A01", "z": 1}, Plane(np.full((2, 3), 9.0, np.float32)))[0]
    assert grid.shape == (2, 2, 2, 3) and grid.ndim == 4 and grid.dtype == np.uint16 and len(grid) == 2
    assert np.shares_memory(grid[1, 1], replacement.array)  # the plane itself, no copy
    assert grid[0, 0].dtype == np.uint16 and int(grid[0, 0, 1, 2]) == 9
    assert int(grid[-1, 0].max()) == 0  # B02 z1 never came
    np.testing.assert_array_equal(grid[:, 1, 0], [[0, 0, 0], [6, 6, 6]])
    np.testing.assert_array_equal(grid[..., 0], np.asarray(grid)[..., 0])
    dense = np.asarray(grid)
    assert dense.shape == grid.shape and int(dense.sum()) == 6 * 9 + 6 * 6
    np.testing.assert_array_equal(grid[1], dense[1])
    assert grid.get({"well": "B02", "z": 1}).max() == 0
    with pytest.raises(KeyError):
        grid.get({"well": "C03", "z": 1})
    with pytest.raises(IndexError):
        grid[2, 0]
    with pytest.raises(ValueError, match="does not fit"):
        grid.put({"well": "A01", "z": 1}, Plane(np.zeros((3, 3))))
    assert grid.nbytes == 2 * 3 * 2 + 2 * 3 * 4
    assert len(grid.clear()) == 2 and grid.nbytes == 0
