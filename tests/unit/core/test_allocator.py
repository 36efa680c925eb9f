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
import json, resource, sys
import numpy as np
from openhcs_rules.core.allocator import keep_large_blocks
tuned = keep_large_blocks() if sys.argv[1] == "tuned" else False
def one_round():
    planes = [np.ones(1 << 22, dtype=np.float32) for _ in range(4)]
    del planes
one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    one_round()
print(json.dumps({"tuned": tuned, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""

needs_glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None, reason="glibc's malloc only"
)


def _run(mode: str, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, mode], env={**clean, **env}, capture_output=True, text=True, check=True
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
def test_a_users_own_malloc_settings_are_left_alone() -> None:
    assert _run("tuned", MALLOC_MMAP_THRESHOLD_="131072")["tuned"] is False
