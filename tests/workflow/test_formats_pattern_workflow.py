"""A pattern-format plate through the real workflow: the configured expression reaches discovery through the
rule, quoted. (The pattern format itself, in process: tests/unit/formats/test_formats_pattern.py.)
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from openhcs_rules.demo.synthetic import generate_imagexpress_plate
from openhcs_rules_testkit.workflow import snakemake, write_config


@pytest.mark.workflow
def test_a_pattern_plate_runs_through_the_workflow_like_the_same_plate_in_its_own_format(tmp_path: Path) -> None:
    """The same images, once as an ImageXpress plate and once renamed the way a Cytation export names them,
    give the same counts: the regular expression reaches discovery through the rule, quoted."""
    original = tmp_path / "ix"
    generate_imagexpress_plate(
        original, plate_name="ix", wells=["B02", "C03"], sites=2, channels=2, z_planes=1, shape=(128, 128), seed=4
    )
    renamed = tmp_path / "cytation export"
    renamed.mkdir()
    for path in (original / "TimePoint_1").glob("*.TIF"):
        _, well, site, channel = path.stem.split("_")
        (renamed / f"{well}_{int(site[1:]):02d}_{'DAPI' if channel == 'w1' else 'GFP'}_001.tif").write_bytes(
            path.read_bytes()
        )
    pattern = r"(?P<well>[A-P]\d{2})_(?P<site>\d{2})_(?P<channel>[A-Za-z0-9]+)_\d{3}\.tif"
    plates = {
        "ix": {"source": "disk", "path": str(original)},
        "cyt": {"source": "disk", "path": str(renamed), "format": "pattern", "pattern": pattern},
    }
    done = snakemake(tmp_path, write_config(tmp_path, {"plates": plates}))
    assert done.returncode == 0, done.stderr[-3000:]
    counts = {}
    for plate in plates:
        with (tmp_path / "results" / plate / "wells.csv").open() as handle:
            counts[plate] = {row["Metadata_Well"]: row["Nuclei_Count"] for row in csv.DictReader(handle)}
    assert counts["cyt"] == counts["ix"] and set(counts["ix"]) == {"B02", "C03"}
