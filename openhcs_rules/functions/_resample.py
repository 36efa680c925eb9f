"""Fast block downsampling and bilinear upsampling for smooth fields (background, illumination).

Smooth fields carry no detail at the pixel scale, so estimating them on a 10x smaller image and
interpolating back costs ~1% of the work. ``scipy.ndimage.zoom`` takes about 110 ms to bring a 205^2
field to 2048^2 on one core; the same bilinear interpolation written as two small matrix products
(``Ay @ small @ Ax.T``) takes about 10 ms and runs unchanged on cupy.

Both functions give exactly (bit for bit) the values of their first, plainer versions, which the
segmentation's results depend on (a rounding changed in the working image can move a watershed boundary):

* :func:`block_mean` adds the ``factor x factor`` pixels of each block with strided slices, in the order
  numpy's ``reshape(..., ny, f, nx, f).mean(axis=(-3, -1))`` adds them (pairwise within a block's row, as
  numpy's contiguous reductions do, then row after row), and pads only the last partial row and column of
  blocks instead of the whole image: 2-4x faster (numpy's reduction over two non-adjacent axes walks the
  image in small steps; a 2x2 block mean of a 3 x 2048^2 stack took 0.1 s);
* :func:`upsample`'s second product multiplies each band of output columns only by the few input columns
  that band interpolates from (a bilinear weight matrix has two non-zeros per row; the zero products add
  exactly nothing to the sums, so every BLAS that accumulates the K dimension in one sequence gives the same
  bits).
"""

from __future__ import annotations

from typing import Any

from openhcs_rules.core.arrays import modules_for

#: output columns per band of :func:`upsample`'s second, banded matrix product.
_UPSAMPLE_BAND = 128


def _pairwise_sum(parts: list[Any]) -> Any:
    """Elementwise sum of equal-shaped arrays in the order of numpy's pairwise summation of ``len(parts)``
    contiguous values (``pairwise_sum`` in numpy's loops: plainly from the first below 8 values, else 8
    running sums combined as ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then the rest one by one)."""
    count = len(parts)
    if count < 8:
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        return total
    running = [part.copy() for part in parts[:8]]
    index = 8
    while index < count - count % 8:
        for offset in range(8):
            running[offset] += parts[index + offset]
        index += 8
    total = (running[0] + running[1]) + (running[2] + running[3])
    total += (running[4] + running[5]) + (running[6] + running[7])
    for part in parts[index:]:
        total += part
    return total


def _block_sums(data: Any, factor: int) -> Any:
    """Sums over the whole ``factor`` x ``factor`` blocks of the last two axes (a partial block at the far
    edges is left out), each block summed row by row, pairwise within a row (see the module docstring)."""
    ny, nx = data.shape[-2] // factor, data.shape[-1] // factor
    total = None
    for row in range(factor):
        columns = [data[..., row : ny * factor : factor, col : nx * factor : factor] for col in range(factor)]
        row_sum = _pairwise_sum(columns)
        if total is None:
            total = row_sum
        else:
            total += row_sum
    return total


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
    ny, nx = (height + pad_y) // factor, (width + pad_x) // factor
    if nx == 1:
        # one block across: numpy sums each block as one contiguous run of factor^2 values (another order)
        if pad_y or pad_x:
            data = xp.pad(data, [(0, 0)] * len(lead) + [(0, pad_y), (0, pad_x)], mode="edge")
        return data.reshape(*lead, ny, factor, nx, factor).mean(axis=(-3, -1), dtype=xp.float32)
    full_y, full_x = height // factor, width // factor
    sums = xp.empty((*lead, ny, nx), dtype=xp.float32)
    sums[..., :full_y, :full_x] = _block_sums(data, factor)
    keep = [(0, 0)] * len(lead)
    if full_x < nx:  # the last, partial column of blocks: pad that strip only
        strip = data[..., : full_y * factor, full_x * factor :]
        sums[..., :full_y, full_x:] = _block_sums(xp.pad(strip, keep + [(0, 0), (0, pad_x)], mode="edge"), factor)
    if full_y < ny:  # the last, partial row of blocks (with the corner block)
        strip = data[..., full_y * factor :, :]
        sums[..., full_y:, :] = _block_sums(xp.pad(strip, keep + [(0, pad_y), (0, pad_x)], mode="edge"), factor)
    # numpy's mean divides the float32 sums by an integer count in float64 and rounds to float32: the same
    # value as a float32 division (double rounding is exact for a quotient of floats this short)
    return xp.true_divide(sums, factor * factor, out=sums)


def _interpolation_matrix(xp: Any, n_out: int, n_in: int, factor: float) -> Any:
    """(n_out, n_in) linear interpolation weights from block centres back to pixel centres.

    Block ``i`` covers output pixels ``[i*factor, (i+1)*factor)`` so its centre is at
    ``(i + 0.5) * factor - 0.5``. Beyond the first/last centre (half a block at each edge) the field is
    extrapolated linearly rather than held constant, so a gradient is reproduced right up to the edge.
    """
    if n_in == 1:
        return xp.ones((n_out, 1), dtype=xp.float32)
    lower = _lower_neighbours(xp, n_out, n_in, factor)
    position = (xp.arange(n_out, dtype=xp.float64) + 0.5) / factor - 0.5
    weight = position - lower
    columns = xp.arange(n_in, dtype=xp.int64)[None, :]
    matrix = (columns == lower[:, None]) * (1.0 - weight)[:, None] + (columns == lower[:, None] + 1) * weight[:, None]
    return matrix.astype(xp.float32)


def _lower_neighbours(xp: Any, n_out: int, n_in: int, factor: float) -> Any:
    """Per output pixel, the first of the two input samples it is interpolated from (int64)."""
    position = (xp.arange(n_out, dtype=xp.float64) + 0.5) / factor - 0.5
    return xp.clip(xp.floor(position), 0, max(n_in - 2, 0)).astype(xp.int64)


def upsample(small: Any, factor: float, shape: tuple[int, int]) -> Any:
    """Bilinear upsampling of block-averaged fields (last two axes) back to ``shape`` (float32)."""
    xp, _ = modules_for(small)
    small = xp.asarray(small, dtype=xp.float32)
    if factor == 1 and tuple(small.shape[-2:]) == tuple(shape):
        return small
    rows = _interpolation_matrix(xp, shape[0], small.shape[-2], factor)
    cols = _interpolation_matrix(xp, shape[1], small.shape[-1], factor)
    tall = rows @ small
    n_in = small.shape[-1]
    if n_in <= 2:
        return tall @ cols.T
    # the second product, (height x n_in) @ (n_in x width), is the expensive one; each band of output columns
    # only reads a few input columns (two per output column), so it is done band by band on those
    lower = _lower_neighbours(xp, shape[1], n_in, factor)
    out = xp.empty((*tall.shape[:-1], shape[1]), dtype=xp.float32)
    for start in range(0, shape[1], _UPSAMPLE_BAND):
        stop = min(start + _UPSAMPLE_BAND, shape[1])
        first, last = int(lower[start]), min(int(lower[stop - 1]) + 2, n_in)
        out[..., start:stop] = tall[..., first:last] @ cols[start:stop, first:last].T
    return out
