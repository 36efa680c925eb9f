"""Per-plane denoising before thresholding or measuring.

A small Gaussian (sigma about 1 px) removes shot noise at almost no cost and is what most nuclei
pipelines need. The median filter keeps edges sharper and removes isolated hot pixels, but scipy's
median is much slower (about 0.5 s for a 3x3 window on a 2048x2048 plane on one CPU core), so it is
opt-in.
"""

from __future__ import annotations

from typing import Any

from openhcs_rules.core.arrays import modules_for
from openhcs_rules.functions._stack import as_float32, require_stack

DENOISE_METHODS = ("gaussian", "median")


def denoise(stack: Any, sigma: float = 1.0, method: str = "gaussian", size: int = 3) -> Any:
    """Smooth every plane of a ``(n, y, x)`` stack independently; returns float32 of the same shape.

    ``gaussian`` uses ``sigma`` (pixels); ``median`` uses a ``size`` x ``size`` window. Planes are
    never mixed (the filter size along the stack axis is 0/1), because the planes may be channels,
    z positions or time points.
    """
    require_stack(stack)
    if method not in DENOISE_METHODS:
        raise ValueError(f"unknown denoise method {method!r}; use one of {', '.join(DENOISE_METHODS)}")
    _, ndi = modules_for(stack)
    data = as_float32(stack)
    if method == "gaussian":
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        if sigma == 0:
            return data.copy()
        return ndi.gaussian_filter(data, sigma=(0.0, float(sigma), float(sigma)), mode="reflect")
    size = int(size)
    if size < 1:
        raise ValueError(f"median size must be >= 1, got {size}")
    return ndi.median_filter(data, size=(1, size, size), mode="reflect")
