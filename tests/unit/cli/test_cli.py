"""``openhcs-rules inspect`` on the real instrument plates, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from openhcs_rules.cli import main

EXPECTED = {
    "imagexpress_exported/9987_Plate_3420": ("imagexpress", ["B02"], [1], [1], [1]),
    "imagexpress_exported/9987_Plate_3434": ("imagexpress", ["B02", "B03"], [1, 2], [1, 2], [1]),
    "imagexpress_exported/9987_Plate_3435": ("imagexpress", ["B02", "B03"], [1, 2], [1], [1, 2]),
    "imagexpress_direct_singlechannel": ("imagexpress", ["E07", "E08"], [1, 2], [1, 2], [1]),
    "opera_phenix_v5": ("opera_phenix", ["A01"], [1], [1], [1]),
}


@pytest.mark.parametrize("plate", sorted(EXPECTED))
def test_inspect_json_lists_the_plate_components(plate, fixtures_dir, capsys):
    assert main(["inspect", str(fixtures_dir / plate), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    fmt, wells, sites, z, timepoints = EXPECTED[plate]
    assert (out["format"], out["wells"], out["sites"], out["z"], out["timepoints"]) == (
        fmt,
        wells,
        sites,
        z,
        timepoints,
    )
    assert all({"index", "name"} <= set(channel) for channel in out["channels"])


def test_inspect_names_channels(fixtures_dir, capsys):
    main(["inspect", str(fixtures_dir / "opera_phenix_v5"), "--json"])
    names = [c["name"] for c in json.loads(capsys.readouterr().out)["channels"]]
    assert names == ["Digital Phase Contrast", "Brightfield high", "488 650", "Alexa 488", "Alexa 568", "Alexa 647"]


def test_console_script_reports_unknown_folder_with_exit_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "openhcs_rules", "inspect", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert f"{tmp_path}" in done.stderr and "is not a plate folder" in done.stderr
    assert "Traceback" not in done.stderr
