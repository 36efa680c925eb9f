"""Illumination (flat-field) correction: estimate the uneven illumination of a channel and divide it out.

Microscope illumination and camera vignetting multiply every image of a channel by the same smooth
profile (often 30-50% dimmer in the corners). Left in, it makes the same nucleus measure dimmer at the
edge of the field, and a global threshold misses dim corner nuclei. As in CellProfiler's
CorrectIlluminationCalculate, the profile is estimated from many images of one channel across a plate:

1. each image is block-averaged to ~128 px a side (the profile is smooth, so nothing is lost, and
   hundreds of images fit in memory);
2. a robust per-pixel statistic across images (the median by default) removes the objects, which sit
   at different places in each image;
3. heavy smoothing keeps only the illumination shape: a quadratic surface is fitted by least squares
   and only the residual is Gaussian-smoothed (sigma ~ 1/12 of the image side). Smoothing the profile
   itself with such a wide Gaussian would flatten its curvature and its slope at the borders (about 5%
   too bright in the corners of a typical vignette); the fitted surface carries that curvature exactly,
   the smoothed residual keeps shapes a quadratic cannot follow;
4. the profile is interpolated back to full size, normalised to mean 1 (so corrected images keep
   their intensity scale) and floored, so a near-dark corner cannot blow up noise when dividing.

A camera offset (dark level) is additive, not multiplicative: pass ``dark`` (e.g. 100 for many sCMOS
cameras) to both functions when it is known, otherwise the estimated profile is flatter than the true
illumination and the correction is only partial.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from openhcs_rules.core.arrays import memory_type_of, modules_for, to_memory
from openhcs_rules.functions._resample import block_mean, upsample
from openhcs_rules.functions._stack import as_float32, require_stack

#: the profile never goes below this fraction of its mean (dividing by ~0 would amplify noise).
ILLUMINATION_FLOOR = 0.05
_TARGET_SIDE = 128
ILLUMINATION_STATISTICS = ("median", "mean")


def estimate_illumination(
    planes: Iterable[Any],
    smoothing: float | None = None,
    dark: float = 0.0,
    statistic: str = "median",
) -> Any:
    """Estimate the illumination profile (2D float32, mean 1) from 2D images of one channel.

    ``planes`` is any iterable of 2D images of the same shape (a generator over a plate is fine: only a
    small downsampled copy of each is kept). ``smoothing`` is the Gaussian sigma in full-resolution
    pixels (default: 1/12 of the shorter image side). ``statistic`` is ``median`` (robust to objects;
    the default) or ``mean`` (CellProfiler's "Regular" mode, better with very few images of a dense
    field). The result lives in the memory (numpy/cupy) of the first plane.
    """
    if statistic not in ILLUMINATION_STATISTICS:
        raise ValueError(
            f"unknown illumination statistic {statistic!r}; use one of {', '.join(ILLUMINATION_STATISTICS)}"
        )
    shape: tuple[int, int] | None = None
    factor = 1
    small_planes: list[Any] = []  # numpy or cupy arrays
    for index, plane in enumerate(planes):
        if getattr(plane, "ndim", None) != 2:
            raise ValueError(
                f"illumination planes must be 2D images; plane {index} has shape {getattr(plane, 'shape', None)}"
            )
        if shape is None:
            shape = (int(plane.shape[0]), int(plane.shape[1]))
            factor = max(1, min(shape) // _TARGET_SIDE)
        elif tuple(plane.shape) != shape:
            raise ValueError(
                f"illumination planes must all have one shape: plane {index} is {plane.shape}, not {shape}"
            )
        small = block_mean(plane, factor)
        if small_planes:
            small = to_memory(small, memory_type_of(small_planes[0]))
        small_planes.append(small - float(dark))
    if shape is None:
        raise ValueError("estimate_illumination needs at least one image")
    xp, ndi = modules_for(small_planes[0])
    stacked = xp.stack(small_planes)
    if statistic == "median":
        summary = xp.median(stacked, axis=0)
    else:
        summary = stacked.mean(axis=0)
    sigma = (min(shape) / 12.0 if smoothing is None else float(smoothing)) / factor
    if sigma < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    summary = summary.astype(xp.float64)
    if sigma > 0:
        surface = _quadratic_fit(summary)
        residual = ndi.gaussian_filter(summary - surface, sigma=sigma, mode="reflect")
        summary = surface + residual
    profile = upsample(summary.astype(xp.float32), factor, shape)
    mean = float(profile.mean())
    if not mean > 0:
        raise ValueError(
            "the images have no positive signal after subtracting the dark level "
            f"({dark}); cannot estimate an illumination profile"
        )
    profile = xp.maximum(profile / mean, ILLUMINATION_FLOOR)
    return xp.asarray(profile, dtype=xp.float32)


def _quadratic_fit(image: Any) -> Any:
    """Least-squares surface ``a + bx + cy + dx^2 + exy + fy^2`` through a small 2D image (same shape)."""
    xp, _ = modules_for(image)
    height, width = image.shape
    yy, xx = xp.meshgrid(
        xp.linspace(-1.0, 1.0, height, dtype=xp.float64), xp.linspace(-1.0, 1.0, width, dtype=xp.float64), indexing="ij"
    )
    terms = xp.stack([xp.ones_like(xx), xx, yy, xx * xx, xx * yy, yy * yy], axis=-1).reshape(-1, 6)
    coefficients = xp.linalg.lstsq(terms, image.reshape(-1), rcond=None)[0]
    return (terms @ coefficients).reshape(height, width)


def flatfield_correct(stack: Any, illumination: Any, dark: float = 0.0) -> Any:
    """``(plane - dark) / illumination`` for every plane of a ``(n, y, x)`` stack (float32).

    The profile is moved to the stack's memory (numpy or cupy) first, so a profile estimated once on
    the host can correct stacks on a GPU.
    """
    require_stack(stack)
    xp, _ = modules_for(stack)
    profile = to_memory(illumination, memory_type_of(stack))
    if tuple(profile.shape) != tuple(stack.shape[-2:]):
        raise ValueError(
            f"illumination profile has shape {tuple(profile.shape)} but the images are {tuple(stack.shape[-2:])}"
        )
    profile = xp.maximum(xp.asarray(profile, dtype=xp.float32), ILLUMINATION_FLOOR)
    data = as_float32(stack)
    if dark:
        data = data - xp.float32(dark)
    if xp.may_share_memory(data, stack):  # the caller's own float32 pixels (or a view of them): never written to
        return data / profile[None]
    # a float32 copy made here (from the camera's uint16, or less the dark level): divided in place
    return xp.divide(data, profile[None], out=data)
