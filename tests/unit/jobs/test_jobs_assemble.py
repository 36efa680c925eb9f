"""The plate's tables and heatmap: wells.csv in long format (one row per well and timepoint), the objects table,
both in pycytominer's names and as Parquet too, the plate map joined, Z' and SSMD, per-timepoint panels."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from openhcs_rules.demo.synthetic import generate_imagexpress_plate
from openhcs_rules.jobs.assemble import assemble_plate, well_rows
from openhcs_rules.jobs.discover import discover
from openhcs_rules.jobs.heatmap import heatmap_figure, panel_grid
from openhcs_rules.jobs.illumination import estimate_plate_illumination
from openhcs_rules.jobs.process_well import summarise_timepoints
from openhcs_rules.jobs.process_wells import process_wells
from openhcs_rules.plate.model import ImageKey, ImageStructure, PlateStructure, build_wells
from openhcs_rules_testkit.workflow import PIPELINE

WELLS = ["B02", "C03"]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def time_lapse(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """A processed 2-timepoint synthetic plate (2 wells x 2 sites), assembled; the generator's truth with it."""
    folder = tmp_path_factory.mktemp("time_lapse")
    made = generate_imagexpress_plate(
        folder / "plate", "tl", wells=WELLS, sites=2, channels=1, z_planes=1, timepoints=2, shape=(256, 256), seed=3
    )
    out = folder / "out"
    plate_json = out / "plate.json"
    illumination = out / "illumination.npz"
    estimate_plate_illumination(discover("tl", made["plate_dir"], plate_json), illumination, 8)
    process_wells(
        plate_json, "B02-C03", PIPELINE, out / "wells", out / "m.json", illumination, gpu="numpy", backend="disk"
    )
    platemap = folder / "platemap.csv"
    platemap.write_text("well,treatment,control\nB02,DMSO,negative\nC03,staurosporine,positive\n")
    assemble_plate(plate_json, out / "wells", out, backend="disk", platemap=platemap)
    return made, out


def test_wells_csv_has_one_row_per_well_and_timepoint(time_lapse):
    _, out = time_lapse
    rows = _rows(out / "wells.csv")
    wells = [(row["Metadata_Well"], row["Metadata_Timepoint"]) for row in rows]
    assert wells == [("B02", "1"), ("B02", "2"), ("C03", "1"), ("C03", "2")]
    assert all(row["Metadata_Sites"] == "2" and row["Metadata_MissingSites"] == "" for row in rows)


def test_counts_are_per_timepoint_not_summed_over_timepoints(time_lapse):
    made, out = time_lapse
    for row in _rows(out / "wells.csv"):
        truth = sum(made["counts_by_timepoint"][int(row["Metadata_Timepoint"])][row["Metadata_Well"]].values())
        found = int(row["Nuclei_Count"])
        assert int(row["Metadata_TrueCount"]) == truth, row
        assert abs(found - truth) <= max(2, 0.1 * truth), row  # a sum over both timepoints is ~2.15x the truth
        assert float(row["Nuclei_Count_PerSite"]) == pytest.approx(found / 2), row


def test_objects_csv_carries_each_objects_timepoint(time_lapse):
    _, out = time_lapse
    per_well_t = Counter((row["Metadata_Well"], row["Metadata_Timepoint"]) for row in _rows(out / "objects.csv"))
    wells = _rows(out / "wells.csv")
    assert per_well_t == {(row["Metadata_Well"], row["Metadata_Timepoint"]): int(row["Nuclei_Count"]) for row in wells}


