"""A user's Snakemake habits on this workflow: --summary, deleting a well by hand, --delete-all-output."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from openhcs_rules.jobs.process_wells import stale_manifest
from openhcs_rules_testkit.workflow import snakemake, write_config

SCREEN = {
    "plates": {
        "demo": {
            "source": "synthetic",
            "synthetic": {"wells": ["B02", "B03", "C02"], "sites": 1, "channels": 1, "z_planes": 1, "size": 96},
        }
    },
    "wells_per_job": 2,
}


def test_stale_manifest_is_removed_only_when_a_well_is_incomplete(tmp_path):
    manifest, wells = tmp_path / "chunks" / "B02-B03.json", tmp_path / "wells"
    manifest.parent.mkdir()
    manifest.write_text("{}")
    for well in ("B02", "B03"):
        (wells / well / "images.zarr").mkdir(parents=True)
        (wells / well / "summary.json").write_text(json.dumps({"run_key": "k"}))
    assert stale_manifest(manifest, wells, ["B02", "B03"], "zarr") == [] and manifest.exists()
    (wells / "B03" / "summary.json").unlink()
    assert stale_manifest(manifest, wells, ["B02", "B03"], "zarr") == ["B03"] and not manifest.exists()
    assert stale_manifest(manifest, wells, ["B02", "B03"], "zarr") == []  # no manifest: nothing to say


@pytest.mark.workflow
def test_summary_deleted_well_and_delete_all_output(tmp_path):
    config = write_config(tmp_path, SCREEN)
    out = tmp_path / "results" / "demo"
    first = snakemake(tmp_path, config)
    assert first.returncode == 0, first.stderr

    summary = snakemake(tmp_path, config, "--summary")
    assert summary.returncode == 0, summary.stderr
    listed = {line.split("\t")[0] for line in summary.stdout.splitlines()}
    assert {"results/demo/wells", "results/demo/illumination.npz"} <= listed, summary.stdout

    # a well folder deleted by hand: the plan says so, its chunk reruns (only that well) and the plate reassembles
    shutil.rmtree(out / "wells" / "B03")
    planned = snakemake(tmp_path, config, "-n")
    assert planned.returncode == 0, planned.stderr
    assert "process_wells" in planned.stdout and "assemble_plate" in planned.stdout, planned.stdout
    assert "B03 missing or incomplete" in planned.stderr + planned.stdout
    rerun = snakemake(tmp_path, config)
    assert rerun.returncode == 0, rerun.stderr
    chunk_log = (tmp_path / "logs" / "demo" / "chunks" / "B02-B03.log").read_text()
    assert "B02: already done" in chunk_log and "B03:" in chunk_log
    assert (out / "wells" / "B03" / "summary.json").exists()
    with open(out / "wells.csv", newline="") as handle:
        assert {row["Metadata_Well"] for row in csv.DictReader(handle)} >= {"B02", "B03", "C02"}
    assert "Nothing to be done" in snakemake(tmp_path, config, "-n").stdout

    # --delete-all-output removes the wells' pixel data and the flat field, also when discovery is out of date
    (out / "plate.json").unlink()
    deleted = snakemake(tmp_path, config, "--delete-all-output")
    assert deleted.returncode == 0, deleted.stderr
    assert not (out / "wells").exists() and not (out / "illumination.npz").exists()
    # left: the chunk manifests (their names come from plate.json); the next run finds their wells gone
    again = snakemake(tmp_path, config)
    assert again.returncode == 0, again.stderr
    assert (out / "wells" / "B03" / "summary.json").exists() and (out / "wells.csv").exists()
