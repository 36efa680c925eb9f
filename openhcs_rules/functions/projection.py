"""Z projection: collapse the planes of a stack into one plane.

Widefield and confocal z-series are usually reduced to one image before segmentation; the maximum
projection keeps every in-focus nucleus whatever plane it is sharp in, the mean projection keeps
intensities proportional to the amount of dye (better for quantification).
"""

from __future__ import annotations

from typing import Any

from openhcs_rules.core.arrays import modules_for
from openhcs_rules.functions._resample import block_mean
from openhcs_rules.functions._stack import as_float32, require_stack

#: method name -> reduction over axis 0 (all exist in numpy and cupy alike); best_focus picks one plane.
PROJECTION_METHODS = ("max", "mean", "min", "std", "sum", "best_focus")


def focus_scores(stack: Any) -> Any:
    """Sharpness of each plane: variance of the Laplacian of the lightly smoothed plane over its mean squared.

    Dividing by the squared mean makes the score independent of brightness, so a dim sharp plane beats
    a bright blurred one; the light smoothing (sigma 1) keeps camera noise from looking like detail.
    Planes of 1024 px or more are scored on a 2x2 block mean: focus blur spans many pixels, so the
    ranking is the same at a quarter of the cost (0.1 s instead of 0.4 s per 2048^2 plane here).
    """
    xp, ndi = modules_for(stack)
    data = as_float32(stack)
    if min(data.shape[-2:]) >= 1024:
        data = block_mean(data, 2)
    scores = []
    for plane in data:
        lap = ndi.laplace(ndi.gaussian_filter(plane, 1.0))
        mean = float(plane.mean())
        scores.append(float(lap.var()) / (mean * mean + 1e-12))
    return xp.asarray(scores, dtype=xp.float64)


def project_z(stack: Any, method: str = "max") -> Any:
    """Project the ``n`` planes of a ``(n, y, x)`` stack to a ``(1, y, x)`` float32 stack.

    ``method`` is one of ``max``, ``mean``, ``min``, ``std`` (population standard deviation, a
    focus/texture measure), ``sum`` or ``best_focus`` (the sharpest plane, see :func:`focus_scores`:
    out-of-focus haloes never fill the gaps between touching nuclei as they do in a maximum projection,
    so counts are more accurate). The result keeps the stack axis so the next step still gets 3D.
    """
    require_stack(stack)
    if method not in PROJECTION_METHODS:
        raise ValueError(f"unknown projection method {method!r}; use one of {', '.join(PROJECTION_METHODS)}")
    xp, _ = modules_for(stack)
    data = as_float32(stack)
    if method == "best_focus":
        return data[int(focus_scores(data).argmax())][None].astype(xp.float32, copy=True)
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
