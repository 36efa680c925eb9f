"""Segmentation accuracy against annotations: real DSB 2018 images (tests/data/nuclei) and realistic fields.

Floors are set below what was measured (bench/accuracy.py, see docs/benchmarks.md) with a margin for
platform differences, and above what the previous segmenter reached where the change is meant to help.
``dsb2018_stardist_img2d`` was used while choosing the segmenter's constants; ``dsb2018_stardist_test256``
was held out (evaluated only), so its floor is the honest one. ``dsb2018_stage1/`` holds 77 more real images of
the DSB 2018 stage 1 set (27 from its tuning half, 50 from its held-out half; scripts/dsb2018_subset.py).
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi
import tifffile

from openhcs_rules.demo.realistic_nuclei import empty_field, synthesize_field
from openhcs_rules.functions.segmentation import count_objects, segment_nuclei
from openhcs_rules_testkit.accuracy import error_types, match, prepare_for_segmentation
from openhcs_rules_testkit.dsb2018 import sample_images
from openhcs_rules_testkit.paths import TEST_DATA

DATA = TEST_DATA / "nuclei"


def pipeline_labels(image: np.ndarray) -> np.ndarray:
    return segment_nuclei(prepare_for_segmentation(image))[0]


def real(stem: str) -> tuple[np.ndarray, np.ndarray]:
    return tifffile.imread(DATA / f"{stem}_image.tif"), tifffile.imread(DATA / f"{stem}_labels.tif")


def test_match_scores_a_perfect_and_an_empty_answer() -> None:
    truth = np.zeros((20, 20), dtype=np.int32)
    truth[2:8, 2:8] = 1
    truth[10:16, 10:16] = 2
    assert match(truth, truth)["f1"] == 1.0 and match(truth, truth)["mean_iou"] == 1.0
    empty = match(truth, np.zeros_like(truth))
    assert empty["f1"] == 0.0 and empty["count_error"] == -1.0


def test_error_types_count_merges_splits_misses_and_false_positives() -> None:
    truth = np.zeros((30, 30), dtype=np.int32)
    truth[2:8, 2:8], truth[2:8, 8:14] = 1, 2  # two touching nuclei ...
    truth[16:24, 2:10] = 3  # ... one cut in two ...
    truth[16:22, 20:26] = 4  # ... and one not found
    predicted = np.zeros_like(truth)
    predicted[2:8, 2:14] = 1  # the pair as one object
    predicted[16:24, 2:6], predicted[16:24, 6:10] = 2, 3
    predicted[26:29, 26:29] = 4  # a speck of background
    errors = error_types(truth, predicted)
    assert errors == {"merges": 1, "splits": 1, "misses": 1, "false_pos": 1}
    assert error_types(truth, truth) == {"merges": 0, "splits": 0, "misses": 0, "false_pos": 0}


def test_generator_scale_and_haze_shrink_nuclei_and_add_cytoplasm() -> None:
    plain = synthesize_field(2, shape=(256, 256))
    small = synthesize_field(2, shape=(256, 256), scale=0.5)
    hazy = synthesize_field(2, shape=(256, 256), scale=0.5, haze=0.2)
    area = np.median(np.bincount(plain.labels.ravel())[1:])
    assert np.median(np.bincount(small.labels.ravel())[1:]) < 0.4 * area
    assert small.count > 2 * plain.count  # same crowding: count / scale^2
    np.testing.assert_array_equal(small.labels, hazy.labels)
    ring = (hazy.labels == 0) & (ndi.distance_transform_edt(hazy.labels == 0) <= 3)
    assert hazy.image[ring].mean() > small.image[ring].mean() + 1.0


def test_held_out_real_image() -> None:
    # measured: F1 0.784, count -7.7% (60 of 65), mean IoU 0.648; the previous segmenter: F1 0.704, -7.7%
    image, truth = real("dsb2018_stardist_test256")
    score = match(truth, pipeline_labels(image))
    assert score["f1"] >= 0.74
    assert abs(score["count_error"]) <= 0.08
    assert score["mean_iou"] >= 0.62


def held_out_dsb_scores() -> list[dict[str, float]]:
    return [
        match(item.labels, pipeline_labels(item.image))
        for item in sample_images(DATA / "dsb2018_stage1")
        if item.split == "held_out"
    ]


def test_held_out_dsb2018_sample() -> None:
    # 50 held-out real fluorescence images (256^2 crops to 1040x1388 fields, 9-60 px nuclei, one Drosophila
    # embryo). Measured: mean F1 0.846 (session 7's segmenter 0.827, session 6's 0.769), median 0.875 (0.872),
    # median per-image count error 0, median |count error| 8.3%, mean IoU 0.748 (0.739); pooled count -15.5%
    # (-21.9% in session 6), 237 of the missing 312 nuclei being merges on the embryo image. The gain of session 8
    # is the halo rule (outlines at the foot of a wide edge ramp): without it the mean F1 is 0.827.
    scores = held_out_dsb_scores()
    f1 = np.array([s["f1"] for s in scores])
    count_error = np.array([s["count_error"] for s in scores])
    assert len(scores) == 50
    assert f1.mean() >= 0.835 and np.median(f1) >= 0.85
    assert np.mean([s["mean_iou"] for s in scores]) >= 0.72
    assert abs(np.median(count_error)) <= 0.03 and np.median(np.abs(count_error)) <= 0.11


def test_tuning_real_image() -> None:
    # measured: F1 0.898, count -4.0% (120 of 125), mean IoU 0.755, area 1.14 (outlines at 35% of the peak
    # for nuclei this size, chosen on the DSB tuning half, draw this image's nuclei a little large); first
    # segmenter: F1 0.747, -13.6%
    image, truth = real("dsb2018_stardist_img2d")
    score = match(truth, pipeline_labels(image))
    assert score["f1"] >= 0.88
    assert abs(score["count_error"]) <= 0.10
    assert score["mean_iou"] >= 0.72
    assert 0.88 <= score["area_ratio"] <= 1.25


def test_realistic_synthetic_fields() -> None:
    # measured over seeds 0-7: median F1 0.765 (previous 0.658), count -9% (previous -24%)
    scores = [match(f.labels, pipeline_labels(f.image)) for f in (synthesize_field(0), synthesize_field(1))]
    assert min(s["f1"] for s in scores) >= 0.70
    assert max(abs(s["count_error"]) for s in scores) <= 0.15


def test_generator_is_deterministic_and_labels_every_nucleus() -> None:
    first, second = synthesize_field(3, shape=(256, 256)), synthesize_field(3, shape=(256, 256))
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.count == int(first.labels.max()) > 10
    assert empty_field(0).count == 0


def test_empty_field_without_arc_segmented_directly_has_at_most_one_object() -> None:
    # gradient, hot pixels and noise only, given to segment_nuclei without background subtraction
    for seed in range(3):
        assert count_objects(segment_nuclei(empty_field(seed, arc_strength=0.0).image[None])) <= 1


def test_noise_and_gradient_fields_have_at_most_one_object() -> None:
    # no nuclei, no arc: gradient, hot pixels and noise, through the pipeline's background subtraction
    # (which clips half of the background to 0) and denoise, and given to segment_nuclei directly; the
    # previous noise estimate (from the lower, clipped side) gave 60-1100 objects per field via the pipeline
    for seed in range(4):
        image = empty_field(seed, arc_strength=0.0).image
        assert count_objects(pipeline_labels(image)) <= 1
        assert count_objects(segment_nuclei(image[None])) <= 1


def test_empty_field_with_edge_arc_has_at_most_one_object() -> None:
    # the well-edge arc is dropped as a bright band (segmentation module docstring, step 5b); before: 4-8
    # objects per field. Seeds 0-39 measured: 0 objects in 39 fields, 1 in one.
    counts = [count_objects(pipeline_labels(empty_field(seed).image)) for seed in range(4)]
    assert max(counts) <= 1
