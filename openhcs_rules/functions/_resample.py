"""Fast block downsampling and bilinear upsampling for smooth fields (background, illumination).

Smooth fields carry no detail at the pixel scale, so estimating them on a 10x smaller image and
interpolating back costs ~1% of the work. ``scipy.ndimage.zoom`` takes about 110 ms to bring a 205^2
field to 2048^2 on one core; the same bilinear interpolation written as two small matrix products
(``Ay @ small @ Ax.T``) takes about 10 ms and runs unchanged on cupy.
"""

from __future__ import annotations

from typing import Any

from openhcs_rules.core.arrays import modules_for


def block_mean(image: Any, factor: int) -> Any:
    """Mean of ``factor`` x ``factor`` blocks over the last two axes of an image or stack (float32).

    The image is edge-padded up to a multiple of ``factor`` so every block is full and no pixel is
    dropped; the padded blocks at the far edges repeat the last row/column, which is what a smooth
    field should do there.
    """
    xp, _ = modules_for(image)
    if factor <= 1:
        return xp.asarray(image, dtype=xp.float32)
    *lead, height, width = image.shape
    pad_y = (-height) % factor
    pad_x = (-width) % factor
    data = xp.asarray(image, dtype=xp.float32)
    if pad_y or pad_x:
        data = xp.pad(data, [(0, 0)] * len(lead) + [(0, pad_y), (0, pad_x)], mode="edge")
    ny, nx = data.shape[-2] // factor, data.shape[-1] // factor
    blocks = data.reshape(*lead, ny, factor, nx, factor)
    return blocks.mean(axis=(-3, -1), dtype=xp.float32)


def _interpolation_matrix(xp: Any, n_out: int, n_in: int, factor: float) -> Any:
    """(n_out, n_in) linear interpolation weights from block centres back to pixel centres.

    Block ``i`` covers output pixels ``[i*factor, (i+1)*factor)`` so its centre is at
    ``(i + 0.5) * factor - 0.5``. Beyond the first/last centre (half a block at each edge) the field is
    extrapolated linearly rather than held constant, so a gradient is reproduced right up to the edge.
    """
    position = (xp.arange(n_out, dtype=xp.float64) + 0.5) / factor - 0.5
    if n_in == 1:
        return xp.ones((n_out, 1), dtype=xp.float32)
    lower = xp.clip(xp.floor(position), 0, n_in - 2).astype(xp.int64)
    weight = position - lower
    columns = xp.arange(n_in, dtype=xp.int64)[None, :]
    matrix = (columns == lower[:, None]) * (1.0 - weight)[:, None] + (columns == lower[:, None] + 1) * weight[:, None]
    return matrix.astype(xp.float32)


def upsample(small: Any, factor: float, shape: tuple[int, int]) -> Any:
    """Bilinear upsampling of block-averaged fields (last two axes) back to ``shape`` (float32)."""
    xp, _ = modules_for(small)
    small = xp.asarray(small, dtype=xp.float32)
    if factor == 1 and tuple(small.shape[-2:]) == tuple(shape):
        return small
    rows = _interpolation_matrix(xp, shape[0], small.shape[-2], factor)
    cols = _interpolation_matrix(xp, shape[1], small.shape[-1], factor)
    return rows @ small @ cols.T