def test_the_tables_carry_the_plate_map_and_their_parquet_twins_the_same_rows(time_lapse):
    import pyarrow.parquet as pq

    _, out = time_lapse
    for name in ("objects", "wells"):
        rows = _rows(out / f"{name}.csv")
        table = pq.read_table(out / f"{name}.parquet")
        assert table.column_names == list(rows[0])
        assert table.num_rows == len(rows)
        assert table.column("Metadata_Well").type == "string"  # a well name stays text in Parquet
        treatments = {(r["Metadata_Well"], r["Metadata_treatment"], r["Metadata_control"]) for r in rows}
        assert treatments == {("B02", "DMSO", "negative"), ("C03", "staurosporine", "positive")}
        features = [c for c in table.column_names if not c.startswith("Metadata_")]
        assert features == sorted(features) and all(c.startswith("Nuclei_") for c in features)
        metadata = table.column_names[: table.column_names.index(features[0])]
        assert all(c.startswith("Metadata_") for c in metadata)  # identifiers first, then features
    objects = pq.read_table(out / "objects.parquet")
    assert {"Metadata_Site", "Metadata_ObjectNumber", "Nuclei_AreaShape_Area", "Nuclei_Location_Center_X"} <= set(
        objects.column_names
    )
    wells = {(r["Metadata_Well"], r["Metadata_Timepoint"]): r for r in _rows(out / "wells.csv")}
    assert float(wells["B02", "1"]["Nuclei_Count_PerSite_PercentOfNegative"]) == pytest.approx(100.0)
    ratio = float(wells["C03", "2"]["Nuclei_Count_PerSite"]) / float(wells["B02", "2"]["Nuclei_Count_PerSite"])
    assert float(wells["C03", "2"]["Nuclei_Count_PerSite_PercentOfNegative"]) == pytest.approx(100 * ratio)
    quality = _rows(out / "assay_quality.csv")
    assert [q["Metadata_Timepoint"] for q in quality] == ["1", "2"]
    assert all(q["z_prime"] == "" and "fewer than 2" in q["note"] for q in quality)  # one control well each


def test_per_timepoint_rows_come_from_objects_csv_for_summaries_of_older_runs(time_lapse):
    """A summary.json written before per-timepoint summaries (a chunk rerun skips such wells) still works."""
    _, out = time_lapse
    plate = PlateStructure.load_json(out / "plate.json")
    summaries = {w: json.loads((out / "wells" / w / "summary.json").read_text()) for w in WELLS}
    old = {w: {k: v for k, v in s.items() if k != "timepoints"} for w, s in summaries.items()}
    expected = well_rows(plate, summaries, out / "wells")
    got = well_rows(plate, old, out / "wells")
    assert [(r["well"], r["t"], r["n_objects"]) for r in got] == [(r["well"], r["t"], r["n_objects"]) for r in expected]
    for a, b in zip(got, expected, strict=True):
        assert a["mean_area_px"] == pytest.approx(b["mean_area_px"])


def _gappy_plate() -> PlateStructure:
    """B02: sites 1 and 2 at t 1 and 2; C03: site 2 lost at t 2, and nothing at t 3 (B02 has t 3)."""
    keys = [("B02", s, t) for s in (1, 2) for t in (1, 2, 3)] + [("C03", 1, 1), ("C03", 2, 1), ("C03", 1, 2)]
    images = [ImageStructure(ImageKey(w, s, 1, 1, t), f"{w}_{s}_{t}.tif") for w, s, t in keys]
    return PlateStructure("gaps", "imagexpress", "/nowhere", 8, 12, [], build_wells(images))


def test_sites_missing_at_one_timepoint_count_at_that_timepoint_only():
    plate = _gappy_plate()
    objects = [{"site": 1, "t": 1, "area_px": 10.0}] * 4 + [{"site": 2, "t": 1, "area_px": 20.0}] * 2
    objects += [{"site": 1, "t": 2, "area_px": 30.0}] * 5
    rows = well_rows(plate, {"C03": {"timepoints": summarise_timepoints(objects, plate, "C03")}})
    got = [(r["t"], r["n_sites"], r["missing_sites"], r["n_objects"], r["objects_per_site"]) for r in rows]
    assert got == [(1, 2, "", 6, 3.0), (2, 1, "2", 5, 5.0), (3, 0, "1 2", 0, None)]  # no sites at t 3: blank
    assert [r["mean_area_px"] for r in rows] == [pytest.approx(40 / 3), 30.0, None]
    panels = [ax for ax in heatmap_figure(plate, rows).axes if ax.images]
    assert np.isnan(np.ma.filled(panels[2].images[0].get_array(), np.nan)).all()  # t 3: blank, not zero


def test_a_single_timepoint_plate_has_the_t_column_too(tmp_path):
    made = generate_imagexpress_plate(
        tmp_path / "plate", "one", wells=["B02"], sites=1, channels=1, z_planes=1, shape=(128, 128), seed=1
    )
    plate_json = tmp_path / "out" / "plate.json"
    illumination = tmp_path / "illumination.npz"
    estimate_plate_illumination(discover("one", made["plate_dir"], plate_json), illumination, 8)
    process_wells(
        plate_json, "B02", PIPELINE, tmp_path / "out" / "wells", tmp_path / "m.json", illumination, gpu="numpy"
    )
    rows = well_rows(PlateStructure.load_json(plate_json), {"B02": _summary(tmp_path / "out" / "wells" / "B02")})
    assert [(r["well"], r["t"]) for r in rows] == [("B02", 1)]
    assert rows[0]["true_count"] == sum(made["counts_by_timepoint"][1]["B02"].values())


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


