"""Per-object features (shape, intensity, Haralick texture) against analytic cases and reference code.

Tolerances, and why:

* against ``skimage.measure.regionprops`` (area, centroid, axes, eccentricity, orientation, perimeter,
  solidity, intensity min/max/mean/std): 1e-9 (the same definitions, float64 sums in another order);
* analytic discs and ellipses: area within 3.5% of pi r^2 (a digital disc); perimeter 2 pi r x 1.0495
  +-0.5% (the 4-connectivity estimator reads every digital disc of r = 5..60 px 4.95% long: see
  shape_features), so the form factor is 0.92 +- 0.02 (0.936 at r = 5, whose digital area is 3% over
  pi r^2, 0.906 beyond); solidity >= 0.96 from r = 20 px (0.91 at r = 5: the hull of the pixels' edge
  midpoints gains a rim); eccentricity < 0.05; an ellipse's axes within 2% of 2a and 2b;
* Haralick against ``skimage.feature.graycomatrix/graycoprops`` (contrast, ASM, correlation, homogeneity =
  inverse difference moment, on an object that fills the image, distance 1, where both count the same
  pairs): 1e-9; all 13 features against a plain per-object loop written from mahotas' formulas: 1e-9;
* cupy vs numpy (skipped without a GPU): 1e-9 relative (float64 reductions in another order).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from skimage.feature import graycomatrix, graycoprops
from skimage.measure import label as connected_components
from skimage.measure import regionprops

from openhcs_rules.core.arrays import CUPY, gpu_available, to_memory
from openhcs_rules.functions.features import object_features
from openhcs_rules.functions.texture_features import HARALICK, quantise


def disc(radius: float, size: int | None = None) -> np.ndarray:
    size = size or int(2 * radius + 11)
    yy, xx = np.mgrid[:size, :size]
    centre = size // 2
    return ((yy - centre) ** 2 + (xx - centre) ** 2 <= radius * radius).astype(np.int32)


def random_labels(seed: int, shape: tuple[int, int] = (160, 200)) -> np.ndarray:
    """Irregular blobs (thresholded smooth noise), some touching the image edge, ids spread out."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.standard_normal(shape), 4.0)
    labels = connected_components(field > 0.08)
    return np.where(labels > 0, labels * 3 + 5, 0).astype(np.int32)  # not consecutive, not from 1


# ------------------------------------------------------------------------------------------------- shape
@pytest.mark.parametrize("radius", [5, 10, 20, 30, 60])
def test_disc(radius: int) -> None:
    labels = disc(radius)
    ids, columns = object_features(labels, np.ones((1, *labels.shape)), ["DNA"], texture=False)
    assert ids.tolist() == [1]
    assert columns["AreaShape_Area"][0] == pytest.approx(math.pi * radius**2, rel=0.035)
    assert columns["AreaShape_Perimeter"][0] / (2 * math.pi * radius) == pytest.approx(1.0495, abs=0.005)
    assert columns["AreaShape_FormFactor"][0] == pytest.approx(0.92, abs=0.02)
    assert columns["AreaShape_Eccentricity"][0] < 0.05
    assert columns["AreaShape_Solidity"][0] <= 1.0
    if radius >= 20:
        assert columns["AreaShape_Solidity"][0] >= 0.96
    centre = labels.shape[0] // 2
    assert (columns["Location_Center_X"][0], columns["Location_Center_Y"][0]) == (centre, centre)


