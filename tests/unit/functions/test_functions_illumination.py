"""Illumination profile estimation and flat-field correction against a known profile."""

from __future__ import annotations

import numpy as np
import pytest

from openhcs_rules.functions.illumination import ILLUMINATION_FLOOR, estimate_illumination, flatfield_correct

SHAPE = (192, 256)


def vignette(shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """A smooth, off-centre profile (1 at the optical centre, ~0.6 in the far corner), mean 1."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    r2 = ((yy - 0.45 * shape[0]) / shape[0]) ** 2 + ((xx - 0.55 * shape[1]) / shape[1]) ** 2
    profile = 1.0 - 0.4 * r2 / r2.max()
    return profile / profile.mean()


def plate_images(count: int, dark: float = 0.0, seed: int = 0) -> list[np.ndarray]:
    """Images of one channel: profile x (background + sparse bright objects) + dark level + noise."""
    rng = np.random.default_rng(seed)
    profile = vignette()
    images = []
    for _ in range(count):
        scene = np.full(SHAPE, 200.0)
        for _ in range(15):  # objects at random places cover ~5% of each image
            y, x = rng.integers(0, SHAPE[0] - 10), rng.integers(0, SHAPE[1] - 10)
            scene[y : y + 10, x : x + 10] += rng.uniform(500, 2000)
        noisy = profile * scene + dark + rng.normal(0, 5, SHAPE)
        images.append(noisy.astype(np.float32))
    return images


def test_recovers_a_known_profile_from_many_images() -> None:
    profile = estimate_illumination(plate_images(24))
    assert profile.shape == SHAPE and profile.dtype == np.float32
    assert float(profile.mean()) == pytest.approx(1.0, abs=1e-4)
    # the median across images ignores the objects; smoothing removes the noise: within 3% everywhere
    np.testing.assert_allclose(profile, vignette(), rtol=0.03)


def test_dark_level_is_subtracted_before_estimating() -> None:
    images = plate_images(24, dark=100.0)
    with_dark = estimate_illumination(images, dark=100.0)
    np.testing.assert_allclose(with_dark, vignette(), rtol=0.03)
    # ignoring an additive offset flattens the estimate (documented): the corner is brighter than true
    without = estimate_illumination(images)
    corner = np.unravel_index(np.argmin(vignette()), SHAPE)
    assert without[corner] > vignette()[corner] + 0.05


def test_accepts_a_generator() -> None:
    profile = estimate_illumination(image for image in plate_images(24))
    np.testing.assert_allclose(profile, vignette(), rtol=0.03)


def test_mean_statistic_is_pulled_by_the_objects() -> None:
    images = plate_images(48)
    mean_error = np.abs(estimate_illumination(images, statistic="mean") / vignette() - 1).max()
    median_error = np.abs(estimate_illumination(images) / vignette() - 1).max()
    # with objects covering ~5% of each image the mean is lumpy (~13% off); the median is not
    assert median_error < 0.03 < mean_error < 0.25


def test_flatfield_with_the_true_profile_recovers_the_flat_image() -> None:
    flat = np.random.default_rng(1).uniform(100, 1000, (3, *SHAPE)).astype(np.float32)
    profile = vignette().astype(np.float32)
    observed = flat * profile[None] + 100.0
    corrected = flatfield_correct(observed, profile, dark=100.0)
    assert corrected.dtype == np.float32 and corrected.shape == flat.shape
    np.testing.assert_allclose(corrected, flat, rtol=1e-4)


def test_profile_is_floored() -> None:
    profile = np.ones(SHAPE, dtype=np.float32)
    profile[0, 0] = 0.0
    corrected = flatfield_correct(np.ones((1, *SHAPE), dtype=np.float32), profile)
    assert corrected[0, 0, 0] == pytest.approx(1.0 / ILLUMINATION_FLOOR)
    assert np.isfinite(corrected).all()


def test_errors() -> None:
    with pytest.raises(ValueError, match="at least one image"):
        estimate_illumination([])
    with pytest.raises(ValueError, match="one shape"):
        estimate_illumination([np.ones((8, 8)), np.ones((8, 9))])
    with pytest.raises(ValueError, match="2D"):
        estimate_illumination([np.ones((1, 8, 8))])
    with pytest.raises(ValueError, match="no positive signal"):
        estimate_illumination([np.zeros((8, 8))])
    with pytest.raises(ValueError, match="median, mean"):
        estimate_illumination([np.ones((8, 8))], statistic="max")
    with pytest.raises(ValueError, match="shape"):
        flatfield_correct(np.ones((1, 8, 8)), np.ones((8, 9)))
