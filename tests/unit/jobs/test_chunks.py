"""Well chunks: how plates are split into jobs, and a chunk job that skips its finished wells."""

from __future__ import annotations

import json

import pytest

from openhcs_rules.demo.synthetic import generate_imagexpress_plate
from openhcs_rules.jobs.discover import discover
from openhcs_rules.jobs.illumination import estimate_plate_illumination
from openhcs_rules.jobs.process_wells import WellsFailed, process_wells
from openhcs_rules.plate.chunks import (
    AUTO_JOBS_PER_PLATE,
    AUTO_JOBS_PER_SCREEN,
    auto_jobs_per_plate,
    well_chunks,
    wells_in_chunk,
    wells_per_job,
)
from openhcs_rules.plate.naming import layout_for_well_count, well_name
from openhcs_rules_testkit.ngff import assert_valid_ngff_plate
from openhcs_rules_testkit.workflow import PIPELINE


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


@pytest.mark.parametrize(
    ("plates", "jobs"),
    [
        (1, 16),
        (10, 16),
        (100, 16),
        (250, 16),
        (251, 8),
        (500, 8),
        (501, 4),
        (1000, 4),
        (1001, 2),
        (2000, 2),
        (2001, 1),
        (100_000, 1),
    ],
)
def test_auto_gives_fewer_jobs_per_plate_only_to_screens_of_over_250_plates(plates, jobs):
    assert auto_jobs_per_plate(plates) == jobs
    assert plates * jobs <= max(AUTO_JOBS_PER_SCREEN, plates)  # the screen's well jobs: at most 4,000 (or 1 a plate)
    names = plate_wells(384)
    chunks = well_chunks(names, "auto", plates)
    assert len(chunks) == jobs and wells_per_job("auto", 384, plates) == 384 // jobs
    assert [w for group in chunks.values() for w in group] == names
    for name, group in chunks.items():
        assert wells_in_chunk(names, name) == group
    # an integer is the size whatever the screen
    assert wells_per_job(24, 384, plates) == 24 and len(well_chunks(names, 24, plates)) == 16


def test_auto_changes_a_screens_chunks_only_at_four_sizes():
    """Powers of two: growing a screen plate by plate changes every plate's chunks (and so reassembles every
    plate) only when it passes 250, 500, 1,000 and 2,000 plates."""
    changes = [n for n in range(2, 5001) if auto_jobs_per_plate(n) != auto_jobs_per_plate(n - 1)]
    assert changes == [251, 501, 1001, 2001]
    assert AUTO_JOBS_PER_PLATE == 16 and AUTO_JOBS_PER_SCREEN == 4000


def test_up_to_250_plates_auto_is_what_it_was_for_every_plate_size():
    for wells in (6, 24, 48, 96, 384, 1536):
        names = plate_wells(wells) if wells in (96, 384, 1536) else plate_wells(96)[:wells]
        assert well_chunks(names, "auto", 250) == well_chunks(names, "auto") == well_chunks(names, "auto", 1)
    assert len(well_chunks(plate_wells(1536), "auto", 1000)) == 4  # 384 wells a job
    assert len(well_chunks(plate_wells(96)[:3], "auto", 1000)) == 3  # never more jobs than wells, never empty


@pytest.mark.parametrize("plates", [0, -1, True, 2.5, "10"])
def test_a_screen_without_a_plate_count_is_refused(plates):
    with pytest.raises(ValueError, match="at least one plate"):
        auto_jobs_per_plate(plates)


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
        assert assert_valid_ngff_plate(out / "plate.ome.zarr") == {"wells": 3, "images": 3, "labels": 3}
        attributes[threshold] = [
            json.loads(path.read_text())["attributes"]
            for path in (field / "zarr.json", field / "labels" / "nuclei" / "zarr.json")
        ]
    assert attributes[1] == attributes[10**6]


def _leftovers(folder, names, content=b"half"):
    """Files and folders as a killed job (or another job) leaves them: a temp zarr folder has a chunk in it."""
    paths = [folder / name for name in names]
    for path in paths:
        if ".zarr." in path.name:
            (path / "0" / "0").mkdir(parents=True)
            (path / "0" / "0" / "c.0.0.0.0.0").write_bytes(content)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    return paths


def test_a_rerun_removes_the_temp_outputs_a_killed_job_left_and_nothing_else(tmp_path, plate):
    _, plate_json = plate
    wells = tmp_path / "out" / "wells"
    stale = _leftovers(
        wells / "B02", [".images.zarr.k1ll_d0x.tmp", ".objects.csv.abcd1234.tmp", ".summary.json.zz9_zz9z.tmp"]
    )
    kept = _leftovers(wells / "B02", [".images.zarr.backup", ".images.zarr.abc.tmp", "notes.images.zarr.abcd1234.tmp"])
    kept += _leftovers(wells / "B03", [".images.zarr.w0rk1ng_.tmp"])  # another well's job, writing right now
    _run(tmp_path, plate_json, "B02")
    assert [p.name for p in stale if p.exists()] == []
    assert all(p.read_bytes() == b"half" for p in kept if p.is_file())
    assert (wells / "B03" / ".images.zarr.w0rk1ng_.tmp" / "0" / "0" / "c.0.0.0.0.0").read_bytes() == b"half"
    expected = {"images.zarr", "objects.csv", "summary.json"} | {p.name for p in kept if p.parent.name == "B02"}
    assert {p.name for p in (wells / "B02").iterdir()} == expected

    clean = tmp_path / "clean"  # the outputs are those of a run that found nothing left over
    process_wells(
        plate_json, "B02", PIPELINE, clean, tmp_path / "m.json", tmp_path / "out" / "illumination.npz", gpu="numpy"
    )
    assert (wells / "B02" / "objects.csv").read_bytes() == (clean / "B02" / "objects.csv").read_bytes()
    assert sorted(p.name for p in (wells / "B02" / "images.zarr").rglob("*")) == sorted(
        p.name for p in (clean / "B02" / "images.zarr").rglob("*")
    )


def test_assembly_removes_the_temp_plate_a_killed_assembly_left(tmp_path, plate):
    from openhcs_rules.jobs.assemble import assemble_plate

    _, plate_json = plate
    _run(tmp_path, plate_json, "B02-C02")
    out = tmp_path / "out"
    stale = _leftovers(out, [".plate.ome.zarr.k1ll_d0x.tmp", ".wells.csv.abcd1234.tmp"])
    assemble_plate(plate_json, out / "wells", out, "zarr")
    assert [p.name for p in stale if p.exists()] == []
    assert assert_valid_ngff_plate(out / "plate.ome.zarr")["wells"] == 3
