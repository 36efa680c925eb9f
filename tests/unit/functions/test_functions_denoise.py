"""denoise: Gaussian and median smoothing per plane, never across planes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from openhcs_rules.functions.denoise import denoise


def test_gaussian_matches_scipy_per_plane_and_keeps_planes_apart() -> None:
    stack = np.zeros((2, 21, 21), dtype=np.float32)
    stack[0, 10, 10] = 100.0
    result = denoise(stack, sigma=1.5)
    assert result.dtype == np.float32 and result.shape == stack.shape
    np.testing.assert_allclose(result[0], ndi.gaussian_filter(stack[0], 1.5), rtol=1e-5, atol=1e-6)
    assert np.all(result[1] == 0.0)  # the impulse in plane 0 does not leak into plane 1
    assert result[0].sum() == pytest.approx(100.0, rel=1e-4)  # smoothing preserves the total


def test_gaussian_keeps_a_constant_image() -> None:
    stack = np.full((1, 16, 16), 7, dtype=np.uint16)
    np.testing.assert_allclose(denoise(stack, sigma=2.0), 7.0, rtol=1e-6)


def test_sigma_zero_returns_a_float_copy() -> None:
    stack = np.arange(12, dtype=np.uint16).reshape(1, 3, 4)
    result = denoise(stack, sigma=0)
    np.testing.assert_array_equal(result, stack.astype(np.float32))
    result[0, 0, 0] = 99
    assert stack[0, 0, 0] == 0


def test_median_removes_a_hot_pixel() -> None:
    stack = np.full((1, 9, 9), 10.0, dtype=np.float32)
    stack[0, 4, 4] = 5000.0
    np.testing.assert_array_equal(denoise(stack, method="median", size=3), np.full((1, 9, 9), 10.0))


def test_bad_arguments() -> None:
    stack = np.zeros((1, 4, 4))
    with pytest.raises(ValueError, match="gaussian, median"):
        denoise(stack, method="bilateral")
    with pytest.raises(ValueError, match="sigma"):
        denoise(stack, sigma=-1)
    with pytest.raises(ValueError, match="3D"):
        denoise(np.zeros((4, 4)))
