"""Cells grown from nuclei, cytoplasm, and the measure_compartments step (and its pipeline).

The synthetic field: four nuclei with ids 3, 7, 12, 20 (not consecutive). 3 and 7 sit in two cell bodies
that overlap (touching cells, 7's dimmer); 12 in a lone elliptic cell; 20 has no cell body at all; a bright
blob without a nucleus lies far from every nucleus. Tolerances: every pixel of a grown cell lies within
5 px of its true body (the edges are blurred with sigma 1.5 px and read at the threshold, a quarter of the
way up; at the seam the brighter cell's blur reaches into the dimmer one), and the cell covers >= 95% of
the part of its body that no other body overlaps; everything else is exact.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt, gaussian_filter

from openhcs_rules.core.arrays import CUPY, gpu_available, to_memory, to_numpy
from openhcs_rules.demo.synthetic import synthesize_site
from openhcs_rules.functions.compartments import (
    cytoplasm_labels,
    grow_cells,
    measure_compartments,
    resolve_channel,
    typical_nucleus_diameter,
)
from openhcs_rules.functions.measurement import measure_objects
from openhcs_rules.pipeline.executor import RunContext, run_pipeline
from openhcs_rules.pipeline.registry import check_kwargs, get_function
from openhcs_rules.pipeline.serialize import load_pipeline

REPO_PIPELINE = "config/pipelines/cell_profile.py"
SHAPE = (200, 300)
CHANNELS = ["DNA", "Cell Body"]


def ellipse(centre: tuple[float, float], a: float, b: float) -> np.ndarray:
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return ((yy - centre[0]) / a) ** 2 + ((xx - centre[1]) / b) ** 2 <= 1


def field(seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    nuclei = np.zeros(SHAPE, dtype=np.int32)
    bodies = {
        3: ellipse((60, 60), 35, 35),
        7: ellipse((60, 125), 35, 35),  # overlaps 3's body: touching cells
        12: ellipse((150, 200), 28, 34),
    }
    centres = {3: (60, 60), 7: (60, 125), 12: (150, 200), 20: (150, 60)}
    for object_id, centre in centres.items():
        nuclei[ellipse(centre, 12, 12)] = object_id
    body = np.zeros(SHAPE)
    for object_id, mask in bodies.items():
        body = np.maximum(body, np.where(mask, 300.0 if object_id != 7 else 180.0, 0.0))
    body = np.maximum(body, np.where(ellipse((170, 280), 10, 10), 300.0, 0.0))  # debris: no nucleus
    cell_image = gaussian_filter(body, 1.5) + 100 + rng.normal(0, 5, SHAPE)
    dna = np.where(nuclei > 0, 1000.0, 0.0) + 100 + rng.normal(0, 5, SHAPE)
    return {"nuclei": nuclei, "bodies": bodies, "images": np.stack([dna, cell_image])}


@pytest.fixture(scope="module")
def synthetic() -> dict[str, Any]:
    data = field()
    data["cells"] = grow_cells(data["nuclei"], data["images"][1])
    return data


# -------------------------------------------------------------------------------------------------- cells
def test_every_nucleus_is_inside_its_cell_with_its_id(synthetic: dict[str, Any]) -> None:
    nuclei, cells = synthetic["nuclei"], synthetic["cells"]
    assert cells.dtype == np.int32 and cells.shape == nuclei.shape
    assert sorted(np.unique(cells)[1:].tolist()) == [3, 7, 12, 20]
    np.testing.assert_array_equal(cells[nuclei > 0], nuclei[nuclei > 0])


def test_cells_follow_their_bodies_and_touching_cells_are_split(synthetic: dict[str, Any]) -> None:
    cells, bodies = synthetic["cells"], synthetic["bodies"]
    for object_id, body in bodies.items():
        cell = cells == object_id
        others = np.zeros(SHAPE, dtype=bool)
        for other_id, other in bodies.items():
            if other_id != object_id:
                others |= other
        own = body & ~others
        assert distance_transform_edt(~body)[cell].max() <= 5, object_id
        assert (cell & own).sum() >= 0.95 * own.sum(), object_id
    # the seam between 3 and 7 runs at the step from 3's brightness down to 7's, just past the lens where
    # their bodies overlap (columns 90-95; 3's blurred edge reaches a few pixels further)
    row = cells[60]
    assert np.flatnonzero(row == 7).min() == np.flatnonzero(row == 3).max() + 1
    assert 90 <= np.flatnonzero(row == 7).min() <= 100


def test_a_nucleus_without_a_cell_body_keeps_itself_and_debris_stays_out(synthetic: dict[str, Any]) -> None:
    nuclei, cells = synthetic["nuclei"], synthetic["cells"]
    np.testing.assert_array_equal(cells == 20, nuclei == 20)
    assert not cells[ellipse((170, 280), 10, 10)].any()


def test_cells_stay_within_max_distance() -> None:
    data = field()
    cells = grow_cells(data["nuclei"], data["images"][1], max_distance=8)
    distance = distance_transform_edt(data["nuclei"] == 0)
    assert distance[cells > 0].max() <= 8
    assert (cells == 3).sum() < (grow_cells(data["nuclei"], data["images"][1]) == 3).sum()
    assert typical_nucleus_diameter(data["nuclei"]) == pytest.approx(
        2 * math.sqrt((data["nuclei"] == 3).sum() / math.pi)
    )


def test_empty_cell_channel_and_no_nuclei() -> None:
    data = field()
    noise = np.random.default_rng(1).normal(100, 5, SHAPE)
    np.testing.assert_array_equal(grow_cells(data["nuclei"], noise), data["nuclei"])
    empty = grow_cells(np.zeros(SHAPE, dtype=np.int32), data["images"][1])
    assert empty.shape == SHAPE and not empty.any()
    with pytest.raises(ValueError, match="differ in size"):
        grow_cells(data["nuclei"], data["images"][1][:10])


def test_cytoplasm_is_the_cell_minus_its_nucleus(synthetic: dict[str, Any]) -> None:
    nuclei, cells = synthetic["nuclei"], synthetic["cells"]
    cytoplasm = cytoplasm_labels(cells, nuclei)
    assert not cytoplasm[nuclei > 0].any()
    np.testing.assert_array_equal(cytoplasm[nuclei == 0], cells[nuclei == 0])
    assert sorted(np.unique(cytoplasm)[1:].tolist()) == [3, 7, 12]  # 20 has no cytoplasm


# ------------------------------------------------------------------------------------------- the measure step
def test_measure_compartments_rows(synthetic: dict[str, Any]) -> None:
    nuclei, images = synthetic["nuclei"], synthetic["images"]
    rows = measure_compartments(nuclei, images, CHANNELS, cell_channel="Cell Body")
    base = measure_objects(nuclei, images, CHANNELS)
    assert [row["label"] for row in rows] == [3, 7, 12, 20]
    for row, expected in zip(rows, base, strict=True):
        assert {key: row[key] for key in expected} == expected  # the columns the workflow reads, unchanged
        assert row["Nuclei_AreaShape_Area"] == row["area_px"]
        assert row["Nuclei_Intensity_IntegratedIntensity_DNA"] == pytest.approx(row["integrated_intensity_DNA"])
        assert row["Nuclei_Location_Center_X"] == pytest.approx(row["centroid_x"])
        cell_area = (synthetic["cells"] == row["label"]).sum()
        assert row["Cells_AreaShape_Area"] == cell_area
    for row in rows[:3]:
        assert row["Cytoplasm_AreaShape_Area"] == row["Cells_AreaShape_Area"] - row["Nuclei_AreaShape_Area"]
        assert row["Cytoplasm_Intensity_MeanIntensity_Cell_Body"] > 150
    lone = rows[3]
    assert lone["Cells_AreaShape_Area"] == lone["Nuclei_AreaShape_Area"]
    cytoplasm = [key for key in lone if key.startswith("Cytoplasm_")]
    assert len(cytoplasm) == len([key for key in lone if key.startswith("Nuclei_")])
    assert all(math.isnan(lone[key]) for key in cytoplasm)
    assert "Cells_Texture_Entropy_Cell_Body_3" in lone and "Nuclei_Texture_InfoMeas2_DNA_3" in lone
    assert all(isinstance(value, int | float) for value in lone.values())


def test_cell_channel_by_index_or_name_and_options(synthetic: dict[str, Any]) -> None:
    nuclei, images = synthetic["nuclei"], synthetic["images"]
    by_name = measure_compartments(nuclei, images, CHANNELS, cell_channel="cell_body", texture=False)
    by_index = measure_compartments(nuclei, images, CHANNELS, cell_channel=2, texture=False)
    assert len(by_name) == len(by_index) == 4
    for named, indexed in zip(by_name, by_index, strict=True):
        assert named == pytest.approx(indexed, nan_ok=True)
    assert not any(key.startswith(("Nuclei_Texture", "Cells_Texture")) for key in by_name[0])
    nuclei_only = measure_compartments(nuclei, images, CHANNELS)
    assert not any(key.startswith(("Cells_", "Cytoplasm_")) for key in nuclei_only[0])
    assert nuclei_only[0]["Nuclei_AreaShape_Area"] == by_name[0]["Nuclei_AreaShape_Area"]
    assert resolve_channel("2", CHANNELS) == 1 and resolve_channel("dna", CHANNELS) == 0
    for bad in (3, 0, "GFP", True):
        with pytest.raises(ValueError, match="not among the channels|1-based index"):
            resolve_channel(bad, CHANNELS)
    assert measure_compartments(np.zeros(SHAPE, dtype=np.int32), images, CHANNELS, cell_channel=2) == []


def test_registered_and_in_a_pipeline() -> None:
    spec = get_function("measure_compartments")
    assert spec.kind == "measure"
    check_kwargs("measure_compartments", {"cell_channel": 2, "texture": False, "cell_max_distance": 30.0})
    check_kwargs("measure_compartments", {"cell_channel": "FITC", "texture_scale": 2})
    with pytest.raises(Exception, match="cell_channel"):
        check_kwargs("measure_compartments", {"cell_channel": 2.5})

    pipeline = load_pipeline(REPO_PIPELINE)
    assert pipeline.steps[-1].func == "measure_compartments"
    site = synthesize_site("B02", 1, shape=(256, 256), channels=2, z_planes=1)
    planes = {(1, channel + 1, 1, 1): site.images[channel, 0] for channel in range(2)}
    context = RunContext(
        channel_names={1: "DAPI", 2: "FITC"}, illumination={1: np.ones((256, 256)), 2: np.ones((256, 256))}
    )
    objects = run_pipeline(pipeline, planes, context).objects
    assert objects and all(row["site"] == 1 for row in objects)
    assert all(row["Cells_AreaShape_Area"] >= row["Nuclei_AreaShape_Area"] for row in objects)
    assert "Cytoplasm_Texture_Contrast_FITC_3" in objects[0] and "mean_intensity_DAPI" in objects[0]


# ----------------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs cupy and a CUDA device")
class TestCupyParity:
    """Cells on cupy differ from numpy's in at most 0.1% of the pixels (a smoothing/threshold tie may fall
    the other way in float32); the rows agree to 1e-6 relative where the cells are identical."""

    def test_grow_cells(self, synthetic: dict[str, Any]) -> None:
        cells = grow_cells(to_memory(synthetic["nuclei"], CUPY), synthetic["images"][1])
        assert type(cells).__module__.startswith("cupy")
        assert (to_numpy(cells) != synthetic["cells"]).mean() <= 1e-3

    def test_measure_compartments(self, synthetic: dict[str, Any]) -> None:
        nuclei, images = synthetic["nuclei"], synthetic["images"]
        expected = measure_compartments(nuclei, images, CHANNELS, cell_channel=2)
        result = measure_compartments(to_memory(nuclei, CUPY), images, CHANNELS, cell_channel=2)
        assert [row.keys() for row in result] == [row.keys() for row in expected]
        same_cells = (to_numpy(grow_cells(to_memory(nuclei, CUPY), images[1])) == synthetic["cells"]).all()
        for got, want in zip(result, expected, strict=True):
            for key, value in want.items():
                if key.startswith(("Cells_", "Cytoplasm_")) and not same_cells:
                    continue
                assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9, nan_ok=True), key
