"""project_z: exact values of every projection on a hand-made stack."""

from __future__ import annotations

import numpy as np
import pytest

from openhcs_rules.functions.projection import PROJECTION_METHODS, project_z

STACK = np.array(
    [
        [[1, 5], [3, 0]],
        [[4, 2], [3, 10]],
        [[7, 2], [0, 2]],
    ],
    dtype=np.uint16,
)


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("max", [[7, 5], [3, 10]]),
        ("min", [[1, 2], [0, 0]]),
        ("mean", [[4, 3], [2, 4]]),
        ("sum", [[12, 9], [6, 12]]),
        ("std", [[np.sqrt(6.0), np.sqrt(2.0)], [np.sqrt(2.0), np.sqrt(56.0 / 3.0)]]),
    ],
)
def test_projection_values(method: str, expected: list[list[float]]) -> None:
    result = project_z(STACK, method)
    assert result.shape == (1, 2, 2)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result[0], np.array(expected, dtype=np.float64), rtol=1e-6)


def test_default_is_max() -> None:
    np.testing.assert_array_equal(project_z(STACK), project_z(STACK, "max"))


def test_single_plane_is_unchanged() -> None:
    plane = STACK[1:2]
    for method in ("max", "mean", "min", "sum"):
        np.testing.assert_array_equal(project_z(plane, method), plane.astype(np.float32))


def test_unknown_method_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="median") as info:
        project_z(STACK, "median")
    for method in PROJECTION_METHODS:
        assert method in str(info.value)


def test_rejects_2d_input() -> None:
    with pytest.raises(ValueError, match=r"3D array \(n, y, x\)"):
        project_z(STACK[0])


def test_best_focus_picks_the_sharpest_plane_even_when_blurred_planes_are_brighter():
    from scipy import ndimage

    rng = np.random.default_rng(5)
    sharp = np.zeros((64, 64), np.float32)
    sharp[rng.integers(4, 60, 30), rng.integers(4, 60, 30)] = 1000.0
    sharp = ndimage.gaussian_filter(sharp, 1.0) + 10
    blurred = ndimage.gaussian_filter(sharp, 4.0) * 3  # brighter but out of focus
    stack = np.stack([blurred, sharp, ndimage.gaussian_filter(sharp, 2.0)])
    out = project_z(stack, "best_focus")
    assert out.shape == (1, 64, 64)
    np.testing.assert_array_equal(out[0], sharp)