def test_ellipse_axes_and_orientation() -> None:
    yy, xx = np.mgrid[:140, :140]
    along_columns = (((yy - 70) / 15.0) ** 2 + ((xx - 70) / 45.0) ** 2 <= 1).astype(np.int32)
    _, columns = object_features(along_columns, np.ones((1, 140, 140)), ["DNA"], texture=False)
    assert columns["AreaShape_MajorAxisLength"][0] == pytest.approx(90.0, rel=0.02)
    assert columns["AreaShape_MinorAxisLength"][0] == pytest.approx(30.0, rel=0.02)
    assert columns["AreaShape_Eccentricity"][0] == pytest.approx(math.sqrt(1 - (15 / 45) ** 2), abs=0.01)
    assert abs(columns["AreaShape_Orientation"][0]) == pytest.approx(90.0, abs=1e-6)  # major axis along x
    _, columns = object_features(along_columns.T.copy(), np.ones((1, 140, 140)), ["DNA"], texture=False)
    assert columns["AreaShape_Orientation"][0] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_labels_match_regionprops(seed: int) -> None:
    labels = random_labels(seed)
    rng = np.random.default_rng(seed + 10)
    images = rng.gamma(2.0, 50.0, size=(2, *labels.shape))
    ids, columns = object_features(labels, images, ["DNA", "Actin"], texture=False)
    props = regionprops(labels, intensity_image=np.moveaxis(images, 0, -1))
    assert len(props) > 10 and ids.tolist() == [p.label for p in props]
    expected = {
        "AreaShape_Area": [p.area for p in props],
        "AreaShape_Perimeter": [p.perimeter for p in props],
        "AreaShape_Solidity": [p.solidity for p in props],
        "AreaShape_Eccentricity": [p.eccentricity for p in props],
        "AreaShape_MajorAxisLength": [p.axis_major_length for p in props],
        "AreaShape_MinorAxisLength": [p.axis_minor_length for p in props],
        # an axis at -90 degrees is the one at 90: reported as 90 (regionprops' sign follows a signed zero)
        "AreaShape_Orientation": [
            90.0 if p.orientation == -math.pi / 2 else math.degrees(p.orientation) for p in props
        ],
        "Location_Center_Y": [p.centroid[0] for p in props],
        "Location_Center_X": [p.centroid[1] for p in props],
    }
    for channel, name in enumerate(["DNA", "Actin"]):
        expected[f"Intensity_MinIntensity_{name}"] = [p.intensity_min[channel] for p in props]
        expected[f"Intensity_MaxIntensity_{name}"] = [p.intensity_max[channel] for p in props]
        expected[f"Intensity_MeanIntensity_{name}"] = [p.intensity_mean[channel] for p in props]
        expected[f"Intensity_StdIntensity_{name}"] = [p.intensity_std[channel] for p in props]
        expected[f"Intensity_IntegratedIntensity_{name}"] = [p.intensity_mean[channel] * p.area for p in props]
    for key, values in expected.items():
        np.testing.assert_allclose(columns[key], values, rtol=1e-9, atol=1e-9, err_msg=key)
    perimeter = np.array(expected["AreaShape_Perimeter"])
    np.testing.assert_allclose(
        columns["AreaShape_FormFactor"][perimeter > 0],
        4 * math.pi * np.array(expected["AreaShape_Area"])[perimeter > 0] / perimeter[perimeter > 0] ** 2,
    )


def test_single_pixel_and_empty_and_missing_ids() -> None:
    labels = np.zeros((5, 5), dtype=np.int32)
    labels[2, 2] = 9
    ids, columns = object_features(labels, np.full((1, 5, 5), 3.0), ["DNA"], ids=[4, 9])
    assert ids.tolist() == [4, 9]
    assert all(np.isnan(values[0]) for values in columns.values())  # id 4 has no pixels
    assert columns["AreaShape_Area"][1] == 1 and columns["AreaShape_Perimeter"][1] == 0
    assert np.isnan(columns["AreaShape_FormFactor"][1]) and columns["AreaShape_Solidity"][1] == 1.0
    assert columns["Intensity_MeanIntensityEdge_DNA"][1] == 3.0
    ids, columns = object_features(np.zeros((4, 4), dtype=np.int32), np.ones((1, 4, 4)), ["DNA"])
    assert ids.size == 0 and columns == {}


def test_input_checks() -> None:
    labels = disc(5)
    images = np.ones((2, *labels.shape))
    with pytest.raises(ValueError, match="not unique"):
        object_features(labels, images, ["a b", "a-b"])
    with pytest.raises(ValueError, match="2 intensity channels but 1"):
        object_features(labels, images, ["DNA"])
    with pytest.raises(ValueError, match="integers"):
        object_features(labels.astype(float), images, ["a", "b"])
    _, columns = object_features(labels, images, ["Texas Red", "GFP (488)"], texture=False)
    assert "Intensity_MeanIntensity_Texas_Red" in columns and "Intensity_MaxIntensity_GFP__488_" in columns


# --------------------------------------------------------------------------------------------- intensity
def test_constant_object_and_edge_ring() -> None:
    labels = disc(12)
    image = np.where(labels > 0, 7.5, 0.0)
    _, columns = object_features(labels * 4, image[None], ["DNA"])
    assert columns["Intensity_StdIntensity_DNA"][0] == 0.0
    assert columns["Intensity_MinIntensity_DNA"][0] == columns["Intensity_MaxIntensity_DNA"][0] == 7.5
    assert columns["Intensity_MeanIntensity_DNA"][0] == 7.5 == columns["Intensity_MeanIntensityEdge_DNA"][0]
    assert columns["Intensity_IntegratedIntensity_DNA"][0] == 7.5 * labels.sum()
    # the outline (8-neighbourhood, CellProfiler's) is bright, the inside dim: the edge mean reads the ring
    from scipy.ndimage import binary_erosion

    ring = (labels > 0) & ~binary_erosion(labels > 0, np.ones((3, 3)), border_value=0)
    ringed = np.where(ring, 10.0, np.where(labels > 0, 1.0, 0.0))
    _, columns = object_features(labels, ringed[None], ["DNA"], texture=False)
    assert columns["Intensity_MeanIntensityEdge_DNA"][0] == 10.0
    assert columns["Intensity_MinIntensity_DNA"][0] == 1.0
    assert columns["Intensity_MeanIntensity_DNA"][0] == pytest.approx(
        (10.0 * ring.sum() + (labels.sum() - ring.sum())) / labels.sum()
    )


