"""measure_objects on hand-made labels: areas, centroids and intensities are exact."""

from __future__ import annotations

import numpy as np
import pytest

from openhcs_rules.functions.measurement import measure_objects, sanitize_channel_name


def hand_made() -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros((6, 8), dtype=np.int32)
    labels[1:3, 1:4] = 2  # 2x3 block: rows 1-2, cols 1-3
    labels[4, 6] = 7  # a single pixel, non-consecutive label
    labels[3:6, 0] = 5  # a vertical bar: rows 3-5, col 0
    dapi = np.arange(48, dtype=np.float32).reshape(6, 8)
    fitc = np.full((6, 8), 2.0, dtype=np.float32)
    fitc[labels == 5] = 10.0
    return labels, np.stack([dapi, fitc])


def test_exact_values() -> None:
    labels, images = hand_made()
    rows = measure_objects(labels, images, ["DAPI", "FITC"])
    assert [row["label"] for row in rows] == [2, 5, 7]
    block, bar, dot = rows

    assert block["area_px"] == 6
    assert (block["centroid_y"], block["centroid_x"]) == (1.5, 2.0)
    block_values = [9, 10, 11, 17, 18, 19]
    assert block["integrated_intensity_DAPI"] == pytest.approx(sum(block_values))
    assert block["mean_intensity_DAPI"] == pytest.approx(np.mean(block_values))
    assert block["mean_intensity_FITC"] == pytest.approx(2.0)
    assert block["integrated_intensity_FITC"] == pytest.approx(12.0)

    assert bar["area_px"] == 3
    assert (bar["centroid_y"], bar["centroid_x"]) == (4.0, 0.0)
    assert bar["integrated_intensity_DAPI"] == pytest.approx(24 + 32 + 40)
    assert bar["mean_intensity_FITC"] == pytest.approx(10.0)

    assert dot["area_px"] == 1
    assert (dot["centroid_y"], dot["centroid_x"]) == (4.0, 6.0)
    assert dot["mean_intensity_DAPI"] == pytest.approx(38.0)
    assert all(isinstance(value, int | float) for row in rows for value in row.values())


def test_channel_names_are_sanitised() -> None:
    labels, images = hand_made()
    row = measure_objects(labels, images, ["Texas Red", "Cy5-ratio/2"])[0]
    assert "mean_intensity_Texas_Red" in row and "integrated_intensity_Cy5_ratio_2" in row
    assert sanitize_channel_name(" GFP (488) ") == "GFP__488_"


def test_single_2d_channel_and_empty_labels() -> None:
    labels, images = hand_made()
    rows = measure_objects(labels, images[0], ["DAPI"])
    assert rows[0]["mean_intensity_DAPI"] == pytest.approx(14.0)
    assert measure_objects(np.zeros((4, 4), dtype=np.int32), np.ones((1, 4, 4)), ["DAPI"]) == []


def test_errors() -> None:
    labels, images = hand_made()
    with pytest.raises(ValueError, match="channel names"):
        measure_objects(labels, images, ["DAPI"])
    with pytest.raises(ValueError, match="not unique"):
        measure_objects(labels, images, ["Texas Red", "Texas_Red"])
    with pytest.raises(ValueError, match="same image size"):
        measure_objects(labels, images[:, :5], ["a", "b"])
    with pytest.raises(ValueError, match="2D label image"):
        measure_objects(labels[None], images, ["a", "b"])
    with pytest.raises(ValueError, match="integers"):
        measure_objects(labels.astype(np.float32), images, ["a", "b"])
