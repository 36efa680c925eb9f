"""Background subtraction removes a smooth background and keeps small bright objects."""

from __future__ import annotations

import time

import numpy as np
import pytest

from openhcs_rules.functions.background import estimate_background, subtract_background

SHAPE = (256, 300)


def gradient() -> np.ndarray:
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(np.float32)
    return 100.0 + 0.5 * xx + 0.2 * yy  # 100 .. 300 across the field


def with_spots(background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = background.copy()
    spots = np.zeros(SHAPE, dtype=bool)
    for y, x, height in ((100, 150, 1000.0), (3, 3, 500.0), (246, 288, 300.0)):  # centre and corners
        image[y : y + 10, x : x + 10] += height
        spots[max(0, y - 5) : y + 15, max(0, x - 5) : x + 15] = True
    return image, spots


@pytest.mark.parametrize(
    "background",
    [gradient(), np.float32(100.0) + 200.0 * np.exp(-((np.arange(300) - 150.0) ** 2) / (2 * 150.0**2))[None, :]],
    ids=["linear-gradient", "vignette-like"],
)
def test_removes_a_smooth_background_and_keeps_spots(background: np.ndarray) -> None:
    background = np.broadcast_to(background, SHAPE).astype(np.float32)
    image, spots = with_spots(background)
    estimate = estimate_background(image[None], radius=20)[0]
    # the estimate follows the background to within ~2.5% of its 200-count range, also at the edges
    assert np.abs(estimate - background)[~spots].max() < 6.0
    result = subtract_background(image[None], radius=20)
    assert result.shape == (1, *SHAPE) and result.dtype == np.float32
    assert result.min() >= 0.0
    assert np.abs(result[0][~spots]).max() < 6.0
    assert result[0, 100:110, 150:160].mean() == pytest.approx(1000.0, rel=0.01)
    assert result[0, 3:13, 3:13].mean() == pytest.approx(500.0, rel=0.03)


def test_constant_image_becomes_zero() -> None:
    result = subtract_background(np.full((2, 64, 64), 123, dtype=np.uint16), radius=10)
    np.testing.assert_allclose(result, 0.0, atol=1e-3)


def test_objects_wider_than_the_window_count_as_background() -> None:
    image = np.zeros((1, 200, 200), dtype=np.float32)
    image[0, 50:150, 50:150] = 500.0  # a 100-px plateau is 'background' for radius 10
    result = subtract_background(image, radius=10)
    assert result[0, 90:110, 90:110].max() < 25.0


def test_invalid_radius() -> None:
    with pytest.raises(ValueError, match="radius"):
        subtract_background(np.zeros((1, 8, 8)), radius=0)


def test_fast_enough_for_2048_planes() -> None:
    plane = np.random.default_rng(0).uniform(0, 1000, (1, 2048, 2048)).astype(np.float32)
    subtract_background(plane, radius=50)
    start = time.perf_counter()
    subtract_background(plane, radius=50)
    # about 30-60 ms on one core; a generous bound so a loaded CI machine does not fail it
    assert time.perf_counter() - start < 0.5