def test_object_on_the_image_edge_has_its_edge_there() -> None:
    labels = np.ones((6, 6), dtype=np.int32)
    image = np.zeros((6, 6))
    image[0, :] = image[-1, :] = image[:, 0] = image[:, -1] = 4.0
    _, columns = object_features(labels, image[None], ["DNA"], texture=False)
    assert columns["Intensity_MeanIntensityEdge_DNA"][0] == 4.0


# ----------------------------------------------------------------------------------------------- texture
def texture_of(grey: np.ndarray, labels: np.ndarray, scale: int, levels: int = 16) -> dict[str, np.ndarray]:
    """Texture columns for integer grey levels given directly (range (0, levels) maps level k to k)."""
    _, columns = object_features(
        labels,
        grey[None].astype(float),
        ["g"],
        texture_scale=scale,
        texture_levels=levels,
        texture_range=[(0.0, float(levels))],
    )
    return {key.split("_")[1]: values for key, values in columns.items() if key.startswith("Texture_")}


def test_quantise_maps_levels_and_clips() -> None:
    image = np.array([[[-5.0, 0.0, 0.99, 1.0, 15.5, 16.0, 99.0]]])
    assert quantise(image, [(0.0, 16.0)], 16).ravel().tolist() == [0, 0, 0, 1, 15, 15, 15]


def test_checkerboard_against_constant() -> None:
    yy, xx = np.mgrid[:24, :24]
    board = np.where((yy + xx) % 2 == 0, 0, 15)
    labels = np.ones((24, 24), dtype=np.int32)
    near = texture_of(board, labels, scale=1)
    # horizontal and vertical neighbours always differ by 15, diagonal ones never: contrast (225 + 0) / 2
    assert near["Contrast"][0] == pytest.approx(112.5)
    # two cells of ~1/2 each either way (along the diagonals one colour has a few more pairs than the other)
    assert near["AngularSecondMoment"][0] == pytest.approx(0.5, abs=1e-5)
    assert near["Entropy"][0] == pytest.approx(1.0, abs=1e-5)
    assert near["Correlation"][0] == pytest.approx(0.0)  # -1 along the axes, +1 along the diagonals
    far = texture_of(board, labels, scale=2)  # at distance 2 every neighbour has the same colour
    assert far["Contrast"][0] == pytest.approx(0.0) and far["Correlation"][0] == pytest.approx(1.0)
    constant = texture_of(np.full((24, 24), 7), labels, scale=3)
    assert constant["AngularSecondMoment"][0] == 1.0 and constant["Contrast"][0] == 0.0
    assert constant["Entropy"][0] == 0.0 and constant["InverseDifferenceMoment"][0] == 1.0
    assert constant["Correlation"][0] == 1.0 and constant["Variance"][0] == 0.0
    assert constant["SumAverage"][0] == 14.0 and constant["InfoMeas1"][0] == 0.0


