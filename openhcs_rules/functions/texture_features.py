"""Haralick texture features of labelled objects per channel (CellProfiler's MeasureTexture), vectorised.

**Grey levels.** Each channel is quantised per image into ``levels`` grey levels (default 16) between a
low and a high value (default: the 0.1th and 99.9th percentiles of the object pixels, so one hot pixel does
not squeeze every object into a level or two): level = floor((value - low) / (high - low) x levels),
clipped to 0..levels-1. One scale per image keeps objects comparable (a bright object has more contrast
than a dim one, as it looks); per-object scaling would hide that. Why 16 levels and not CellProfiler's
256: a co-occurrence matrix has levels^2 cells, and an object of a few hundred pixels has only ~2 x its
area pixel pairs per direction. At 16 levels (256 cells) the matrix is populated and entropy-like features
describe the texture; at 32 (1024 cells) or 256 they mostly measure how few pairs there are, i.e. the
object's size.

**Co-occurrence.** For each of the 4 directions (0, 45, 90, 135 degrees) at distance ``scale`` (pixel
(y, x) paired with (y, x + d), (y + d, x + d), (y + d, x), (y + d, x - d), as mahotas, which CellProfiler
calls) the pairs of pixels that lie in the *same* object are counted, symmetrically ((i, j) and (j, i)),
for all objects and channels at once: one ``bincount`` over (channel, object, level_i, level_j) per
direction. A direction in which an object has no pair (thinner than ``scale``) is left out of that object's
mean; an object with no pair at all gets NaN.

**Features** (mahotas' definitions, log base 2, p = normalised symmetric co-occurrence matrix, px its
margin, p_{x+y}(k) = sum of p over i + j = k, p_{x-y}(k) over |i - j| = k): AngularSecondMoment
sum p^2; Contrast sum (i-j)^2 p; Correlation (sum ij p - mu^2) / sigma^2 (1 for a constant object, as
mahotas and scikit-image, where sigma^2 < 1e-12); Variance sum (i - mu)^2 px; InverseDifferenceMoment
sum p / (1 + (i-j)^2); SumAverage sum k p_{x+y}; SumVariance sum k^2 p_{x+y} - SumAverage^2; SumEntropy
H(p_{x+y}); Entropy H(p); DifferenceVariance the variance of the vector p_{x-y} (mahotas' default, which
CellProfiler reports); DifferenceEntropy H(p_{x-y}); InfoMeas1 (H - HXY1) / max(HX, HY); InfoMeas2
sqrt(1 - exp(-2 (HXY2 - H))). Each is computed per direction and averaged over the directions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from openhcs_rules.core.arrays import modules_for, to_numpy
from openhcs_rules.functions._objects import Objects

#: default number of grey levels (see the module docstring for why 16)
LEVELS = 16
#: default co-occurrence distance in pixels (CellProfiler's default texture scale)
SCALE = 3
#: percentiles of the object pixels that map to the lowest and highest grey level
RANGE_PERCENTILES = (0.1, 99.9)
#: a grey-level variance below this is "constant" (Correlation is 1 there)
_CONSTANT = 1e-12
#: feature names in mahotas' order
HARALICK = (
    "AngularSecondMoment",
    "Contrast",
    "Correlation",
    "Variance",
    "InverseDifferenceMoment",
    "SumAverage",
    "SumVariance",
    "SumEntropy",
    "Entropy",
    "DifferenceVariance",
    "DifferenceEntropy",
    "InfoMeas1",
    "InfoMeas2",
)


def texture_ranges(images: Any, objects: Objects) -> list[tuple[float, float]]:
    """Per channel, the (low, high) values that map to the first and last grey level (see module docstring)."""
    xp = objects.xp
    ranges = []
    for channel in range(images.shape[0]):
        values = images[channel].ravel()[objects.pixels].astype(xp.float64)
        if values.size == 0:
            ranges.append((0.0, 1.0))
            continue
        low, high = (float(v) for v in xp.percentile(values, xp.asarray(RANGE_PERCENTILES)))
        ranges.append((low, high if high > low else low + 1.0))
    return ranges


def quantise(images: Any, ranges: list[tuple[float, float]], levels: int = LEVELS) -> Any:
    """``(c, y, x)`` grey levels 0..levels-1 (int32), channel by channel between its (low, high)."""
    xp, _ = modules_for(images)
    if len(ranges) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} channels but {len(ranges)} texture ranges")
    out = xp.empty(images.shape, dtype=xp.int32)
    for channel, (low, high) in enumerate(ranges):
        scaled = (images[channel].astype(xp.float64) - low) * (levels / (high - low))
        out[channel] = xp.clip(xp.floor(scaled), 0, levels - 1).astype(xp.int32)
    return out


def cooccurrence(objects: Objects, grey: Any, scale: int, levels: int) -> Any:
    """Symmetric co-occurrence counts, ``(directions=4, channels, objects, levels, levels)`` float64.

    The channels' grey levels are packed into one int64 per pixel (4 bits each at 16 levels), so that each
    direction reads the pixel pairs with two gathers whatever the number of channels; each channel is then
    unpacked with a shift and counted with one ``bincount`` over (object, level_i, level_j).
    """
    xp = objects.xp
    width = objects.shape[1]
    channels = grey.shape[0]
    bits = max(1, (levels - 1).bit_length())
    per_word = max(1, 62 // bits)
    words = []
    for start in range(0, channels, per_word):
        word = xp.zeros(grey.shape[1:], dtype=xp.int64).ravel()
        for offset, channel in enumerate(range(start, min(start + per_word, channels))):
            word |= grey[channel].ravel().astype(xp.int64) << (bits * offset)
        words.append(word)
    cells = objects.count * levels * levels
    mask = (1 << bits) - 1
    counts = []
    for dy, dx in ((0, scale), (scale, scale), (scale, 0), (scale, -scale)):
        same = objects.neighbour_rows(dy, dx) == objects.index
        first = objects.pixels[same]
        second = first + (dy * width + dx)
        base = objects.index[same] * (levels * levels)
        matrices = []
        for start, word in zip(range(0, channels, per_word), words, strict=True):
            packed_i, packed_j = word[first], word[second]
            for offset in range(min(per_word, channels - start)):
                level_i = (packed_i >> (bits * offset)) & mask
                level_j = (packed_j >> (bits * offset)) & mask
                matrices.append(xp.bincount(base + level_i * levels + level_j, minlength=cells))
        matrix = xp.stack(matrices).astype(xp.float64).reshape(channels, objects.count, levels, levels)
        counts.append(matrix + xp.swapaxes(matrix, -1, -2))
    return xp.stack(counts)


def _entropy(xp: Any, p: Any, axes: tuple[int, ...]) -> Any:
    return -(p * xp.log2(xp.where(p > 0, p, 1.0))).sum(axis=axes)


def haralick(counts: Any) -> tuple[Any, Any]:
    """The 13 features for every matrix of ``counts`` (..., L, L): ``(13, ...)`` and the "has pairs" mask."""
    xp, _ = modules_for(counts)
    levels = counts.shape[-1]
    total = counts.sum(axis=(-2, -1))
    has_pairs = total > 0
    p = counts / xp.where(has_pairs, total, 1.0)[..., None, None]
    k = xp.arange(levels, dtype=xp.float64)
    i, j = k[:, None], k[None, :]
    # p_{x+y} and p_{x-y} as products with 0/1 matrices (same on numpy and cupy, no scatter)
    flat = p.reshape(*p.shape[:-2], levels * levels)
    sums = (i + j).ravel().astype(xp.int64)
    diffs = xp.abs(i - j).ravel().astype(xp.int64)
    plus = flat @ (sums[:, None] == xp.arange(2 * levels - 1)[None, :]).astype(xp.float64)
    minus = flat @ (diffs[:, None] == xp.arange(levels)[None, :]).astype(xp.float64)
    px = p.sum(axis=-2)
    mu = px @ k
    variance = px @ (k * k) - mu * mu
    constant = variance < _CONSTANT
    entropy = _entropy(xp, p, (-2, -1))
    hx = _entropy(xp, px, (-1,))
    outer = px[..., :, None] * px[..., None, :]
    safe_outer = xp.where(outer > 0, outer, 1.0)
    hxy1 = -(p * xp.log2(safe_outer)).sum(axis=(-2, -1))
    hxy2 = -(outer * xp.log2(safe_outer)).sum(axis=(-2, -1))
    tk = xp.arange(2 * levels - 1, dtype=xp.float64)
    sum_average = plus @ tk
    correlation = ((p * (i * j)).sum(axis=(-2, -1)) - mu * mu) / xp.where(constant, 1.0, variance)
    features = [
        (p * p).sum(axis=(-2, -1)),
        minus @ (k * k),
        xp.where(constant, 1.0, correlation),
        variance,
        (p / (1.0 + (i - j) ** 2)).sum(axis=(-2, -1)),
        sum_average,
        plus @ (tk * tk) - sum_average**2,
        _entropy(xp, plus, (-1,)),
        entropy,
        minus.var(axis=-1),
        _entropy(xp, minus, (-1,)),
        (entropy - hxy1) / xp.where(hx > 0, hx, 1.0),
        xp.sqrt(xp.maximum(0.0, 1.0 - xp.exp(-2.0 * (hxy2 - entropy)))),
    ]
    return xp.stack(features), has_pairs


def texture_features(
    objects: Objects, grey: Any, names: list[str], scale: int = SCALE, levels: int = LEVELS
) -> dict[str, np.ndarray]:
    """``Texture_<Feature>_<ch>_<scale>`` for every row and channel, from quantised images ``grey`` (c, y, x)."""
    xp = objects.xp
    if scale < 1:
        raise ValueError(f"texture scale must be >= 1 pixel, got {scale}")
    features, has_pairs = haralick(cooccurrence(objects, grey, scale, levels))  # (13, 4, c, n), (4, c, n)
    weight = has_pairs.astype(xp.float64)
    directions = weight.sum(axis=0)
    mean = (xp.where(has_pairs, features, 0.0)).sum(axis=1) / xp.where(directions > 0, directions, 1.0)
    mean = xp.where(directions > 0, mean, xp.nan)
    host = np.asarray(to_numpy(mean), dtype=np.float64)  # (13, c, n)
    return {
        f"Texture_{feature}_{name}_{scale}": host[f, c]
        for f, feature in enumerate(HARALICK)
        for c, name in enumerate(names)
    }
