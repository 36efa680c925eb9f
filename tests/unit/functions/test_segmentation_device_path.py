"""The segmentation's device path (issue #15, item 3), checked on the CPU: run under numpy, against the host path.

``segment_nuclei`` takes the device path for cupy input; ``segmentation._FORCE_DEVICE_PATH`` makes numpy input take
it too, so its parity with the host path (scikit-image's watershed) is tested on every machine. The two paths share
every step except the two seeded floods (region growing in quantised levels,
:mod:`openhcs_rules.functions._region_growing`, instead of scikit-image's priority queue) and where the arrays live.

Tolerances, measured on these planes with the default 256 levels (docs/benchmarks.md, "Segmentation on the device"):

* object counts: the host path's within max(2, 2%) (measured: equal on 5 of the 9 planes, otherwise 1-2 of 60-410
  apart: a boundary moved by a pixel changes a neck width or pass height the merge of over-split pieces reads);
* each host object's best IoU with a device-path object: median >= 0.97 (measured >= 0.99), mean >= 0.93 (measured
  0.97-1.0), F1 at IoU 0.5 >= 0.95 (measured 0.98-1.0);
* empty fields: 0 objects on both paths; labels consecutive 1..k and int32, as on the host path;
* without declumping (no flood at all) the two paths give the same labels, pixel for pixel.

The region growing itself is compared with ``skimage.segmentation.watershed`` on small landscapes: identical where
every landscape value has a level step of its own (no plateaus, no ties), and within a few percent of the pixels
with the default levels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile
from skimage.segmentation import watershed

from openhcs_rules.core.arrays import CUPY, gpu_available, memory_type_of, to_memory, to_numpy
from openhcs_rules.demo.realistic_nuclei import empty_field, synthesize_field
from openhcs_rules.functions import segmentation
from openhcs_rules.functions._region_growing import grow_regions
from openhcs_rules_testkit.accuracy import demo_nuclei_site, match
from openhcs_rules_testkit.accuracy import prepare_for_segmentation as prepared
from openhcs_rules_testkit.paths import TEST_DATA


# ------------------------------------------------------------------------------------------ region growing
def smooth_landscape(seed: int, shape: tuple[int, int] = (48, 48)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth random landscape (distinct float64 values), a mask with holes and several components, and
    markers at its local minima inside the mask."""
    rng = np.random.default_rng(seed)
    landscape = ndi.gaussian_filter(rng.normal(size=shape), 3.0)
    mask = ndi.gaussian_filter(rng.normal(size=shape), 4.0) > -0.03
    minima = (landscape == ndi.minimum_filter(landscape, 7)) & mask
    markers, _ = ndi.label(minima)
    return landscape, markers.astype(np.int32), mask