def test_haralick_matches_skimage_graycoprops() -> None:
    rng = np.random.default_rng(3)
    grey = np.clip(rng.integers(0, 16, (30, 40)) + np.arange(40)[None] // 8, 0, 15)
    got = texture_of(grey, np.full((30, 40), 4, dtype=np.int32), scale=1)
    matrix = graycomatrix(
        grey.astype(np.uint8), [1], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=16, symmetric=True, normed=True
    )
    for prop, name in [
        ("contrast", "Contrast"),
        ("ASM", "AngularSecondMoment"),
        ("correlation", "Correlation"),
        ("homogeneity", "InverseDifferenceMoment"),
    ]:
        assert got[name][0] == pytest.approx(graycoprops(matrix, prop).mean(), rel=1e-9), name


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def reference_haralick(grey: np.ndarray, mask: np.ndarray, scale: int, levels: int) -> np.ndarray:
    """Mahotas' 13 features, averaged over the 4 directions, with pixel pairs counted one by one."""
    per_direction = []
    for dy, dx in [(0, 1), (1, 1), (1, 0), (1, -1)]:
        counts = np.zeros((levels, levels))
        for y, x in zip(*np.nonzero(mask), strict=True):
            v, u = y + dy * scale, x + dx * scale
            if 0 <= v < mask.shape[0] and 0 <= u < mask.shape[1] and mask[v, u]:
                counts[grey[y, x], grey[v, u]] += 1
                counts[grey[v, u], grey[y, x]] += 1
        if counts.sum() == 0:
            continue
        p = counts / counts.sum()
        k = np.arange(levels)
        px = p.sum(axis=0)
        mu = (px * k).sum()
        var = (px * k * k).sum() - mu**2
        plus = np.array([p[np.add.outer(k, k) == s].sum() for s in range(2 * levels - 1)])
        minus = np.array([p[np.abs(np.subtract.outer(k, k)) == d].sum() for d in range(levels)])
        h = _entropy(p)
        outer = np.outer(px, px)
        logs = np.log2(np.where(outer > 0, outer, 1.0))
        hxy1, hxy2 = -(p * logs).sum(), -(outer * logs).sum()
        ij = np.multiply.outer(k, k)
        sum_average = (np.arange(2 * levels - 1) * plus).sum()
        per_direction.append(
            [
                (p**2).sum(),
                (np.subtract.outer(k, k) ** 2 * p).sum(),
                1.0 if var < 1e-12 else ((ij * p).sum() - mu**2) / var,
                var,
                (p / (1 + np.subtract.outer(k, k) ** 2)).sum(),
                sum_average,
                (np.arange(2 * levels - 1) ** 2 * plus).sum() - sum_average**2,
                _entropy(plus),
                h,
                minus.var(),
                _entropy(minus),
                (h - hxy1) / (_entropy(px) or 1.0),
                math.sqrt(max(0.0, 1 - math.exp(-2 * (hxy2 - h)))),
            ]
        )
    return np.mean(per_direction, axis=0) if per_direction else np.full(13, np.nan)


@pytest.mark.parametrize("scale", [1, 3])
def test_all_haralick_features_match_a_per_object_loop(scale: int) -> None:
    labels = random_labels(5, shape=(70, 90))
    rng = np.random.default_rng(6)
    grey = rng.integers(0, 8, labels.shape) + (labels % 7)  # texture differs between objects
    got = texture_of(grey, labels, scale=scale)
    for row, object_id in enumerate(np.unique(labels)[1:]):
        expected = reference_haralick(grey, labels == object_id, scale, 16)
        for f, feature in enumerate(HARALICK):
            assert got[feature][row] == pytest.approx(expected[f], rel=1e-9, abs=1e-12, nan_ok=True), (
                object_id,
                feature,
            )


def test_objects_thinner_than_the_scale_use_the_directions_they_have() -> None:
    labels = np.zeros((10, 12), dtype=np.int32)
    labels[4, 1:11] = 2  # a horizontal line: pairs only along x
    labels[7, 5] = 3  # a single pixel: no pairs at all
    grey = np.tile(np.arange(12) % 4, (10, 1))
    got = texture_of(grey, labels, scale=2)
    assert got["Contrast"][0] == pytest.approx(reference_haralick(grey, labels == 2, 2, 16)[1])
    assert all(np.isnan(values[1]) for values in got.values())


def test_texture_columns_are_named_with_channel_and_scale() -> None:
    labels = disc(8)
    _, columns = object_features(labels, np.ones((2, *labels.shape)), ["DNA", "Actin"], texture_scale=5)
    names = sorted(key for key in columns if key.startswith("Texture_"))
    assert len(names) == 13 * 2
    assert "Texture_InfoMeas2_Actin_5" in names and "Texture_AngularSecondMoment_DNA_5" in names


# ----------------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs cupy and a CUDA device")
class TestCupyParity:
    """The same columns from cupy inputs as from numpy ones, to 1e-9 relative (float64 throughout)."""

    @staticmethod
    def both(labels: np.ndarray, images: np.ndarray, **kwargs: Any) -> tuple[dict, dict]:
        ids, expected = object_features(labels, images, ["DNA", "Actin"], **kwargs)
        gpu_ids, result = object_features(to_memory(labels, CUPY), to_memory(images, CUPY), ["DNA", "Actin"], **kwargs)
        assert gpu_ids.tolist() == ids.tolist()
        return expected, result

    @pytest.mark.parametrize("seed", [0, 1])
    def test_random_labels(self, seed: int) -> None:
        labels = random_labels(seed)
        images = np.random.default_rng(seed).gamma(2.0, 50.0, size=(2, *labels.shape))
        expected, result = self.both(labels, images)
        assert expected.keys() == result.keys()
        for key in expected:
            np.testing.assert_allclose(result[key], expected[key], rtol=1e-9, atol=1e-12, err_msg=key)

    def test_missing_ids_and_empty(self) -> None:
        labels = disc(6) * 5
        expected, result = self.both(labels, np.ones((2, *labels.shape)), ids=[2, 5])
        for key in expected:
            np.testing.assert_allclose(result[key], expected[key], rtol=1e-9, err_msg=key)
        _, result = self.both(np.zeros((8, 8), dtype=np.int32), np.ones((2, 8, 8)))
        assert result == {}
