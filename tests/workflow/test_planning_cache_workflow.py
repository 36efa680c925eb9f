"""Planning through the real Snakemake CLI with the fast paths of rules/common.smk.

The chunk names come from plate.json, read once per version of the file (plate/chunks.py PlateChunks), and
with wells_per_job: auto from the screen's number of plates; the {plate} wildcard matches any plate-shaped
name, and a name that is not one of the screen's plates fails with the screen's plates named.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from openhcs_rules.plate.model import ChannelInfo, ImageKey, ImageStructure, PlateStructure, build_wells
from openhcs_rules_testkit.workflow import PIPELINE, snakemake, write_config

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


def _discovered_screen(folder: Path, plates: int, wells: list[str]) -> Path:
    """A screen of ``plates`` disk plates whose plate.json discovery has already written (no pixels)."""
    lines = ["plates:"]
    for index in range(plates):
        name = f"plate{index:03d}"
        data = folder / "data" / name
        data.mkdir(parents=True)
        images = [ImageStructure(ImageKey(well, 1, 1, 1, 1), f"{name}_{well}.tif") for well in wells]
        plate = PlateStructure(
            name, "imagexpress", str(data), 8, 12, [ChannelInfo(1, "DAPI")], build_wells(images), (64, 64), "uint16"
        )
        plate.save_json(folder / "results" / name / "plate.json")
        lines.append(f"  {name}: {{source: disk, path: {data}}}")
    config = folder / "screen.yaml"
    config.write_text("\n".join([*lines, f"pipeline: {PIPELINE}", "wells_per_job: auto"]) + "\n")
    return config


def test_auto_gives_the_plates_of_a_screen_of_over_250_plates_8_jobs_each(tmp_path):
    """common.smk tells wells_per_job: auto the screen's number of plates (plate/chunks.py auto_jobs_per_plate):
    in a screen of 251 plates of 16 wells, a plate is 8 well jobs of 2 wells each, not 16 of 1."""
    wells = [f"A{column:02d}" for column in range(1, 13)] + ["B01", "B02", "B03", "B04"]
    config = _discovered_screen(tmp_path, 251, wells)
    done = snakemake(tmp_path, config, "-n", "results/plate250/wells.csv")  # one plate's plan, the screen's config
    assert done.returncode == 0, done.stderr[-3000:]
    planned = set(re.findall(r"results/plate250/chunks/([A-Z0-9-]+)\.json", done.stdout))
    assert planned == {"A01-A02", "A03-A04", "A05-A06", "A07-A08", "A09-A10", "A11-A12", "B01-B02", "B03-B04"}