def skimage_flood(landscape: np.ndarray, markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """scikit-image's watershed with the host path's rule for mask components without a marker (their own label,
    numbered after the highest marker, in the order ``ndimage.label`` numbers them)."""
    components, count = ndi.label(mask)
    seeded = np.zeros(count + 1, dtype=bool)
    seeded[components[markers > 0]] = True
    extra = markers.copy()
    top = int(markers.max())
    for index in range(1, count + 1):
        if not seeded[index]:
            extra[components == index] = top + index
    return watershed(landscape, extra, mask=mask)


@pytest.mark.parametrize("seed", range(4))
def test_growing_with_a_step_per_value_is_the_watershed(seed: int) -> None:
    landscape, markers, mask = smooth_landscape(seed)
    assert np.unique(landscape[mask]).size == mask.sum()  # no ties
    expected = skimage_flood(landscape, markers, mask)
    np.testing.assert_array_equal(grow_regions(landscape, markers, mask, levels=10**7), expected)
    np.testing.assert_array_equal(segmentation._flood(landscape, markers, mask), expected)


@pytest.mark.parametrize("seed", range(4))
def test_growing_with_the_default_levels_is_close_to_the_watershed(seed: int) -> None:
    landscape, markers, mask = smooth_landscape(seed, (96, 96))
    expected = skimage_flood(landscape, markers, mask)
    grown = grow_regions(landscape, markers, mask)
    assert grown.dtype == np.int32
    np.testing.assert_array_equal(grown > 0, mask)
    assert np.mean(grown[mask] != expected[mask]) < 0.03


def test_hand_made_basins() -> None:
    """Two valleys split at their ridge; a component without a marker; one with one label."""
    x = np.arange(21, dtype=np.float64)
    row = np.minimum(np.abs(x - 4), np.abs(x - 15) + 0.5)  # minima at 4 and 15, ridge between 9 and 10
    landscape = np.tile(row, (5, 1)) + np.arange(5)[:, None] * 0.01
    mask = np.zeros((5, 30), dtype=bool)
    mask[:, :21] = True
    mask[1:4, 23:26] = True  # no marker: one object of its own, numbered 3 (highest marker) + 2 (its component)
    mask[1:4, 27:30] = True  # one marker
    landscape = np.pad(landscape, ((0, 0), (0, 9)), constant_values=1.0)
    markers = np.zeros((5, 30), dtype=np.int32)
    markers[2, 4], markers[2, 15], markers[2, 28] = 1, 2, 3
    grown = grow_regions(landscape, markers, mask, levels=10**6)
    np.testing.assert_array_equal(grown, skimage_flood(landscape, markers, mask))
    assert (grown[:, :10] == 1).all() and (grown[:, 10:21] == 2).all()
    assert (grown[1:4, 23:26] == 5).all() and (grown[1:4, 27:30] == 3).all()
    assert (grown[~mask] == 0).all()


def test_ties_go_to_the_larger_label_and_nothing_without_a_mask() -> None:
    landscape = np.zeros((3, 5))
    markers = np.zeros((3, 5), dtype=np.int32)
    markers[1, 0], markers[1, 4] = 7, 3
    mask = np.ones((3, 5), dtype=bool)
    grown = grow_regions(landscape, markers, mask)
    np.testing.assert_array_equal(grown[1], [7, 7, 7, 3, 3])  # the middle column is reached by both at once
    np.testing.assert_array_equal(grow_regions(landscape, markers, np.zeros_like(mask)), np.zeros((3, 5)))
    np.testing.assert_array_equal(grow_regions(landscape, np.zeros_like(markers), mask), np.ones((3, 5)))


# ---------------------------------------------------------------------------------- device path vs host
def real_image(stem: str) -> np.ndarray:
    path = TEST_DATA / "nuclei" / f"{stem}_image.tif"
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return prepared(tifffile.imread(path))


PLANES: dict[str, Callable[[], np.ndarray]] = {
    **{f"field{seed}": partial(lambda s: prepared(synthesize_field(s).image), seed) for seed in range(3)},
    "small nuclei": lambda: prepared(synthesize_field(1, shape=(256, 256), scale=0.8, haze=0.15, arc=False).image),
    "crowded 1024": lambda: prepared(synthesize_field(3, shape=(1024, 1024), diameter=20.0).image),
    "real img2d": partial(real_image, "dsb2018_stardist_img2d"),
    "real test256": partial(real_image, "dsb2018_stardist_test256"),
    "demo site B02 s1": partial(demo_nuclei_site, "B02", 1),
    "demo site C03 s2": partial(demo_nuclei_site, "C03", 2),
}


@pytest.fixture
def device_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(segmentation, "_FORCE_DEVICE_PATH", True)
    yield


def on_device_path(stack: np.ndarray, **kwargs: Any) -> np.ndarray:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segmentation, "_FORCE_DEVICE_PATH", True)
        return segmentation.segment_nuclei(stack, **kwargs)


def best_iou(host: np.ndarray, device: np.ndarray) -> np.ndarray:
    """Per host object, its best IoU with any device-path object."""
    n_host, n_device = int(host.max()), int(device.max())
    overlap = np.bincount(host.ravel() * (n_device + 1) + device.ravel(), minlength=(n_host + 1) * (n_device + 1))
    overlap = overlap.reshape(n_host + 1, n_device + 1)[1:, 1:].astype(np.float64)
    area_host, area_device = np.bincount(host.ravel(), minlength=n_host + 1)[1:], np.bincount(device.ravel())[1:]
    union = area_host[:, None] + area_device[None, :] - overlap
    return (overlap / np.maximum(union, 1.0)).max(axis=1)


