"""The fast paths of the kernels give exactly what their straightforward versions gave.

Each faster helper (block means and banded upsampling in ``_resample``; the per-label maxima, hole filling,
minimum/maximum filters, the component-wise flooding, the half-maximum outlines, the merge test's touching pairs,
the full-resolution markers and the threshold histogram in ``segmentation``) is compared with the plain
scipy / scikit-image / numpy formulation it replaced, written out here as the reference, first on its own
(random and structured inputs, edge cases), then end to end: ``segment_nuclei`` with its helpers swapped back
to the references must give the same labels, pixel for pixel, on realistic synthetic fields (clumps, dim
neighbours, a well-edge band, small and large nuclei, both resolutions of the declumping) and on the real
annotated images. ``bench/kernels.py`` compares with the whole previous revision at 2048 x 2048.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile
from skimage.segmentation import watershed

from openhcs_rules.demo.realistic_nuclei import empty_field, synthesize_field
from openhcs_rules.functions import _resample, segmentation
from openhcs_rules.functions.background import estimate_background, subtract_background
from openhcs_rules.functions.illumination import flatfield_correct
from openhcs_rules_testkit.accuracy import demo_nuclei_site
from openhcs_rules_testkit.accuracy import prepare_for_segmentation as prepared
from openhcs_rules_testkit.paths import TEST_DATA


# ------------------------------------------------------------------------------------- the references
def reference_block_mean(image: Any, factor: int) -> np.ndarray:
    """The first block mean: pad the whole image, then numpy's mean over the two block axes."""
    if factor <= 1:
        return np.asarray(image, dtype=np.float32)
    *lead, height, width = image.shape
    data = np.asarray(image, dtype=np.float32)
    pad_y, pad_x = (-height) % factor, (-width) % factor
    if pad_y or pad_x:
        data = np.pad(data, [(0, 0)] * len(lead) + [(0, pad_y), (0, pad_x)], mode="edge")
    ny, nx = data.shape[-2] // factor, data.shape[-1] // factor
    return data.reshape(*lead, ny, factor, nx, factor).mean(axis=(-3, -1), dtype=np.float32)


def reference_upsample(small: Any, factor: float, shape: tuple[int, int]) -> np.ndarray:
    """The first upsampling: both interpolation matrices in full, ``rows @ small @ cols.T``."""
    small = np.asarray(small, dtype=np.float32)
    if factor == 1 and tuple(small.shape[-2:]) == tuple(shape):
        return small
    rows = _resample._interpolation_matrix(np, shape[0], small.shape[-2], factor)
    cols = _resample._interpolation_matrix(np, shape[1], small.shape[-1], factor)
    return np.asarray(rows @ small @ cols.T)


def reference_label_maxima(values: np.ndarray, labels: np.ndarray, count: int, initial: float) -> np.ndarray:
    """Per-label maxima with scipy's ``ndimage.maximum`` (which sorts every value)."""
    values, labels = values.ravel(), labels.ravel()
    result = np.full(count + 1, initial, dtype=values.dtype)
    present = np.bincount(labels, minlength=count + 1) > 0
    maxima = np.asarray(ndi.maximum(values, labels, np.arange(count + 1)), dtype=values.dtype)
    result[present] = np.maximum(maxima[present], result[present])
    return result


def reference_extreme_filter(image: np.ndarray, size: int, maximum: bool) -> np.ndarray:
    filter_ = ndi.maximum_filter if maximum else ndi.minimum_filter
    return np.asarray(filter_(image, size=size, mode="reflect"))


