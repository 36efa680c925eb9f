"""Shared-memory segments for same-host frames: one owner (the sender) creates, reuses and unlinks them.

Why not :mod:`multiprocessing.shared_memory`: on Python < 3.13 every process that merely *opens* a segment
registers it with its resource tracker, which unlinks it when that process exits - two owners, and a viewer
exiting would pull segments from under a running sender. Here segments are plain POSIX shm objects:

* the sender's :class:`SegmentPool` creates them (mode 0600), reuses a slot once the viewer acked the frame
  in it, and unlinks every slot on close - after all acks, or after the ack timeout when the viewer died;
* the viewer's :class:`SegmentReader` only opens, checks the size, copies out and closes;
* names carry the owner's pid (``ohcs_<pid>_<token>_<n>``) so :func:`sweep_orphans` can unlink what a
  killed sender (SIGKILL, OOM) left behind: segments whose owner process no longer exists.

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


def available() -> bool:
    """Whether this platform has POSIX shared memory (the shm transport is only offered if so)."""
    return _posixshmem is not None


def _create(name: str, size: int) -> mmap.mmap:
    fd = _posixshmem.shm_open("/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, size)
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


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
    """The sender's segments: at most ``max_bytes`` in all, reused after ack, all unlinked on close."""

    def __init__(self, max_bytes: int = 128 << 20) -> None:
        self.max_bytes = max_bytes
        self._token = secrets.token_hex(4)
        self._counter = 0
        self._free: list[Segment] = []
        self._busy: dict[str, Segment] = {}
        self._closed = False

    @property
    def total_bytes(self) -> int:
        return sum(s.capacity for s in self._free) + sum(s.capacity for s in self._busy.values())

    def names(self) -> list[str]:
        return [s.name for s in self._free] + list(self._busy)

    def acquire(self, nbytes: int) -> Segment | None:
        """A free slot of at least ``nbytes`` (reused or new), or None when the pool is full of frames in flight."""
        if self._closed:
            return None
        fitting = [s for s in self._free if s.capacity >= nbytes]
        if fitting:
            segment = fitting[0]
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

    def release(self, name: str) -> None:
        """The viewer is done with this slot (acked): it may carry the next frame."""
        segment = self._busy.pop(name, None)
        if segment is not None:
            self._free.append(segment)

    def close(self) -> None:
        """Unlink every slot, free or still in flight (the owner's last act)."""
        self._closed = True
        for segment in [*self._free, *self._busy.values()]:
            segment.destroy()
        self._free.clear()
        self._busy.clear()


class SegmentReader:
    """The viewer's side: copy frames out of senders' segments, keeping recent mappings open.

    Mapping a segment costs more than copying out of it (page-table setup for every page), and senders
    reuse a few slots, so the last ``max_open`` mappings are kept; a mapping idle for ``idle_s`` or named in
    a sender's release message is closed. The reader never creates or unlinks a segment.
    """

    def __init__(self, max_open: int = 32, idle_s: float = 10.0) -> None:
        self.max_open = max_open
        self.idle_s = idle_s
        self._maps: OrderedDict[str, tuple[mmap.mmap, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _mapping(self, name: str, nbytes: int) -> mmap.mmap:
        entry = self._maps.pop(name, None)
        if entry is not None and len(entry[0]) >= nbytes:
            self._maps[name] = (entry[0], time.monotonic())
            return entry[0]
        if entry is not None:
            entry[0].close()
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
        for stale in list(self._maps)[: max(0, len(self._maps) - self.max_open)]:
            self._close(stale)
        return buffer

    def view(self, name: str, dtype: str, shape: tuple[int, int]) -> np.ndarray:
        """The frame in segment ``name`` as a read-only array on the mapping (no copy).

        Valid only until the viewer acknowledges the frame: the sender then reuses the slot.
        """
        count = int(np.prod(shape))
        nbytes = count * np.dtype(dtype).itemsize
        with self._lock:
            buffer = self._mapping(name, nbytes)
            return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)

    def read(self, name: str, dtype: str, shape: tuple[int, int]) -> np.ndarray:
        """A private copy of the frame in segment ``name`` (safe to keep after the ack)."""
        return self.view(name, dtype, shape).copy()

    def _close(self, name: str) -> None:
        entry = self._maps.pop(name, None)
        if entry is not None:
            try:
                entry[0].close()
            except BufferError:  # an array still views it: keep the mapping until a later expiry
                self._maps[name] = entry

    def release(self, names: list[str]) -> None:
        with self._lock:
            for name in names:
                self._close(name)

    def expire(self) -> None:
        """Close mappings nobody used for ``idle_s`` (their senders are likely done)."""
        cutoff = time.monotonic() - self.idle_s
        with self._lock:
            for name in [n for n, (_, used) in self._maps.items() if used < cutoff]:
                self._close(name)

    def close(self) -> None:
        self.release(list(self._maps))


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
