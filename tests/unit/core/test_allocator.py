"""keep_large_blocks: a kernel job's process reuses freed image-sized blocks instead of faulting in new ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

#: ten rounds of what a kernel does with a stack: four 16 MB planes alive at once, then freed; prints the minor page
#: faults of the rounds after a first one (which faults the memory in both ways) and the tuning's result
_PROGRAM = """
import json, resource, sys, threading
import numpy as np
from openhcs_rules.core.allocator import keep_large_blocks
tuned = keep_large_blocks() if sys.argv[1] == "tuned" else False
def one_round():
    planes = [np.ones(1 << 22, dtype=np.float32) for _ in range(4)]
    del planes
def run(round):
    if sys.argv[2] == "threads":  # each round in a new thread, as a job's read-ahead and writer threads allocate
        thread = threading.Thread(target=round)
        thread.start()
        thread.join()
    else:
        round()
run(one_round)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    run(one_round)
print(json.dumps({"tuned": tuned, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""

needs_glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None, reason="glibc's malloc only"
)


def _run(mode: str, where: str = "main", **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, mode, where], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


@needs_glibc
def test_freed_image_sized_blocks_are_reused_without_new_page_faults() -> None:
    default, tuned = _run("default"), _run("tuned")
    assert tuned["tuned"] is True
    pages = (1 << 24) // 4096  # one 16 MB plane: 4096 pages
    # by default glibc returns the freed planes (maps them anew, or trims the heap) and faults them in again
    assert int(default["faults"]) >= 2 * pages
    assert int(tuned["faults"]) < pages // 4  # the first round's pages serve all ten


@needs_glibc
def test_blocks_freed_in_helper_threads_are_reused_too() -> None:
    """One heap for all threads: with a heap per thread, ~7,000-15,000 faults here after the same tuning."""
    default, tuned = _run("default", "threads"), _run("tuned", "threads")
    pages = (1 << 24) // 4096
    assert int(default["faults"]) >= 2 * pages
    assert int(tuned["faults"]) < pages // 4


@needs_glibc
@pytest.mark.parametrize("setting", [{"MALLOC_MMAP_THRESHOLD_": "131072"}, {"MALLOC_ARENA_MAX": "4"}])
def test_a_users_own_malloc_settings_are_left_alone(setting: dict[str, str]) -> None:
    assert _run("tuned", **setting)["tuned"] is False