# -- the heatmap ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("panels", "grid"), [(1, (1, 1)), (2, (1, 2)), (3, (1, 3)), (4, (2, 2)), (20, (4, 5))])
def test_panels_wrap_into_rows(panels, grid):
    assert panel_grid(panels) == grid


def _plate(rows: int = 8, columns: int = 12) -> PlateStructure:
    return PlateStructure("p", "imagexpress", "/nowhere", rows, columns, [], {})


def _fake_rows(wells: list[str], timepoints: int) -> list[dict]:
    return [
        {"well": w, "t": t, "objects_per_site": 10.0 * t + i}
        for i, w in enumerate(wells)
        for t in range(1, timepoints + 1)
    ]


@pytest.mark.parametrize("timepoints", [1, 2, 20])
def test_heatmap_has_one_panel_per_timepoint_on_one_colour_scale(timepoints):
    figure = heatmap_figure(_plate(), _fake_rows(["B02", "C03", "H12"], timepoints))
    panels = [ax for ax in figure.axes if ax.images]
    assert [ax.get_title() for ax in panels] == [f"t = {t}" for t in range(1, timepoints + 1)]
    assert {ax.images[0].get_clim() for ax in panels} == {(10.0, 10.0 * timepoints + 2)}  # shared scale
    width, height = figure.get_size_inches() * figure.dpi
    assert width <= 2000 and height <= 1600  # readable, not a poster
    first = np.ma.filled(panels[0].images[0].get_array(), np.nan)
    assert np.isnan(first[0, 0]) and first[1, 1] == 10.0  # wells without data blank, B02 filled


def test_a_large_plate_with_many_timepoints_stays_bounded():
    figure = heatmap_figure(_plate(32, 48), _fake_rows(["A01", "AF48"], 20))
    width, height = figure.get_size_inches() * figure.dpi
    assert width <= 2000 and height <= 1600
    assert len([ax for ax in figure.axes if ax.images]) == 20


def test_a_well_without_objects_joins_the_plate_table_without_breaking_it(tmp_path):
    """An empty well's objects.csv has the fixed columns only (no row names the measurements); it used to make
    assembly fail with "different columns" (seen on a tiny synthetic plate with an empty field)."""
    from openhcs_rules.io.well_folder import WellFolder
    from openhcs_rules.jobs.assemble import write_objects_table
    from openhcs_rules.jobs.tables import OBJECT_RENAMES

    full = WellFolder(tmp_path / "wells" / "B02")
    empty = WellFolder(tmp_path / "wells" / "B03")
    for folder in (full, empty):
        folder.objects_csv.parent.mkdir(parents=True, exist_ok=True)
    row = {"site": 1, "z": 1, "t": 1, "label": 1, "area_px": 30, "centroid_y": 2.0, "centroid_x": 3.0}
    full.write_objects([{**row, "mean_intensity_DAPI": 5.0}], "p")
    empty.write_objects([], "p")
    (tmp_path / "both").mkdir()
    assert write_objects_table({"B02": full, "B03": empty}, tmp_path / "both") == 1
    header = next(iter(_rows(tmp_path / "both" / "objects.csv")))
    identity = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Z", "Metadata_Timepoint"]
    features = ["Nuclei_AreaShape_Area", "Nuclei_Intensity_MeanIntensity_DAPI", "Nuclei_Location_Center_X"]
    assert list(header) == [*identity, "Metadata_ObjectNumber", *features, "Nuclei_Location_Center_Y"]
    (tmp_path / "none").mkdir()
    assert write_objects_table({"B03": empty}, tmp_path / "none") == 0
    columns = (tmp_path / "none" / "objects.csv").read_text().splitlines()
    names = list(OBJECT_RENAMES.values())
    identity = [c for c in names if c.startswith("Metadata_")]
    assert [c.strip('"') for c in columns[0].split(",")] == identity + sorted(set(names) - set(identity))
    assert columns[1:] == []
