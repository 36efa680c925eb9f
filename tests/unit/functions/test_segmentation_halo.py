"""Outlines of nuclei in a wide halo (segmentation module docstring, 7): drawn at the halo's foot, as annotators of
such images draw them; sharp-edged nuclei, and small ones whose edge is only the optics' blur, keep the
half-maximum rule."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from openhcs_rules.functions import segmentation
from openhcs_rules.functions.segmentation import segment_nuclei

BACKGROUND, CONTRAST = 10.0, 200.0


def discs(radius: float, blur: float, spacing: int = 48, shape: tuple[int, int] = (288, 288)) -> np.ndarray:
    """A grid of flat discs of one radius, blurred by a Gaussian of ``blur`` px, on a flat background (float32)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    centre = spacing // 2
    inside = ((yy % spacing - centre) ** 2 + (xx % spacing - centre) ** 2) <= radius**2
    image = ndi.gaussian_filter(inside.astype(np.float64), blur) * CONTRAST + BACKGROUND
    return image.astype(np.float32)


def halo_weight(image: np.ndarray) -> float:
    """The halo test's weight on the image's objects (detected at 5% of the contrast)."""
    labels, _ = ndi.label(image > BACKGROUND + 0.05 * CONTRAST)
    levels = segmentation._object_levels(labels.astype(np.int32), image, image, BACKGROUND)
    return segmentation._halo_weight(levels, BACKGROUND)


@pytest.mark.parametrize(
    ("radius", "blur", "expected"),
    [
        (9.0, 1.0, 0.0),  # a sharp edge: area ratio 1.25, ramp 1.0 px
        (4.0, 1.2, 0.0),  # small and blurred: area ratio 1.7, but the ramp (1.2 px) is the optics' blur
        (9.0, 3.5, 1.0),  # a wide halo: area ratio 2.0, ramp 3.6 px
    ],
)
def test_halo_weight_reads_the_edge_ramp(radius: float, blur: float, expected: float) -> None:
    assert halo_weight(discs(radius, blur)) == pytest.approx(expected, abs=0.05)


def test_nuclei_in_a_wide_halo_are_outlined_at_its_foot_and_sharp_ones_at_half_maximum() -> None:
    soft = discs(9.0, 3.5)
    sharp = discs(9.0, 1.0)
    for image, fraction in ((soft, segmentation.HALO_FRACTION), (sharp, segmentation.HALF_MAXIMUM_LARGE)):
        labels = segment_nuclei(image[None])[0]
        assert labels.max() == 36
        # what the outline at that fraction of each disc's peak above the background encloses
        peak = float(image.max())
        expected = float((image > BACKGROUND + fraction * (peak - BACKGROUND)).sum())
        assert float((labels > 0).sum()) == pytest.approx(expected, rel=0.08)
    # the halo's foot lies well outside the half maximum
    assert (segment_nuclei(soft[None])[0] > 0).sum() > 1.4 * (soft > BACKGROUND + 0.5 * (soft.max() - BACKGROUND)).sum()
