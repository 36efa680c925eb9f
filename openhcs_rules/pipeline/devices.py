"""GPU device selection: spread concurrent well jobs over the devices instead of piling onto GPU 0.

Snakemake does not set CUDA_VISIBLE_DEVICES. A scheduler (Slurm) does: then the job uses what it was
given. Otherwise the job picks a device from its Snakemake job id / process id, so concurrent jobs on a
multi-GPU machine land on different devices.
"""

from __future__ import annotations

import os


def choose_device(device_count: int, job_token: int | None = None) -> int:
    """Device index for this job among ``device_count`` visible devices (round-robin by job token)."""
    if device_count <= 0:
        raise ValueError("no GPU devices to choose from")
    token = job_token if job_token is not None else os.getpid()
    return token % device_count


def select_device() -> int:
    """Make one visible device current for this process (cupy) and return its index."""
    import cupy  # type: ignore[import-not-found]

    count = cupy.cuda.runtime.getDeviceCount()
    token_env = os.environ.get("OPENHCS_JOB_TOKEN")
    device = choose_device(count, int(token_env) if token_env and token_env.isdigit() else None)
    cupy.cuda.Device(device).use()
    return device
