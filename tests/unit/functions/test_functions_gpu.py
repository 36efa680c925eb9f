"""GPU parity: every processing function gives the numpy result on cupy inputs (skipped without a GPU).

Tolerances: float images agree to rtol 1e-5 (the same operations in float32, summed in a different
order on the device); smooth fields built from matrix products and medians to rtol 1e-4; integer results
(labels, counts, median filter) exactly, except that a label image may differ in at most 0.1% of its
pixels where a tie between two equal seeds can break differently.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from openhcs_rules.core.arrays import CUPY, gpu_available, memory_type_of, to_memory, to_numpy
from openhcs_rules.demo.synthetic import synthesize_site
from openhcs_rules.functions import (
    count_objects,
    denoise,
    estimate_background,
    estimate_illumination,
    flatfield_correct,
    measure_objects,
    otsu_threshold,
    project_z,
    segment_nuclei,
    subtract_background,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not gpu_available(), reason="needs cupy and a CUDA device"),
]


@pytest.fixture(scope="module")
def site() -> Any:
    return synthesize_site("B02", 1, shape=(512, 512), channels=2, z_planes=3)


def on_gpu(array: np.ndarray) -> Any:
    return to_memory(np.ascontiguousarray(array), CUPY)


def both(function: Any, array: np.ndarray, *args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    expected = function(array, *args, **kwargs)
    result = function(on_gpu(array), *args, **kwargs)
    assert memory_type_of(result) == CUPY, f"{function.__name__} left the GPU"
    return expected, to_numpy(result)


@pytest.mark.parametrize("method", ["max", "mean", "min", "std", "sum"])
def test_project_z(site: Any, method: str) -> None:
    expected, result = both(project_z, site.images[0].astype(np.float32), method)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-3)


def test_denoise(site: Any) -> None:
    stack = site.images[0].astype(np.float32)
    expected, result = both(denoise, stack, 1.5)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-2)
    expected, result = both(denoise, stack, method="median", size=3)
    np.testing.assert_array_equal(result, expected)


def test_background(site: Any) -> None:
    stack = site.images[0].astype(np.float32)
    for function in (estimate_background, subtract_background):
        expected, result = both(function, stack, 50)
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=0.05)


def test_illumination(site: Any) -> None:
    planes = [site.images[0, z] for z in range(3)]
    expected = estimate_illumination(planes, dark=100.0)
    profile = estimate_illumination([on_gpu(p) for p in planes], dark=100.0)
    assert memory_type_of(profile) == CUPY
    np.testing.assert_allclose(to_numpy(profile), expected, rtol=1e-4)
    stack = site.images[0]
    np.testing.assert_allclose(
        to_numpy(flatfield_correct(on_gpu(stack), profile, dark=100.0)),
        flatfield_correct(stack, expected, dark=100.0),
        rtol=1e-4,
    )


def test_otsu(site: Any) -> None:
    image = site.images[0, 1].astype(np.float32)
    bin_width = float(image.max() - image.min()) / 1024
    assert otsu_threshold(on_gpu(image)) == pytest.approx(otsu_threshold(image), abs=bin_width)


def test_segmentation_and_measurement(site: Any) -> None:
    stack = site.images[0, 1:2].astype(np.float32)
    expected, result = both(segment_nuclei, stack)
    assert result.dtype == np.int32
    assert count_objects(on_gpu(result)) == count_objects(expected)
    assert np.mean(result == expected) >= 0.999
    labels = expected[0]
    intensities = site.images[:, 1].astype(np.float32)
    rows_cpu = measure_objects(labels, intensities, ["DAPI", "FITC"])
    rows_gpu = measure_objects(on_gpu(labels), on_gpu(intensities), ["DAPI", "FITC"])
    assert [r["label"] for r in rows_gpu] == [r["label"] for r in rows_cpu]
    for cpu, gpu in zip(rows_cpu, rows_gpu, strict=True):
        for key, value in cpu.items():
            assert gpu[key] == pytest.approx(value, rel=1e-6), key
