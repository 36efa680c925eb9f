"""Which GPUs the execution server lends to runs, and how many a run needs.

Two runs on one GPU compete for its memory, and cupy fails with an out-of-memory error half-way through a
plate rather than waiting. So the server owns a list of devices (``serve --gpus``) and lends each run the
devices it needs for as long as it runs, through ``CUDA_VISIBLE_DEVICES``: the run's cupy sees only its own
devices (renumbered from 0), and a run that needs none sees none. A run waits in the queue until its
devices are free.

A run's need comes from its config (:func:`gpu_demand`): ``resources.gpu`` when set (its jobs ask the
scheduler for that many), else one device when ``gpu: cupy`` forces cupy, or when ``gpu: auto`` would use
cupy because this server has GPUs; ``gpu: numpy`` needs none.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from openhcs_rules.errors import ConfigError

#: the variable through which a run sees its devices (honoured by CUDA, hence cupy)
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
#: a device as CUDA_VISIBLE_DEVICES names it: an index, or a GPU/MIG UUID
DEVICE = re.compile(r"^(\d{1,3}|(GPU|MIG)-[A-Za-z0-9/_-]{1,80})$")


def detect_gpus(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The devices this process may use: those of ``CUDA_VISIBLE_DEVICES`` when it is set (a scheduler or
    the operator chose them), else one index per GPU ``nvidia-smi -L`` lists; none without either."""
    environment = os.environ if env is None else env
    if VISIBLE_ENV in environment:
        named = [part.strip() for part in environment[VISIBLE_ENV].split(",")]
        # CUDA stops at the first invalid entry ("-1" is the usual way to say "none")
        found: list[str] = []
        for part in named:
            if not DEVICE.match(part):
                break
            found.append(part)
        return tuple(found)
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    count = sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))
    return tuple(str(index) for index in range(count)) if listing.returncode == 0 else ()


def parse_gpus(value: str) -> tuple[str, ...]:
    """``serve --gpus``: ``auto`` (:func:`detect_gpus`), ``none``, or devices ``0,1`` / GPU UUIDs."""
    text = value.strip()
    if text == "auto":
        return detect_gpus()
    if text in ("none", ""):
        return ()
    devices = tuple(part.strip() for part in text.split(","))
    bad = [device for device in devices if not DEVICE.match(device)]
    if bad:
        raise ConfigError(f"--gpus {value!r}: {bad[0]!r} is not a device; give auto, none, or indices like 0,1")
    if len(set(devices)) != len(devices):
        raise ConfigError(f"--gpus {value!r}: a device is named twice")
    return devices


def gpu_demand(config: Mapping[str, Any], server_has_gpus: bool) -> int:
    """How many devices a run of ``config`` (a screen config mapping, checked or not) holds while it runs."""
    resources = config.get("resources")
    asked = resources.get("gpu", 0) if isinstance(resources, Mapping) else 0
    if isinstance(asked, int) and not isinstance(asked, bool) and asked > 0:
        return asked
    mode = config.get("gpu", "auto")
    if mode == "cupy" or (mode == "auto" and server_has_gpus):
        return 1
    return 0
