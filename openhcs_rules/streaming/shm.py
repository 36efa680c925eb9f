"""Shared-memory segments for same-host frames: one owner (the sender) creates, reuses and unlinks them.

Why not :mod:`multiprocessing.shared_memory`: on Python < 3.13 every process that merely *opens* a segment
registers it with its resource tracker, which unlinks it when that process exits - two owners, and a viewer
exiting would pull segments from under a running sender. Here segments are plain POSIX shm objects:

* the sender's :class:`SegmentPool` creates them (mode 0600), writes each frame into a free slot, and
  unlinks every slot on close - after all acks, or after the ack timeout when the viewer died;
* the viewer's :class:`SegmentReader` only opens, checks the size, maps read-only and closes;
* names carry the owner's pid (``ohcs_<pid>_<token>_<n>``) so :func:`sweep_orphans` can unlink what a
  killed sender (SIGKILL, OOM) left behind: segments whose owner process no longer exists.

A slot's *name* always has one owner, the sender. The right to use a slot's *memory* passes along, one
party at a time: the sender writes it, the frame message hands it to the viewer, and the viewer hands it
back - with the ack, or (when a display shows the frame straight from the slot, a loan) with a later
``release`` once the display no longer shows it. Until then the slot is *held* and the sender writes other
slots; unlinking never invalidates a mapping, so a viewer may keep showing a held slot of a sender that
closed or was killed, and the memory goes back when its last mapping closes. A segment never shrinks
(names are never reused), so a mapped view can never turn into SIGBUS.

Reusing slots (instead of one new segment per frame) keeps the pages mapped on both sides: a fresh 8 MB
segment costs page faults worth about three memcpys, a reused one costs one memcpy.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openhcs_rules.messaging.errors import MessageError
from openhcs_rules.messaging.messages import SHM_NAME

try:  # CPython's POSIX shm calls (what multiprocessing.shared_memory uses underneath)
    import _posixshmem  # type: ignore[import-not-found]  # private CPython module: typeshed has no stub
except ImportError:  # pragma: no cover - Windows: senders fall back to inline frames
    _posixshmem = None

PREFIX = "ohcs_"
SHM_DIR = Path("/dev/shm")
_HUGE_PAGE = 2 << 20


def available() -> bool:
    """Whether this platform has POSIX shared memory (the shm transport is only offered if so)."""
    return _posixshmem is not None


def _create(name: str, size: int) -> mmap.mmap:
    fd = _posixshmem.shm_open("/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, size)
        buffer = mmap.mmap(fd, size)
    finally:
        os.close(fd)
    if size >= _HUGE_PAGE and hasattr(mmap, "MADV_HUGEPAGE"):
        # The sender's copy into a slot is the stream's one copy. On 4 KiB pages it runs at about 0.65-0.75x
        # of a copy into huge-page-backed memory (TLB misses; measured here: 12.5 vs 16-20 GB/s for 8 MiB).
        # Huge pages for /dev/shm need the tmpfs mounted with huge=advise (or within_size/always); where it
        # is not (the default, huge=never), this is a no-op.
        with contextlib.suppress(OSError):
            buffer.madvise(mmap.MADV_HUGEPAGE)
    return buffer


def unlink(name: str) -> bool:
    """Remove a segment's name (mappings stay valid until closed); False if it was already gone."""
    try:
        _posixshmem.shm_unlink("/" + name)
    except FileNotFoundError:
        return False
    return True


@dataclass
class Segment:
    """One writer-side slot: a named segment and a writable mapping of it."""

    name: str
    capacity: int
    buffer: mmap.mmap

    def write(self, array: np.ndarray) -> None:
        target = np.frombuffer(self.buffer, dtype=array.dtype, count=array.size).reshape(array.shape)
        np.copyto(target, array, casting="no")

    def destroy(self) -> None:
        unlink(self.name)
        self.buffer.close()


