"""GPU placement logic: concurrent jobs spread over a configured number of devices (no GPU needed).

The whole workflow on a real GPU: tests/workflow/test_devices_workflow.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import pytest

from openhcs_rules.pipeline.devices import claim_device

CLAIMER = """
import sys, time
from openhcs_rules.pipeline.devices import claim_device
device, handle = claim_device(int(sys.argv[1]), sys.argv[2])
print(device, flush=True)
time.sleep(float(sys.argv[3]))
"""


def _concurrent_claims(jobs: int, devices: int, lock_dir) -> list[int]:
    """Start ``jobs`` processes that each claim a device and hold it; return the devices they got."""
    procs = []
    for _ in range(jobs):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", CLAIMER, str(devices), str(lock_dir), "3"], stdout=subprocess.PIPE, text=True
            )
        )
        time.sleep(0.05)
    got = [int(p.stdout.readline()) for p in procs]
    for p in procs:
        p.wait(timeout=10)
        p.stdout.close()
    return got


@pytest.mark.parametrize(("jobs", "devices"), [(4, 4), (6, 3), (3, 1)])
def test_concurrent_jobs_spread_evenly_over_devices(tmp_path, jobs, devices):
    got = _concurrent_claims(jobs, devices, tmp_path)
    counts = Counter(got)
    assert set(counts) == set(range(min(jobs, devices)))
    assert max(counts.values()) - min(counts.values()) <= 1  # never all on device 0


def test_a_finished_or_killed_job_frees_its_slot(tmp_path):
    device, handle = claim_device(2, tmp_path)
    second, handle2 = claim_device(2, tmp_path)
    assert (device, second) == (0, 1)
    handle.close()  # the job ended normally
    again, handle3 = claim_device(2, tmp_path)
    assert again == 0 and handle3.name.endswith("device0.slot0.lock")
    handle2.close()
    handle3.close()
    with subprocess.Popen(
        [sys.executable, "-c", CLAIMER, "1", str(tmp_path), "30"], stdout=subprocess.PIPE, text=True
    ) as holder:
        assert int(holder.stdout.readline()) == 0
        _, busy = claim_device(1, tmp_path)
        assert busy.name.endswith("device0.slot1.lock")  # slot 0 is held by the other job
        busy.close()
        holder.kill()  # a crashed job (SIGKILL) ...
        holder.wait()
    _, freed = claim_device(1, tmp_path)
    assert freed.name.endswith("device0.slot0.lock")  # ... left no stale claim
    freed.close()


def test_no_devices_is_an_error(tmp_path):
    with pytest.raises(ValueError):
        claim_device(0, tmp_path)


# --- on a real GPU (skipped without one) -----------------------------------------------------------------

REAL_CLAIMER = """
import logging, sys, time
import cupy
from openhcs_rules.pipeline.devices import select_device
logging.basicConfig(level=logging.INFO)
device = select_device()
cupy.arange(10).sum()  # a kernel on the claimed device
print(device, cupy.cuda.Device().id, flush=True)
time.sleep(float(sys.argv[1]))
"""


def _gpu_count() -> int:
    from openhcs_rules.core.arrays import gpu_available

    if not gpu_available():
        pytest.skip("needs cupy and a CUDA device")
    from openhcs_rules.pipeline.devices import visible_device_count

    return visible_device_count()


@pytest.mark.gpu
def test_concurrent_jobs_on_real_gpus_use_every_visible_device_evenly(tmp_path):
    devices = _gpu_count()
    jobs = 2 * devices + 1
    env = dict(os.environ, OPENHCS_GPU_LOCK_DIR=str(tmp_path))
    procs = [
        subprocess.Popen([sys.executable, "-c", REAL_CLAIMER, "5"], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(jobs)
    ]
    got = []
    for proc in procs:
        claimed, current = (int(v) for v in proc.stdout.readline().split())
        assert claimed == current  # cupy's current device is the claimed one
        got.append(claimed)
    for proc in procs:
        proc.wait(timeout=30)
        proc.stdout.close()
    counts = Counter(got)
    assert set(counts) == set(range(devices))
    assert max(counts.values()) <= -(-jobs // devices)  # at most ceil(jobs / devices) deep
