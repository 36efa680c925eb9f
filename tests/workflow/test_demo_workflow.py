"""The bundled demo screen end to end: generation, counts against the known truth, report, OME-Zarr re-input."""

from __future__ import annotations

import csv

import pytest

from openhcs_rules.formats.registry import discover_plate, read_plane
from openhcs_rules_testkit.ngff import assert_valid_ngff_plate
from openhcs_rules_testkit.workflow import snakemake, write_config

pytestmark = pytest.mark.workflow

DEMO = {"wells": ["B02", "C03"], "sites": 2, "channels": 2, "z_planes": 3, "size": 512, "seed": 3}


def _rows(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    config = write_config(folder, {"plates": {"demo": {"source": "synthetic", "synthetic": DEMO}}})
    done = snakemake(folder, config)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, config


def test_counts_match_the_known_truth(demo_run):
    folder, _ = demo_run
    rows = _rows(folder / "results" / "demo" / "wells.csv")
    assert [(row["well"], row["t"]) for row in rows] == [(well, "1") for well in DEMO["wells"]]  # long format
    for row in rows:
        truth, found = int(row["true_count"]), int(row["n_objects"])
        assert abs(found - truth) <= max(2, 0.08 * truth), row


def test_objects_table_has_one_row_per_object_with_measurements(demo_run):
    folder, _ = demo_run
    objects = _rows(folder / "results" / "demo" / "objects.csv")
    wells = _rows(folder / "results" / "demo" / "wells.csv")
    assert len(objects) == sum(int(row["n_objects"]) for row in wells)
    assert {"area_px", "centroid_y", "centroid_x", "mean_intensity_DAPI"} <= set(objects[0])
    assert all(float(row["area_px"]) > 0 for row in objects)


def test_report_contains_the_heatmap(demo_run):
    folder, config = demo_run
    done = snakemake(folder, config, "--report", "report.zip")
    assert done.returncode == 0, done.stderr[-3000:]
    import zipfile

    names = zipfile.ZipFile(folder / "report.zip").namelist()
    assert any(name.endswith("heatmap.png") for name in names), names


def test_output_plate_is_a_valid_input_plate(demo_run):
    """Our OME-Zarr output reads back through format detection with the processed pixels."""
    import zarr

    folder, _ = demo_run
    path = folder / "results" / "demo" / "plate.ome.zarr"
    plate = discover_plate(path)
    assert plate.format == "ome_zarr"
    assert plate.well_names == DEMO["wells"] and plate.z_planes == [1]  # max projection collapsed z
    image = next(i for i in plate.images() if i.key.well == "C03" and i.key.site == 2 and i.key.channel == 2)
    expected = zarr.open_array(str(path / "C" / "3" / "1" / "0"), mode="r")[0, 1, 0]
    assert (read_plane(plate, image) == expected).all()
    assert assert_valid_ngff_plate(path) == {"wells": 2, "images": 4, "labels": 4}  # strict NGFF 0.5 too


def test_an_ome_zarr_plate_runs_through_the_same_rules(demo_run, tmp_path):
    folder, _ = demo_run
    source = folder / "results" / "demo" / "plate.ome.zarr"
    config = write_config(tmp_path, {"plates": {"again": {"source": "disk", "path": str(source)}}})
    done = snakemake(tmp_path, config)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(tmp_path / "results" / "again" / "wells.csv")
    assert [row["well"] for row in rows] == DEMO["wells"] and all(int(r["n_objects"]) > 0 for r in rows)
