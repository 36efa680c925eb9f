"""Planning through the real Snakemake CLI with the fast paths of rules/common.smk.

The chunk names come from plate.json, read once per version of the file (plate/chunks.py PlateChunks); the
{plate} wildcard matches any plate-shaped name, and a name that is not one of the screen's plates fails with
the screen's plates named.
"""

from __future__ import annotations

import csv

import pytest

from openhcs_rules_testkit.workflow import snakemake, write_config

pytestmark = pytest.mark.workflow


def _screen(wells: list[str]) -> dict:
    spec = {"wells": wells, "sites": 1, "channels": 1, "z_planes": 1, "size": 96}
    return {"plates": {"demo": {"source": "synthetic", "synthetic": spec}}, "wells_per_job": 2}


def test_a_target_of_no_plate_in_the_screen_names_the_screens_plates(tmp_path):
    config = write_config(tmp_path, _screen(["B02"]))
    done = snakemake(tmp_path, config, "-n", "results/other/wells.csv")
    assert done.returncode != 0
    assert "'other' is not a plate of this screen (its plates: demo)" in done.stdout + done.stderr


def test_plate_json_rewritten_by_rediscovery_in_the_same_run_gives_the_new_chunks(tmp_path):
    config = write_config(tmp_path, _screen(["B02", "B03", "C02"]))
    first = snakemake(tmp_path, config)
    assert first.returncode == 0, first.stderr[-3000:]
    chunks = tmp_path / "results" / "demo" / "chunks"
    assert sorted(p.name for p in chunks.iterdir()) == ["B02-B03.json", "C02.json"]
    # a fourth well: the plate is generated and discovered again in this run, after the run has read the
    # old plate.json at start (the stale-chunk check); its plan must come from the new plate.json
    config = write_config(tmp_path, _screen(["B02", "B03", "C02", "C03"]))
    second = snakemake(tmp_path, config)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "C02-C03.json" in {p.name for p in chunks.iterdir()}
    with (tmp_path / "results" / "demo" / "wells.csv").open() as handle:
        wells = sorted(row["Metadata_Well"] for row in csv.DictReader(handle))
    assert wells == ["B02", "B03", "C02", "C03"]
