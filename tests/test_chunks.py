"""Well chunks: how plates are split into jobs, and a chunk job that skips its finished wells."""

from __future__ import annotations

import json

import pytest
from workflow_helpers import PIPELINE

from openhcs_rules.demo.synthetic import generate_imagexpress_plate
from openhcs_rules.jobs.discover import discover
from openhcs_rules.jobs.illumination import estimate_plate_illumination
from openhcs_rules.jobs.process_wells import WellsFailed, process_wells
from openhcs_rules.plate.chunks import AUTO_JOBS_PER_PLATE, well_chunks, wells_in_chunk, wells_per_job
from openhcs_rules.plate.naming import layout_for_well_count, well_name


def plate_wells(count: int) -> list[str]:
    rows, columns = layout_for_well_count(count)
    return [well_name(r, c) for r in range(rows) for c in range(columns)]


@pytest.mark.parametrize(("wells", "size"), [(4, 1), (16, 1), (17, 2), (96, 6), (384, 24), (1536, 96)])
def test_auto_splits_a_plate_into_at_most_16_jobs(wells, size):
    names = plate_wells(wells) if wells in (96, 384, 1536) else plate_wells(96)[:wells]
    chunks = well_chunks(names, "auto")
    assert wells_per_job("auto", wells) == size
    assert len(chunks) <= AUTO_JOBS_PER_PLATE
    assert [w for group in chunks.values() for w in group] == names  # every well once, in plate order
    for name, group in chunks.items():
        assert wells_in_chunk(names, name) == group  # the name alone gives the wells back


def test_chunk_names_and_a_fixed_size():
    names = ["B02", "B03", "C02", "C03", "D02"]
    assert list(well_chunks(names, 2)) == ["B02-B03", "C02-C03", "D02"]
    assert list(well_chunks(names, 1)) == names
    assert list(well_chunks(names, 10)) == ["B02-D02"]


@pytest.mark.parametrize(
    ("chunk", "error"),
    [("B02-X99", KeyError), ("C03-B02", ValueError), ("B02_B03", ValueError), ("../B02", ValueError)],
)
def test_bad_chunk_names_are_clear_errors(chunk, error):
    with pytest.raises(error):
        wells_in_chunk(["B02", "B03", "C02", "C03"], chunk)


@pytest.mark.parametrize("setting", [0, -1, "4", True, 2.5])
def test_bad_sizes_are_refused(setting):
    with pytest.raises(ValueError):
        wells_per_job(setting, 10)


@pytest.fixture
def plate(tmp_path):
    folder = tmp_path / "plate"
    wells = ["B02", "B03", "C02"]
    generate_imagexpress_plate(folder, "p", wells=wells, sites=1, channels=1, z_planes=1, shape=(128, 128), seed=3)
    plate_json = tmp_path / "out" / "plate.json"
    discover("p", folder, plate_json)
    estimate_plate_illumination(discover("p", folder, plate_json), tmp_path / "out" / "illumination.npz", 8)
    return folder, plate_json


def _run(tmp_path, plate_json, chunk, pipeline=PIPELINE):
    out = tmp_path / "out"
    return process_wells(
        plate_json,
        chunk,
        pipeline,
        out / "wells",
        out / "chunks" / f"{chunk}.json",
        out / "illumination.npz",
        gpu="numpy",
    )


def test_a_rerun_skips_finished_wells_and_a_changed_pipeline_redoes_them(tmp_path, plate, caplog):
    _, plate_json = plate
    manifest = _run(tmp_path, plate_json, "B02-C02")
    assert manifest["wells"] == ["B02", "B03", "C02"]
    written = json.loads((tmp_path / "out" / "chunks" / "B02-C02.json").read_text())
    assert written["summaries"]["B03"]["n_objects"] == manifest["summaries"]["B03"]["n_objects"] > 0
    summary = tmp_path / "out" / "wells" / "B03" / "summary.json"
    before = summary.stat().st_mtime_ns

    caplog.set_level("INFO")
    _run(tmp_path, plate_json, "B02-C02")
    assert summary.stat().st_mtime_ns == before
    assert caplog.text.count("already done") == 3

    changed = tmp_path / "pipeline.py"
    changed.write_text(PIPELINE.read_text().replace('"sigma": 0.5', '"sigma": 0.7'))
    _run(tmp_path, plate_json, "B02-C02", changed)
    assert summary.stat().st_mtime_ns != before  # new inputs, new run key: processed again


def test_a_failed_well_is_named_the_others_are_kept_and_no_manifest_is_written(tmp_path, plate):
    folder, plate_json = plate
    tiff = next(folder.rglob("p_B03_s1_w1*.tif"), None) or next(p for p in folder.rglob("*B03*") if p.is_file())
    tiff.write_bytes(tiff.read_bytes()[:200])
    with pytest.raises(WellsFailed) as failed:
        _run(tmp_path, plate_json, "B02-C02")
    message = str(failed.value)
    assert "1 of 3 wells" in message and "B03:" in message and "rerun" in message
    wells = tmp_path / "out" / "wells"
    assert (wells / "B02" / "summary.json").exists() and (wells / "C02" / "summary.json").exists()
    assert not (wells / "B03" / "summary.json").exists()
    assert not (tmp_path / "out" / "chunks" / "B02-C02.json").exists()


def test_big_jobs_write_field_metadata_themselves_and_the_plate_is_the_same(tmp_path, plate, monkeypatch):
    from openhcs_rules.io.zarr_plate import has_field_metadata
    from openhcs_rules.jobs import process_wells as job
    from openhcs_rules.jobs.assemble import assemble_plate

    _, plate_json = plate
    attributes = {}
    for threshold in (1, 10**6):  # every job writes field metadata / none does (assembly writes it)
        monkeypatch.setattr(job, "FIELD_METADATA_MIN_FIELDS", threshold)
        out = tmp_path / f"out{threshold}"
        job.process_wells(
            plate_json,
            "B02-C02",
            PIPELINE,
            out / "wells",
            out / "m.json",
            tmp_path / "out" / "illumination.npz",
            gpu="numpy",
        )
        assert has_field_metadata(out / "wells" / "B03" / "images.zarr" / "0") == (threshold == 1)
        assemble_plate(plate_json, out / "wells", out, "zarr")
        field = out / "plate.ome.zarr" / "B" / "3" / "0"
        assert has_field_metadata(field)
        attributes[threshold] = [
            json.loads(path.read_text())["attributes"]
            for path in (field / "zarr.json", field / "labels" / "nuclei" / "zarr.json")
        ]
    assert attributes[1] == attributes[10**6]