@pytest.mark.parametrize("name", list(PLANES))
def test_device_path_matches_the_host_path(name: str) -> None:
    plane = PLANES[name]()
    host = segmentation.segment_nuclei(plane)
    device = on_device_path(plane)
    assert device.dtype == host.dtype == np.int32 and device.shape == host.shape
    assert memory_type_of(device) == "numpy"
    n_host, n_device = int(host.max()), int(device.max())
    assert n_host > 0
    assert abs(n_device - n_host) <= max(2, 0.02 * n_host), (name, n_host, n_device)
    np.testing.assert_array_equal(np.unique(device), np.arange(n_device + 1))  # consecutive labels
    iou = best_iou(host[0], device[0])
    assert np.median(iou) >= 0.97, (name, float(np.median(iou)))
    assert iou.mean() >= 0.93, (name, float(iou.mean()))
    assert match(host[0], device[0])["f1"] >= 0.95


@pytest.mark.parametrize(
    "plane",
    [
        pytest.param(lambda: prepared(empty_field(2).image), id="empty with a band"),
        pytest.param(lambda: prepared(empty_field(5).image), id="empty"),
        pytest.param(lambda: np.zeros((1, 128, 128), dtype=np.float32), id="zeros"),
        pytest.param(lambda: np.full((1, 64, 64), 7.0, dtype=np.float32), id="constant"),
    ],
)
def test_device_path_finds_nothing_in_empty_fields(plane: Callable[[], np.ndarray]) -> None:
    stack = plane()
    labels = on_device_path(stack)
    assert labels.dtype == np.int32 and labels.shape == stack.shape
    assert int(labels.max()) == 0
    assert int(segmentation.segment_nuclei(stack).max()) == 0


def test_device_path_without_declumping_is_the_host_path_and_a_stack_keeps_its_planes() -> None:
    stack = np.concatenate([PLANES["field0"](), PLANES["small nuclei"]()[:, :256, :256].repeat(2, 1).repeat(2, 2)])
    np.testing.assert_array_equal(
        on_device_path(stack, split_touching=False), segmentation.segment_nuclei(stack, split_touching=False)
    )
    both = on_device_path(stack)
    np.testing.assert_array_equal(both[0], on_device_path(stack[:1])[0])
    assert both[1].max() > 0


def test_device_path_with_a_fixed_threshold_and_diameter(device_path: None) -> None:
    plane = PLANES["field1"]()
    level = float(np.percentile(plane, 90))
    labels = segmentation.segment_nuclei(plane, threshold=level, diameter=24.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segmentation, "_FORCE_DEVICE_PATH", False)
        host = segmentation.segment_nuclei(plane, threshold=level, diameter=24.0)
    assert abs(int(labels.max()) - int(host.max())) <= max(2, 0.02 * int(host.max()))


# --------------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs cupy and a CUDA device")
@pytest.mark.parametrize("name", ["field0", "crowded 1024", "demo site B02 s1"])
def test_cupy_segmentation_counts_match_numpy(name: str) -> None:
    """On cupy the whole segmentation stays on the device and counts as the device path does under numpy (the
    same operations; float rounding may move a boundary, so counts within 1 and the host path's tolerance)."""
    plane = PLANES[name]()
    result = segmentation.segment_nuclei(to_memory(np.ascontiguousarray(plane), CUPY))
    assert memory_type_of(result) == CUPY and result.dtype == np.int32
    device = to_numpy(result)
    host = segmentation.segment_nuclei(plane)
    assert abs(int(device.max()) - int(on_device_path(plane).max())) <= 1
    assert abs(int(device.max()) - int(host.max())) <= max(2, 0.02 * int(host.max()))
    assert np.median(best_iou(host[0], device[0])) >= 0.97
