"""Which OMERO object a result path describes (plate, well or field image)."""

from __future__ import annotations

import pytest

from openhcs_rules.omero.annotations import Target, is_result_file, target_for_path


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("wells.csv", Target("plate")),
        ("objects.csv", Target("plate")),
        ("summary.json", Target("plate")),
        ("B03/summary.json", Target("well", "B03")),
        ("wells/b3/objects.csv", Target("well", "B03")),
        ("B03_counts.tsv", Target("well", "B03")),
        ("AF48/summary.json", Target("well", "AF48")),
        ("B03/B03_s002_cells.tsv", Target("image", "B03", 2)),
        ("AA12_s001.json", Target("image", "AA12", 1)),
        ("plate_42/notes.txt", Target("plate")),
        ("AG01/x.csv", Target("plate")),  # no row AG on any plate
        ("B49/x.csv", Target("plate")),  # no column 49
    ],
)
def test_target_for_path(path: str, target: Target) -> None:
    assert target_for_path(path) == target


def test_result_suffixes() -> None:
    assert all(is_result_file(n) for n in ["a.json", "b.CSV", "c.tsv", "d.txt"])
    assert not any(is_result_file(n) for n in ["heatmap.png", "images.zarr", "x.tif"])
