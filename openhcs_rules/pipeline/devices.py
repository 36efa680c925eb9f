"""GPU placement: spread concurrent well jobs over a machine's devices instead of piling onto GPU 0.

Snakemake does not set CUDA_VISIBLE_DEVICES for local jobs, so every job would use device 0. Each job
here claims a device slot by taking a non-blocking ``flock`` on a small file per (device, slot): the
first jobs take slot 0 of every device, the next ones slot 1, and so on, so N concurrent jobs on D
devices land ceil(N / D) deep at most. The kernel releases a lock when its process ends, even by a
crash or ``kill -9``: no stale claims. Under Slurm (or any scheduler that sets CUDA_VISIBLE_DEVICES)
only the allocated devices are visible, so the job claims among exactly those.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

#: per-process claim, kept open for the life of the job (closing it would release the lock)
_CLAIM: IO[bytes] | None = None


def default_lock_dir() -> Path:
    """One folder per user on this host (device numbering is per host); ``OPENHCS_GPU_LOCK_DIR`` overrides it."""
    override = os.environ.get("OPENHCS_GPU_LOCK_DIR")
    return Path(override) if override else Path(tempfile.gettempdir()) / f"openhcs-gpu-slots-{os.getuid()}"


def claim_device(device_count: int, lock_dir: str | Path | None = None, max_slots: int = 64) -> tuple[int, IO[bytes]]:
    """Claim the least-used device among ``device_count``; return (device index, open lock file).

    Keep the returned file open as long as the device is in use: closing it (or exiting) frees the slot.
    """
    if device_count <= 0:
        raise ValueError("no GPU devices to choose from")
    folder = Path(lock_dir) if lock_dir else default_lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for slot in range(max_slots):
        for device in range(device_count):
            handle = open(folder / f"device{device}.slot{slot}.lock", "ab")  # noqa: SIM115 - held open on purpose
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            return device, handle
    raise RuntimeError(f"more than {max_slots} jobs per device are already running on this host")


def visible_device_count() -> int:
    """CUDA devices this process may use (those of its Slurm allocation, if any)."""
    import cupy

    return int(cupy.cuda.runtime.getDeviceCount())


def select_device() -> int:
    """Claim a device for this job and make it cupy's current device; return its index."""
    global _CLAIM
    import cupy

    if _CLAIM is not None:  # a job processing several wells keeps the device it claimed first
        return int(cupy.cuda.Device().id)
    count = visible_device_count()
    device, _CLAIM = claim_device(count)
    cupy.cuda.Device(device).use()
    slot = Path(_CLAIM.name).stem.split(".")[-1]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all")
    log.info("claimed GPU %d of %d (%s; CUDA_VISIBLE_DEVICES=%s)", device, count, slot, visible)
    return device