def reference_flood(landscape: np.ndarray, markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Every unseeded component seeded with its own marker, then one watershed over the whole image."""
    components, _ = ndi.label(mask)
    seeded = np.zeros(int(components.max()) + 1, dtype=bool)
    seeded[components[markers > 0]] = True
    unseeded = ~seeded[components] & mask
    if unseeded.any():
        markers = markers.copy()
        markers[unseeded] = components[unseeded] + int(markers.max())
    return np.asarray(watershed(landscape, markers, mask=mask))


def reference_half_maximum(
    labels: np.ndarray,
    smoothed: np.ndarray,
    peak_field: np.ndarray,
    background: float,
    fraction: float,
    levels: object = None,
) -> np.ndarray:
    """Half-maximum outlines over the whole image, per-object peaks by ``np.maximum.at`` in float64 (``levels``,
    the fast path's per-pixel reads, ignored: everything is read again here)."""
    count = int(labels.max())
    if count == 0:
        return labels
    inside = labels > 0
    owner = labels[inside]
    peak = np.full(count + 1, background, dtype=np.float64)
    np.maximum.at(peak, owner, peak_field[inside])
    sharp = np.full(count + 1, background, dtype=np.float64)
    np.maximum.at(sharp, owner, smoothed[inside])
    narrow = peak - background < segmentation.NARROW_PEAK * (sharp - background)
    peak[narrow] = sharp[narrow]
    cut = background + fraction * (peak - background)
    cut[0] = np.inf
    kept = np.where(smoothed > cut[labels], labels, 0)
    holes = ndi.binary_fill_holes(kept > 0) & (kept == 0) & (labels > 0)
    kept[holes] = labels[holes]
    return kept


def reference_adjacent_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Touching pixel pairs of two objects, with a whole-image array of flat indices."""
    flat_index = np.arange(labels.size).reshape(labels.shape)
    parts = []
    for first, second, first_idx, second_idx in (
        (labels[:, :-1], labels[:, 1:], flat_index[:, :-1], flat_index[:, 1:]),
        (labels[:-1, :], labels[1:, :], flat_index[:-1, :], flat_index[1:, :]),
    ):
        border = (first != second) & (first > 0) & (second > 0)
        parts.append((first[border], second[border], first_idx[border], second_idx[border]))
    la, lb, ia, ib = (np.concatenate([p[k] for p in parts]) for k in range(4))
    swap = la > lb
    return np.where(swap, lb, la), np.where(swap, la, lb), np.where(swap, ib, ia), np.where(swap, ia, ib)


def reference_pass_and_peak(
    labels: np.ndarray, field: np.ndarray, inverse: np.ndarray, ia: np.ndarray, ib: np.ndarray, n_pairs: int
) -> tuple[np.ndarray, np.ndarray]:
    flat = field.ravel()
    saddle = np.full(n_pairs, -np.inf)
    np.maximum.at(saddle, inverse, np.minimum(flat[ia], flat[ib]))
    peak = np.full(int(labels.max()) + 1, -np.inf)
    np.maximum.at(peak, labels.ravel(), flat)
    return saddle, peak


def reference_to_full_resolution(
    labels: np.ndarray, landscape: np.ndarray, mask: np.ndarray, factor: int
) -> np.ndarray:
    """Working labels' interiors as markers (a gathered index image), one watershed on the upsampled landscape."""
    rows = np.arange(mask.shape[0]) // factor
    cols = np.arange(mask.shape[1]) // factor
    markers = (segmentation._interior(labels)[rows[:, None], cols[None, :]] * mask).astype(np.int32)
    return reference_flood(reference_upsample(landscape, factor, mask.shape), markers, mask)


def reference_histogram(image: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The intensity histogram of a float64 copy of the image."""
    data = np.asarray(image, dtype=np.float64).ravel()
    low, high = float(data.min()), float(data.max())
    if not high > low:
        return None
    hist, edges = np.histogram(data, bins=bins, range=(low, high))
    return hist.astype(np.float64), (edges[:-1] + edges[1:]) / 2.0


REFERENCES = {
    "_histogram": reference_histogram,
    "_half_maximum": reference_half_maximum,
    "_adjacent_pairs": reference_adjacent_pairs,
    "_pass_and_peak": reference_pass_and_peak,
    "_to_full_resolution": reference_to_full_resolution,
    "block_mean": reference_block_mean,
    "upsample": reference_upsample,
    "_label_maxima": reference_label_maxima,
    "_fill_holes": lambda mask: ndi.binary_fill_holes(mask),
    "_extreme_filter": reference_extreme_filter,
    "_grey_opening": lambda image, size: ndi.grey_opening(image, size=size, mode="reflect"),
    "_flood": reference_flood,
}


# ------------------------------------------------------------------------------------ helper by helper
@pytest.mark.parametrize("shape", [(3, 300, 300), (301, 299), (1, 257, 1030), (37, 23), (9, 4), (3, 3), (1, 1)])
def test_block_mean_is_the_padded_reshape_mean(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(shape) * 1000 + shape[-1])
    image = (rng.random(shape) * 4000).astype(np.float32)
    for factor in (1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 16, 17):
        np.testing.assert_array_equal(_resample.block_mean(image, factor), reference_block_mean(image, factor))
        mask = image > 2000
        np.testing.assert_array_equal(_resample.block_mean(mask, factor), reference_block_mean(mask, factor))
    as_uint16 = image.astype(np.uint16)
    np.testing.assert_array_equal(_resample.block_mean(as_uint16, 5), reference_block_mean(as_uint16, 5))


@pytest.mark.parametrize(
    ("n_in", "factor", "shape"),
    [
        (205, 10, (2048, 2048)),
        (103, 10, (1024, 1030)),
        (52, 2, (103, 104)),
        (7, 10, (64, 64)),
        (2, 3, (5, 6)),
        (1, 5, (5, 5)),
    ],
)
def test_banded_upsampling_is_the_full_matrix_product(n_in: int, factor: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(n_in)
    small = (rng.random((2, n_in, n_in + 1)) * 500).astype(np.float32)
    # the zero weights add exactly nothing, so a BLAS that sums the inner dimension in one sequence gives the same bits
    # (it does here: equal to the last bit on every shape tried); one that splits that sum may round the last bit
    # differently, as it does for the full product itself, hence the tolerance; the end-to-end test below asserts
    # identical labels
    for stack in (small, small[0]):
        fast, reference = _resample.upsample(stack, factor, shape), reference_upsample(stack, factor, shape)
        assert fast.shape == reference.shape and fast.dtype == np.float32
        np.testing.assert_allclose(fast, reference, rtol=1e-6)


def test_in_place_steps_give_the_same_pixels_and_leave_the_input_alone() -> None:
    rng = np.random.default_rng(4)
    raw = rng.integers(100, 4000, (3, 96, 80)).astype(np.uint16)
    profile = (0.6 + 0.4 * rng.random((96, 80))).astype(np.float32)
    as_float = raw.astype(np.float32)
    kept = as_float.copy()
    # a uint16 stack (converted here: divided in place), the caller's float32 stack, a view of it, a dark level
    for stack, dark in ((raw, 0.0), (as_float, 0.0), (as_float[:, :, :], 0.0), (as_float, 100.0)):
        data = stack.astype(np.float32) - np.float32(dark) if dark else stack.astype(np.float32)
        expected = (data / np.maximum(profile, 0.05)[None]).astype(np.float32)
        corrected = flatfield_correct(stack, profile, dark=dark)
        assert corrected.dtype == np.float32
        np.testing.assert_array_equal(corrected, expected)
    np.testing.assert_array_equal(as_float, kept)  # never divided in place
    background = subtract_background(as_float, radius=10)
    expected = np.maximum(as_float - estimate_background(as_float, radius=10), 0.0).astype(np.float32)
    np.testing.assert_array_equal(background, expected)
    np.testing.assert_array_equal(as_float, kept)


def random_labels(rng: np.random.Generator, shape: tuple[int, int], density: float) -> tuple[np.ndarray, int]:
    mask = ndi.gaussian_filter(rng.random(shape), 2.0) > 0.5 + (0.5 - density) * 0.1
    labels, count = ndi.label(mask)
    return labels.astype(np.int32), int(count)


def test_histogram_bins_float32_pixels_as_a_float64_copy() -> None:
    rng = np.random.default_rng(11)
    for image in (
        rng.gamma(2.0, 200.0, (300, 200)).astype(np.float32),
        np.round(rng.gamma(2.0, 200.0, (300, 200))).astype(np.float32),  # values on the bin edges
        rng.integers(0, 4096, (64, 64)).astype(np.uint16),
    ):
        fast, reference = segmentation._histogram(image, 1024), reference_histogram(image, 1024)
        assert fast is not None and reference is not None
        for ours, theirs in zip(fast, reference, strict=True):
            np.testing.assert_array_equal(ours, theirs)
    assert segmentation._histogram(np.full((4, 4), 3.0, dtype=np.float32), 16) is None


@pytest.mark.parametrize("seed", range(4))
def test_label_maxima_match_ndimage_maximum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels, count = random_labels(rng, (200, 170), 0.5)
    for dtype in (np.float32, np.float64):
        values = rng.normal(100.0, 30.0, labels.shape).astype(dtype)
        for initial in (-np.inf, 0.0, 90.0):
            np.testing.assert_array_equal(
                segmentation._label_maxima(values, labels, count, initial),
                reference_label_maxima(values, labels, count, initial),
            )
    # labels without a pixel keep the initial value
    values = rng.random(labels.shape).astype(np.float32)
    result = segmentation._label_maxima(values, labels, count + 3, -1.0)
    assert result.dtype == np.float32 and (result[-3:] == -1.0).all()


@pytest.mark.parametrize("density", [0.2, 0.5, 0.8])
def test_fill_holes_matches_binary_fill_holes(density: float) -> None:
    rng = np.random.default_rng(int(density * 10))
    for shape in ((128, 96), (7, 5), (1, 9), (2, 2)):
        mask = rng.random(shape) < density
        np.testing.assert_array_equal(segmentation._fill_holes(mask), ndi.binary_fill_holes(mask))
        smooth = ndi.gaussian_filter(rng.random(shape), 1.5) > 0.5
        np.testing.assert_array_equal(segmentation._fill_holes(smooth), ndi.binary_fill_holes(smooth))
    ring = np.zeros((9, 9), dtype=bool)
    ring[2:7, 2:7] = True
    ring[4, 4] = False  # a hole
    ring[0, 3] = True  # a background pocket open to the edge stays background
    assert segmentation._fill_holes(ring)[4, 4] and not segmentation._fill_holes(ring)[0, 0]
    assert segmentation._fill_holes(np.ones((4, 4), dtype=bool)).all()
    assert not segmentation._fill_holes(np.zeros((4, 4), dtype=bool)).any()


@pytest.mark.parametrize("shape", [(120, 97), (13, 11), (5, 40), (3, 3)])
def test_extreme_filters_and_opening_match_ndimage(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0])
    image = rng.normal(50.0, 10.0, shape).astype(np.float32)
    image[rng.random(shape) < 0.05] = 70.0  # plateaus (ties)
    for size in (1, 2, 3, 4, 5, 7, 9, 15, 17, 25, 31):
        for maximum in (True, False):
            np.testing.assert_array_equal(
                segmentation._extreme_filter(image, size, maximum), reference_extreme_filter(image, size, maximum)
            )
        if size % 2:
            np.testing.assert_array_equal(
                segmentation._grey_opening(image, size), ndi.grey_opening(image, size=size, mode="reflect")
            )


@pytest.mark.parametrize("seed", range(3))
def test_flood_matches_one_whole_image_watershed(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = ndi.gaussian_filter(rng.random((160, 140)), 3.0) > 0.5
    landscape = -ndi.gaussian_filter(rng.random(mask.shape), 4.0).astype(np.float32)
    peaks = (landscape == ndi.minimum_filter(landscape, size=9)) & mask
    markers, _ = ndi.label(peaks, structure=np.ones((3, 3)))
    markers = markers.astype(np.int32)
    markers[rng.random(mask.shape) < 0.002] = 0
    # some components have several seeds, some one, some none (they get their own label)
    components, count = ndi.label(mask)
    markers[np.isin(components, np.arange(1, count + 1, 3))] = 0
    np.testing.assert_array_equal(
        segmentation._flood(landscape, markers, mask), reference_flood(landscape, markers, mask)
    )
    # a flat landscape is all ties: where two floods meet, which one claims a pixel depends on the order of equal
    # (value, age) entries in the queue, and that differs with what else is queued; every component still holds the
    # same objects, and a component with one seed label is filled by it whatever the landscape
    flat = np.zeros(mask.shape, dtype=np.float32)
    fast, reference = segmentation._flood(flat, markers, mask), reference_flood(flat, markers, mask)
    assert set(np.unique(fast).tolist()) == set(np.unique(reference).tolist())
    for index in range(1, count + 1):
        inside = components == index
        assert set(np.unique(fast[inside]).tolist()) == set(np.unique(reference[inside]).tolist())
        if np.unique(reference[inside]).size == 1:
            np.testing.assert_array_equal(fast[inside], reference[inside])


# ------------------------------------------------------------------------------------------ end to end
def real_image(stem: str) -> np.ndarray:
    return prepared(tifffile.imread(TEST_DATA / "nuclei" / f"{stem}_image.tif"))


#: name -> the prepared plane (made in the test, not at collection)
PLANES: dict[str, Callable[[], np.ndarray]] = {
    # clumps, dim neighbours, debris, well-edge arcs
    **{f"field{seed}": partial(lambda s: prepared(synthesize_field(s).image), seed) for seed in range(3)},
    "small nuclei": lambda: prepared(synthesize_field(1, shape=(256, 256), scale=0.8, haze=0.15, arc=False).image),
    "empty with a band": lambda: prepared(empty_field(2).image),
    # small nuclei on a large field: the diameter is measured at full resolution after the coarse estimate
    "crowded 1024": lambda: prepared(synthesize_field(3, shape=(1024, 1024), diameter=20.0).image),
    "real img2d": partial(real_image, "dsb2018_stardist_img2d"),
    "real test256": partial(real_image, "dsb2018_stardist_test256"),
    "demo site B02 s1": partial(demo_nuclei_site, "B02", 1),
    "demo site C03 s2": partial(demo_nuclei_site, "C03", 2),
}


@pytest.mark.parametrize("name", list(PLANES))
def test_segmentation_labels_are_those_of_the_reference_helpers(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    plane = PLANES[name]()
    fast = segmentation.segment_nuclei(plane)
    for helper, function in REFERENCES.items():
        monkeypatch.setattr(segmentation, helper, function)
    reference = segmentation.segment_nuclei(plane)
    assert reference.max() > 0 or name.startswith("empty")
    np.testing.assert_array_equal(fast, reference, err_msg=name)
