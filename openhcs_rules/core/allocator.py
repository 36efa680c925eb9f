"""Let a job's process reuse freed image-sized blocks instead of mapping and unmapping them for every array.

Why: the kernels make many short-lived temporaries of one plane or one stack (16-48 MB for 2048x2048 float32).
glibc's malloc serves every block over its mmap threshold (128 KiB at first, raised only as far as the largest
block freed so far) with a fresh ``mmap`` and returns it with ``munmap``: each new array is page-faulted in
again, and in a job with more than one thread (its reader and writer threads) each ``munmap`` interrupts the
other core to flush its TLB. Measured on one well of the pipeline benchmark (4 sites of 2048x2048, 2x3 planes):
3.2 s of the job's 15 s of CPU was system time, 1.3 s with the blocks kept; the plain loop of the same kernels
ran 7.8 s -> 6.5 s. Raising the mmap threshold to glibc's ceiling and the trim threshold keeps such blocks on the
heap, where the next array of the same size reuses them, already mapped.

A job's helper threads (read-ahead, writer) would each get a heap of their own (a glibc "arena", 64 MiB at most,
given back as it empties), where the planes they read and the buffers they compress come and go: those blocks
were faulted in again for every site, and a plane read in one thread and freed by another went back to the
reader's heap. With one arena for the whole process every thread reuses the same kept blocks: on one well of the
pipeline benchmark, 73-78k page faults -> 56-66k (6 runs each); its wall time 7.8-9.5 s against 8.1-9.6 s, within
this machine's noise. Those threads allocate a few large blocks per site, so sharing one heap's lock is cheap.

The cost is memory the process keeps after freeing it (at most what it held at its peak). It is done only in
processes that run the pipeline's kernels (the well and flat-field jobs), never on import, and never where the
user set glibc's own ``MALLOC_*`` variables, which then decide. Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: the largest mmap threshold glibc accepts on 64-bit systems (HEAP_MAX_SIZE / 2); larger blocks are still mapped
MMAP_THRESHOLD_BYTES = 32 << 20
#: free memory at the top of the heap is returned to the system only above this
TRIM_THRESHOLD_BYTES = 1 << 30
#: environment variables with which a user tunes glibc's malloc directly
_USER_SETTINGS = (
    "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_", "MALLOC_ARENA_MAX",
)  # fmt: skip


def keep_large_blocks() -> bool:
    """Tune glibc's malloc for a kernel-running process (module docstring); True if it was done."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in _USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; the mmap threshold first, so a refused trim setting leaves a consistent state
    mapped = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    kept = bool(mapped and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
    # one heap for every thread (module docstring): before any helper thread exists, so none has its own yet
    return bool(kept and mallopt(M_ARENA_MAX, 1) == 1)
