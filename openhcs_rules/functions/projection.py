"""Z projection: collapse the planes of a stack into one plane.

Widefield and confocal z-series are usually reduced to one image before segmentation; the maximum
projection keeps every in-focus nucleus whatever plane it is sharp in, the mean projection keeps
intensities proportional to the amount of dye (better for quantification).
"""

from __future__ import annotations

from typing import Any

from openhcs_rules.functions._stack import as_float32, require_stack
from openhcs_rules.pipeline.memory import modules_for

#: method name -> reduction over axis 0 (all exist in numpy and cupy alike).
PROJECTION_METHODS = ("max", "mean", "min", "std", "sum")


def project_z(stack: Any, method: str = "max") -> Any:
    """Project the ``n`` planes of a ``(n, y, x)`` stack to a ``(1, y, x)`` float32 stack.

    ``method`` is one of ``max``, ``mean``, ``min``, ``std`` (population standard deviation, a
    focus/texture measure) or ``sum``. The result keeps the stack axis so the next step still gets 3D.
    """
    require_stack(stack)
    if method not in PROJECTION_METHODS:
        raise ValueError(f"unknown projection method {method!r}; use one of {', '.join(PROJECTION_METHODS)}")
    xp, _ = modules_for(stack)
    data = as_float32(stack)
    if method == "max":
        result = data.max(axis=0)
    elif method == "min":
        result = data.min(axis=0)
    elif method == "mean":
        result = data.mean(axis=0, dtype=xp.float64)
    elif method == "std":
        result = data.std(axis=0, dtype=xp.float64)
    else:
        result = data.sum(axis=0, dtype=xp.float64)
    return xp.asarray(result, dtype=xp.float32)[None]
