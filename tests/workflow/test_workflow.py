"""The workflow through the real Snakemake CLI: planning, lint, fixtures end to end, and bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from openhcs_rules.formats.ome_zarr import OmeZarrHandler
from openhcs_rules.plate.model import PlateStructure
from openhcs_rules_testkit.ngff import assert_valid_ngff_plate
from openhcs_rules_testkit.workflow import REPO, snakemake, write_config

pytestmark = pytest.mark.workflow

FIXTURE_PLATES = {
    "p3420": "imagexpress_exported/9987_Plate_3420",
    "p3434": "imagexpress_exported/9987_Plate_3434",
    "p3435": "imagexpress_exported/9987_Plate_3435",
    "direct": "imagexpress_direct_singlechannel",
    "phenix": "opera_phenix_v5",
}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_dry_run_plans_with_no_data_server_viewer_or_gpu(tmp_path):
    config = write_config(tmp_path, {"plates": {"demo": {"source": "synthetic"}}})
    done = snakemake(tmp_path, config, "-n")
    assert done.returncode == 0, done.stderr
    assert "generate_synthetic_plate" in done.stdout and "discover" in done.stdout
    assert not (tmp_path / "results").exists()


def test_lint_reports_nothing():
    done = snakemake(REPO, REPO / "config" / "config.yaml", "--lint")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Lints for rule" not in done.stdout + done.stderr


def test_every_fixture_plate_is_processed_end_to_end(tmp_path, fixtures_dir):
    plates = {name: {"source": "disk", "path": str(fixtures_dir / rel)} for name, rel in FIXTURE_PLATES.items()}
    config = write_config(tmp_path, {"plates": plates})
    done = snakemake(tmp_path, config)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in FIXTURE_PLATES:
        out = tmp_path / "results" / name
        structure = PlateStructure.load_json(out / "plate.json")
        wells = _rows(out / "wells.csv")
        # long format: one row per well and timepoint (9987_Plate_3435 has two), wells in plate order
        expected = [(well, str(t)) for well in structure.well_names for t in structure.timepoints]
        assert [(row["Metadata_Well"], row["Metadata_Timepoint"]) for row in wells] == expected, name
        assert all(int(row["Nuclei_Count"]) > 0 for row in wells), name
        for row in wells:  # per timepoint: a well's sites at that timepoint, not all timepoints added
            assert float(row["Nuclei_Count_PerSite"]) == pytest.approx(
                int(row["Nuclei_Count"]) / int(row["Metadata_Sites"])
            )
            assert int(row["Metadata_Sites"]) == len(structure.wells[row["Metadata_Well"]].sites), name
        objects = _rows(out / "objects.csv")
        assert len(objects) == sum(int(row["Nuclei_Count"]) for row in wells)
        assert (out / "heatmap.png").stat().st_size > 1000
        # the OME-Zarr plate reads back with the same wells, sites and channel names
        zarr_plate = OmeZarrHandler().parse(out / "plate.ome.zarr")
        assert zarr_plate.well_names == structure.well_names
        assert zarr_plate.sites == structure.sites
        assert [c.name for c in zarr_plate.channels] == [structure.channel(i).name for i in structure.channel_indices]
        assert assert_valid_ngff_plate(out / "plate.ome.zarr")["wells"] == len(structure.well_names)  # strict NGFF
    # inputs are never written to
    assert not any(p.name.startswith(".") and p.name.endswith(".tmp") for p in fixtures_dir.rglob("*"))


def test_bad_config_stops_before_any_job(tmp_path):
    config = write_config(tmp_path, {"plates": {"demo": {"sorce": "synthetic"}}})
    done = snakemake(tmp_path, config)
    assert done.returncode != 0
    assert "unknown key 'plates.demo.sorce'. Did you mean 'source'?" in done.stderr
    assert not (tmp_path / "results").exists()


def test_unknown_pipeline_function_fails_naming_file_and_line(tmp_path, fixtures_dir):
    pipeline = tmp_path / "bad_pipeline.py"
    pipeline.write_text(
        "from openhcs_rules.pipeline import Pipeline, Step\n\n"
        "pipeline = Pipeline(name='x', steps=[Step(func='segment_nucleus')])\n"
    )
    plates = {"p3420": {"source": "disk", "path": str(fixtures_dir / FIXTURE_PLATES["p3420"])}}
    config = write_config(tmp_path, {"plates": plates, "pipeline": str(pipeline)})
    done = snakemake(tmp_path, config)
    assert done.returncode != 0
    message = "bad_pipeline.py:3: unknown function 'segment_nucleus'. Did you mean 'segment_nuclei'?"
    assert message in done.stderr
    assert not (tmp_path / "results").exists()  # stopped before any job

    from openhcs_rules.errors import PipelineError
    from openhcs_rules.jobs.discover import discover
    from openhcs_rules.jobs.process_wells import process_wells

    discover("p3420", plates["p3420"]["path"], tmp_path / "plate.json")
    with pytest.raises(PipelineError, match="segment_nucleus"):  # the job itself refuses it too
        process_wells(tmp_path / "plate.json", "B02", pipeline, tmp_path / "w", tmp_path / "m.json", gpu="numpy")
    assert not (tmp_path / "w" / "B02" / "summary.json").exists()


def test_folder_of_no_known_format_names_the_folder(tmp_path):
    folder = tmp_path / "not_a_plate"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    config = write_config(tmp_path, {"plates": {"x": {"source": "disk", "path": str(folder)}}})
    done = snakemake(tmp_path, config)
    assert done.returncode != 0
    log = (tmp_path / "logs" / "x" / "discover.log").read_text()
    assert f"{folder}" in log and "is not a plate folder of any supported format" in log


@pytest.mark.parametrize(("wells_per_job", "failed_job"), [(1, "B03"), (2, "B02-B03")])
def test_corrupt_tiff_fails_its_well_only_and_a_rerun_redoes_only_that_well(
    tmp_path, fixtures_dir, wells_per_job, failed_job
):
    plate = tmp_path / "plate"
    shutil.copytree(fixtures_dir / FIXTURE_PLATES["p3435"], plate)
    bad = plate / "TimePoint_1" / "9987_B03_s2_w1.TIF"
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[: len(good_bytes) // 2])
    config = write_config(
        tmp_path, {"plates": {"p": {"source": "disk", "path": str(plate)}}, "wells_per_job": wells_per_job}
    )

    done = snakemake(tmp_path, config, "--keep-going")
    assert done.returncode != 0
    wells = tmp_path / "results" / "p" / "wells"
    assert (wells / "B02" / "summary.json").exists()
    assert not (wells / "B03").exists() or not any((wells / "B03").iterdir())  # nothing that looks complete
    assert not (tmp_path / "results" / "p" / "wells.csv").exists()
    assert not (tmp_path / "results" / "p" / "chunks" / f"{failed_job}.json").exists()
    log = (tmp_path / "logs" / "p" / "chunks" / f"{failed_job}.log").read_text()
    assert "9987_B03_s2_w1.TIF" in log and "truncated or corrupt" in log
    assert "1 of" in log and "B03: " in log  # the job names its failed well(s)

    b02_summary = (wells / "B02" / "summary.json").read_text()
    b02_mtime = (wells / "B02" / "summary.json").stat().st_mtime_ns
    bad.write_bytes(good_bytes)  # the user restores the file
    done = snakemake(tmp_path, config)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (wells / "B02" / "summary.json").stat().st_mtime_ns == b02_mtime  # not redone
    assert (wells / "B02" / "summary.json").read_text() == b02_summary
    if wells_per_job == 2:  # B02 shares the rerun job with B03 and is skipped inside it
        assert "B02: already done" in (tmp_path / "logs" / "p" / "chunks" / f"{failed_job}.log").read_text()
    rows = _rows(tmp_path / "results" / "p" / "wells.csv")
    assert [(row["Metadata_Well"], row["Metadata_Timepoint"]) for row in rows] == [
        ("B02", "1"),
        ("B02", "2"),
        ("B03", "1"),
        ("B03", "2"),
    ]


def test_well_with_missing_sites_is_processed_and_reported(tmp_path, fixtures_dir):
    plate = tmp_path / "plate"
    shutil.copytree(fixtures_dir / FIXTURE_PLATES["p3435"], plate)
    for path in plate.rglob("9987_B03_s2_*"):
        path.unlink()
    config = write_config(tmp_path, {"plates": {"p": {"source": "disk", "path": str(plate)}}})
    done = snakemake(tmp_path, config)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {
        (row["Metadata_Well"], row["Metadata_Timepoint"]): row
        for row in _rows(tmp_path / "results" / "p" / "wells.csv")
    }
    assert len(rows) == 4  # B02 and B03 at timepoints 1 and 2
    for t in ("1", "2"):  # the site is gone at both timepoints
        assert rows["B03", t]["Metadata_MissingSites"] == "2" and rows["B02", t]["Metadata_MissingSites"] == ""
        assert rows["B03", t]["Metadata_Sites"] == "1" and rows["B02", t]["Metadata_Sites"] == "2"
        assert float(rows["B03", t]["Nuclei_Count_PerSite"]) == int(rows["B03", t]["Nuclei_Count"])
    structure = json.loads((tmp_path / "results" / "p" / "plate.json").read_text())
    assert any("B03" in warning and "site" in warning for warning in structure["warnings"])
