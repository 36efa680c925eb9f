"""`openhcs-rules status`: wells done, failed, running and left, and the time left, from what jobs leave on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from openhcs_rules.cli import main
from openhcs_rules.jobs.process_wells import failures_path
from openhcs_rules.jobs.screen_status import format_eta, pace_eta, plate_status
from openhcs_rules.plate.model import ImageKey, ImageStructure, PlateStructure, build_wells
from openhcs_rules.progress.files import EVENTS_SUBDIR, encode_line

WELLS = ["B02", "B03", "B04", "C02", "C03", "C04"]


def make_plate(results: Path, name: str = "p") -> Path:
    images = [ImageStructure(ImageKey(w, 1, 1, 1, 1), f"{w}.tif") for w in WELLS]
    plate_dir = results / name
    plate_dir.mkdir(parents=True)
    PlateStructure(name, "imagexpress", "/nowhere", 8, 12, [], build_wells(images)).save_json(plate_dir / "plate.json")
    return plate_dir


def finish(plate_dir: Path, well: str, at: float) -> None:
    summary = plate_dir / "wells" / well / "summary.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text("{}")
    os.utime(summary, (at, at))


def test_the_pace_of_recent_wells_gives_the_time_left() -> None:
    assert pace_eta([100.0, 110.0, 120.0], left=4) == pytest.approx(40.0)  # a well every 10 s
    assert pace_eta([100.0], left=4) is None  # one finish time says nothing about the pace
    assert pace_eta([], left=0) == 0.0
    assert format_eta(None) == "?" and format_eta(75) == "1m15s" and format_eta(7300) == "2h01m"


def test_done_failed_running_and_left(tmp_path: Path) -> None:
    plate_dir = make_plate(tmp_path)
    for index, well in enumerate(["B02", "B03", "B04"]):
        finish(plate_dir, well, 1000.0 + 30 * index)
    record = failures_path(plate_dir / "chunks" / "C02-C03.json")
    record.parent.mkdir()
    record.write_text(json.dumps({"chunk": "C02-C03", "wells": {"C02": "OSError: truncated TIFF", "B02": "old"}}))
    status = plate_status("p", plate_dir, running={"C03"})
    assert (status.wells, status.done, status.failed, status.running, status.left) == (6, 3, 1, 1, 1)
    assert status.failures == {"C02": "OSError: truncated TIFF"}  # B02 failed once, is done since
    assert status.eta_s == pytest.approx(2 * 30.0)  # C03 (running) and C04 at a well per 30 s
    assert not status.assembled
    assert not plate_status("q", tmp_path / "q").discovered


def test_the_command_reads_the_config_and_the_run_events(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plate_dir = make_plate(tmp_path / "out")
    (tmp_path / "screen.yaml").write_text(
        yaml.safe_dump(
            {"plates": {"p": {"source": "synthetic"}, "later": {"source": "synthetic"}}, "output": {"dir": "out"}}
        )
    )
    finish(plate_dir, "B02", 1000.0)
    events = tmp_path / EVENTS_SUBDIR
    events.mkdir(parents=True)
    lines = [encode_line("well_started", {"plate": "p", "well": w}) for w in ("B02", "B03")]
    lines.append(encode_line("well_finished", {"plate": "p", "well": "B02", "objects": 3}))
    (events / "job-1.jsonl").write_bytes(b"".join(lines))
    assert main(["status", "--config", "screen.yaml", "--directory", str(tmp_path), "--json"]) == 2
    found = {entry["plate"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert (found["p"]["done"], found["p"]["running"], found["p"]["left"]) == (1, 1, 4)
    assert found["later"]["discovered"] is False
    for well in WELLS[1:]:
        finish(plate_dir, well, 1001.0)
    (tmp_path / "screen.yaml").write_text(
        yaml.safe_dump({"plates": {"p": {"source": "synthetic"}}, "output": {"dir": "out"}})
    )
    assert main(["status", "--config", "screen.yaml", "--directory", str(tmp_path)]) == 0
    assert "done" in capsys.readouterr().out