class SegmentPool:
    """The sender's segments: at most ``max_bytes`` in all, reused once free, all unlinked on close.

    A slot is *free* (the sender may write it), *in flight* (sent, not acknowledged yet) or *held* (the
    viewer acknowledged it but shows the frame from it until a ``release``). Free slots are reused best fit
    first, most recently freed first: that one is likeliest still in the CPU caches of both processes.
    """

    def __init__(self, max_bytes: int = 128 << 20) -> None:
        self.max_bytes = max_bytes
        self._token = secrets.token_hex(4)
        self._counter = 0
        self._free: list[Segment] = []  # oldest first
        self._busy: dict[str, Segment] = {}  # in flight or held
        self._held: set[str] = set()
        self._closed = False

    @property
    def total_bytes(self) -> int:
        return sum(s.capacity for s in self._free) + sum(s.capacity for s in self._busy.values())

    @property
    def held(self) -> int:
        """Slots the viewer keeps past the ack (its displays show them)."""
        return len(self._held)

    @property
    def in_flight(self) -> int:
        """Slots sent and not acknowledged yet (an ack frees or holds them)."""
        return len(self._busy) - len(self._held)

    def names(self) -> list[str]:
        return [s.name for s in self._free] + list(self._busy)

    def acquire(self, nbytes: int) -> Segment | None:
        """A free slot of at least ``nbytes`` (reused or new), or None when the pool is full of busy slots."""
        if self._closed:
            return None
        segment: Segment | None = None
        for candidate in reversed(self._free):  # most recently freed first; smallest that fits wins
            if candidate.capacity >= nbytes and (segment is None or candidate.capacity < segment.capacity):
                segment = candidate
        if segment is not None:
            self._free.remove(segment)
        else:
            while self._free and self.total_bytes + nbytes > self.max_bytes:
                self._free.pop(0).destroy()  # too small for this frame size: make room
            if self.total_bytes + nbytes > self.max_bytes and self._busy:
                return None
            self._counter += 1
            name = f"{PREFIX}{os.getpid()}_{self._token}_{self._counter}"
            segment = Segment(name, nbytes, _create(name, nbytes))
        self._busy[segment.name] = segment
        return segment

    def hold(self, name: str) -> None:
        """The viewer acknowledged the frame in this slot and keeps showing it: not free until released."""
        if name in self._busy:
            self._held.add(name)

    def release(self, name: str) -> None:
        """The viewer is done with this slot (acked without holding, or released): it may carry the next frame."""
        segment = self._busy.pop(name, None)
        self._held.discard(name)
        if segment is not None:
            self._free.append(segment)

    def release_held(self, name: str) -> bool:
        """A viewer's ``release`` of a held slot; a name not held (in flight, unknown) is left alone."""
        if name not in self._held:
            return False
        self.release(name)
        return True

    def close(self) -> None:
        """Unlink every slot, free, in flight or held (the owner's last act; a viewer's mappings stay valid)."""
        self._closed = True
        for segment in [*self._free, *self._busy.values()]:
            segment.destroy()
        self._free.clear()
        self._busy.clear()
        self._held.clear()


