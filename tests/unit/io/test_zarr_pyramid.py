"""Pyramid levels of a field: the fast mean of 8- and 16-bit images equals the float32 block mean bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from openhcs_rules.io.zarr_plate import _pyramid


def _block_mean_levels(array: np.ndarray, levels: int) -> list[np.ndarray]:
    """The levels as _pyramid computed them before (float32 block mean, rounded back to the integer type)."""
    out = [array]
    for _ in range(levels - 1):
        prev = out[-1]
        y, x = prev.shape[-2] // 2 * 2, prev.shape[-1] // 2 * 2
        if y < 2 or x < 2:
            break
        block = prev[..., :y, :x].astype(np.float32).reshape(*prev.shape[:-2], y // 2, 2, x // 2, 2)
        mean = block.mean(axis=(-3, -1), dtype=np.float32)
        out.append(np.rint(mean).astype(array.dtype) if array.dtype.kind in "ui" else mean)
    return out


@pytest.mark.parametrize(
    ("dtype", "shape"),
    [(np.uint16, (1, 2, 3, 128, 96)), (np.uint16, (1, 1, 2, 67, 33)), (np.int16, (2, 1, 1, 50, 51)),
     (np.uint8, (1, 3, 1, 41, 64)), (np.int8, (1, 1, 1, 9, 9)), (np.uint16, (1, 1, 1, 3, 5))],
)  # fmt: skip
def test_integer_levels_equal_the_float32_block_mean(dtype, shape):
    info = np.iinfo(dtype)
    image = np.random.default_rng(3).integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    image.flat[:4] = info.max  # the largest sums, and ties at .5 (rounded to even either way)
    ours = _pyramid(image, 4, labels=False)
    expected = _block_mean_levels(image, 4)
    assert [level.dtype for level in ours] == [level.dtype for level in expected]
    assert len(ours) == len(expected)
    for got, want in zip(ours, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_float_and_wide_integer_levels_keep_the_block_mean():
    rng = np.random.default_rng(4)
    for image in (rng.random((1, 1, 2, 32, 30), dtype=np.float32), rng.integers(0, 2**31, (1, 1, 1, 16, 16))):
        for got, want in zip(_pyramid(image, 3, labels=False), _block_mean_levels(image, 3), strict=True):
            np.testing.assert_array_equal(got, want)
