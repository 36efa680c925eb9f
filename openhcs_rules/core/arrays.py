"""Memory types (numpy on the host, cupy on a GPU) and the one place where arrays change between them.

Processing functions are written once against an array module ``xp`` and an ndimage module ``ndi``;
:func:`modules_for` hands out numpy/scipy or cupy/cupyx for the array it is given, so the numpy path and
the cupy path run the same lines of code and give the same results (within float rounding).
"""

from __future__ import annotations

import functools
import os
from types import ModuleType
from typing import Any

NUMPY = "numpy"
CUPY = "cupy"
MEMORY_TYPES = (NUMPY, CUPY)


@functools.lru_cache(maxsize=1)
def _cupy() -> ModuleType | None:
    """cupy when it is installed *and* a CUDA device answers; None otherwise (never raises)."""
    if os.environ.get("OPENHCS_DISABLE_GPU"):
        return None
    try:
        import cupy

        if cupy.cuda.is_available() and cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy
    except Exception:  # noqa: BLE001 - any import/driver failure means "no GPU here"
        return None
    return None


def gpu_available() -> bool:
    """True when cupy imports and at least one CUDA device is usable."""
    return _cupy() is not None


def resolve_memory_type(requested: str) -> str:
    """'auto' -> cupy where a GPU is usable, else numpy; 'cupy' without a GPU is a clear error."""
    if requested == "auto":
        return CUPY if gpu_available() else NUMPY
    if requested == CUPY and not gpu_available():
        raise RuntimeError(
            "memory type 'cupy' was requested but no usable CUDA device/cupy install was found: "
            "install openhcs-rules[gpu] on a GPU machine, or set gpu: auto (or numpy) in the config"
        )
    if requested not in MEMORY_TYPES:
        raise ValueError(f"unknown memory type {requested!r}; use one of auto, {', '.join(MEMORY_TYPES)}")
    return requested


def memory_type_of(array: Any) -> str:
    """'cupy' for a cupy array, 'numpy' for anything else."""
    return CUPY if type(array).__module__.startswith("cupy") else NUMPY


def modules_for(array: Any) -> tuple[ModuleType, ModuleType]:
    """(xp, ndi) for an array: (numpy, scipy.ndimage) or (cupy, cupyx.scipy.ndimage)."""
    if memory_type_of(array) == CUPY:
        import cupy
        import cupyx.scipy.ndimage as cndi

        return cupy, cndi
    import numpy
    import scipy.ndimage as sndi

    return numpy, sndi


def to_memory(array: Any, memory_type: str) -> Any:
    """Move an array to the given memory type (the single conversion point of the package)."""
    current = memory_type_of(array)
    if current == memory_type:
        return array
    if memory_type == CUPY:
        cupy = _cupy()
        if cupy is None:
            raise RuntimeError("cannot move an array to the GPU: no usable CUDA device")
        return cupy.asarray(array)
    return array.get()  # cupy -> numpy


def to_numpy(array: Any) -> Any:
    """Host copy of any array (no copy for numpy arrays)."""
    return to_memory(array, NUMPY)