class SegmentReader:
    """The viewer's side: map senders' segments read-only, keeping recent mappings open.

    Mapping a segment costs more than copying out of it (page-table setup for every page), and senders
    reuse a few slots, so the last ``max_open`` mappings are kept; a mapping idle for ``idle_s`` or named in
    a sender's release message is closed - unless a display holds a view of it (:meth:`hold`): a held
    mapping is closed only after its last hold ends, and a mapping an array still views (``BufferError``)
    stays open until a later expiry, so nothing is ever unmapped under a view. The reader never creates or
    unlinks a segment.
    """

    def __init__(self, max_open: int = 32, idle_s: float = 10.0) -> None:
        self.max_open = max_open
        self.idle_s = idle_s
        self._maps: OrderedDict[str, tuple[mmap.mmap, float]] = OrderedDict()
        self._holds: dict[str, int] = {}
        self._retired: set[str] = set()  # the sender released these while held: close after the last hold
        self._lock = threading.Lock()

    def _mapping(self, name: str, nbytes: int) -> mmap.mmap:
        entry = self._maps.pop(name, None)
        if entry is not None:
            self._maps[name] = (entry[0], time.monotonic())
            if len(entry[0]) < nbytes:  # names are never reused, so a segment never grows
                raise MessageError(f"segment {name} holds {len(entry[0])} bytes, the frame needs {nbytes}")
            return entry[0]
        if not SHM_NAME.match(name):
            raise MessageError(f"{name!r} is not an openhcs shared-memory segment")
        try:
            fd = _posixshmem.shm_open("/" + name, os.O_RDONLY, 0)
        except FileNotFoundError:
            raise MessageError(f"shared-memory segment {name} does not exist (sender gone?)") from None
        try:
            size = os.fstat(fd).st_size
            if size < nbytes:  # mapping past the end would crash the viewer with SIGBUS
                raise MessageError(f"segment {name} holds {size} bytes, the frame needs {nbytes}")
            buffer = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        self._maps[name] = (buffer, time.monotonic())
        # past the limit, close the least recently used mappings no display holds - never the one just made
        # for this frame: when displays hold max_open mappings or more (loans kept from earlier senders), it
        # would be the only candidate, and every later frame would be read from a closed mapping
        excess = len(self._maps) - self.max_open
        for stale in [n for n in self._maps if n not in self._holds and n != name][: max(0, excess)]:
            self._close(stale)
        return buffer

    def view(self, name: str, dtype: str, shape: tuple[int, int]) -> np.ndarray:
        """The frame in segment ``name`` as a read-only array on the mapping (no copy).

        Valid while the viewer has not given the slot back (ack without hold, or release): the sender then
        writes the next frame into it.
        """
        count = int(shape[0]) * int(shape[1])
        nbytes = count * np.dtype(dtype).itemsize
        with self._lock:
            buffer = self._mapping(name, nbytes)
            return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)

    def read(self, name: str, dtype: str, shape: tuple[int, int]) -> np.ndarray:
        """A private copy of the frame in segment ``name`` (safe to keep after the ack)."""
        return self.view(name, dtype, shape).copy()

    def size(self, name: str) -> int:
        """Bytes of the mapped segment ``name`` (a slot may be larger than the frame in it); 0 if unmapped."""
        with self._lock:
            entry = self._maps.get(name)
            return len(entry[0]) if entry is not None else 0

    def hold(self, name: str) -> None:
        """A display keeps a view of this segment: its mapping stays open until :meth:`unhold`."""
        with self._lock:
            self._holds[name] = self._holds.get(name, 0) + 1

    def unhold(self, name: str) -> None:
        with self._lock:
            count = self._holds.pop(name, 0) - 1
            if count > 0:
                self._holds[name] = count
            elif name in self._retired:
                self._retired.discard(name)
                self._close(name)

    @property
    def held(self) -> int:
        """Segments a display holds a view of."""
        with self._lock:
            return len(self._holds)

    def _close(self, name: str) -> None:
        entry = self._maps.pop(name, None)
        if entry is not None:
            try:
                entry[0].close()
            except BufferError:  # an array still views it: keep the mapping until a later expiry
                self._maps[name] = entry

    def release(self, names: list[str]) -> None:
        """The sender unlinked these segments: close their mappings (held ones after their last hold)."""
        with self._lock:
            for name in names:
                if name in self._holds:
                    self._retired.add(name)
                else:
                    self._close(name)

    def expire(self) -> None:
        """Close mappings nobody used for ``idle_s`` and nobody holds (their senders are likely done)."""
        cutoff = time.monotonic() - self.idle_s
        with self._lock:
            for name in [n for n, (_, used) in self._maps.items() if used < cutoff and n not in self._holds]:
                self._close(name)

    def close(self) -> None:
        """Close every mapping no array views any more (the viewer is stopping)."""
        with self._lock:
            self._holds.clear()
            self._retired.clear()
            for name in list(self._maps):
                self._close(name)


def our_segments(pid: int | None = None) -> list[str]:
    """Names of openhcs segments in /dev/shm (of one owner pid if given); empty where /dev/shm is absent."""
    if not SHM_DIR.is_dir():
        return []
    prefix = PREFIX if pid is None else f"{PREFIX}{pid}_"
    return sorted(p.name for p in SHM_DIR.iterdir() if p.name.startswith(prefix) and SHM_NAME.match(p.name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans() -> list[str]:
    """Unlink segments whose owner process is gone (a sender killed before it could clean up)."""
    removed = []
    for name in our_segments():
        pid = int(name.split("_")[1])
        if pid != os.getpid() and not _alive(pid):
            with contextlib.suppress(OSError):
                if unlink(name):
                    removed.append(name)
    return removed
