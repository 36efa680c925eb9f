"""Z'-factor, SSMD and percent of negative control, against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from openhcs_rules.jobs.assay_quality import add_percent_of_negative, assay_quality, ssmd, z_prime
from openhcs_rules.plate.platemap import read_platemap


def test_z_prime_and_ssmd_match_their_definitions() -> None:
    positive, negative = [10.0, 12.0, 14.0], [100.0, 104.0, 96.0]
    sd_p, sd_n = 2.0, 4.0  # sample standard deviations
    assert z_prime(positive, negative) == pytest.approx(1 - 3 * (sd_p + sd_n) / 88.0)
    assert ssmd(positive, negative) == pytest.approx((12.0 - 100.0) / math.sqrt(sd_p**2 + sd_n**2))
    assert z_prime([1.0], negative) is None and ssmd(positive, [1.0]) is None  # too few wells
    assert z_prime([5.0, 5.0], [5.0, 5.0]) is None and ssmd([5.0, 5.0], [5.0, 5.0]) is None


def rows(values: dict[str, float], t: int = 1) -> list[dict]:
    return [
        {"Metadata_Plate": "p", "Metadata_Well": well, "Metadata_Timepoint": t, "Nuclei_Count_PerSite": value}
        for well, value in values.items()
    ]


def test_per_timepoint_quality_and_normalisation_from_a_plate_map(tmp_path: Path) -> None:
    path = tmp_path / "map.csv"
    path.write_text("well,control\nA01,negative\nA02,negative\nB01,positive\nB02,positive\nC01,\n")
    platemap = read_platemap(path)
    table = rows({"A01": 100, "A02": 110, "B01": 10, "B02": 14, "C01": 52.5}) + rows(
        {"A01": 90, "A02": 90, "B01": 80, "B02": 100, "C01": 45}, t=2
    )
    quality = assay_quality(table, platemap)
    assert [q["Metadata_Timepoint"] for q in quality] == [1, 2]
    first = quality[0]
    assert (first["n_positive"], first["n_negative"]) == (2, 2)
    assert first["z_prime"] == pytest.approx(z_prime([10, 14], [100, 110]))
    assert first["note"] == ""
    assert quality[1]["z_prime"] == pytest.approx(z_prime([80, 100], [90, 90]))
    add_percent_of_negative(table, platemap, "Nuclei_Count_PerSite")
    assert table[4]["Nuclei_Count_PerSite_PercentOfNegative"] == pytest.approx(50.0)  # C01 at t=1: 52.5 / 105
    assert table[9]["Nuclei_Count_PerSite_PercentOfNegative"] == pytest.approx(50.0)  # C01 at t=2: 45 / 90


def test_without_controls_every_figure_is_empty_and_says_why(tmp_path: Path) -> None:
    table = rows({"A01": 1.0, "A02": 2.0})
    no_map = assay_quality(table, None)
    assert no_map[0]["z_prime"] is None and "no plate map" in no_map[0]["note"]
    path = tmp_path / "map.csv"
    path.write_text("well,control\nA01,negative\nA02,positive\n")
    one_each = assay_quality(table, read_platemap(path))
    assert one_each[0]["z_prime"] is None and "fewer than 2 positive and negative" in one_each[0]["note"]
    add_percent_of_negative(table, None, "Nuclei_Count_PerSite")
    assert all(row["Nuclei_Count_PerSite_PercentOfNegative"] is None for row in table)
    missing = assay_quality(table, read_platemap(path), feature="Cells_AreaShape_Area")
    assert "no column Cells_AreaShape_Area" in missing[0]["note"]
