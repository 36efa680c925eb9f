"""A chunk job's well events: started and finished (object count, seconds) per well, failed with its error,
skipped when already done; and nothing at all without an execution server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from openhcs_rules.demo.synthetic import generate_imagexpress_plate
from openhcs_rules.execution.states import EVENT_TYPES
from openhcs_rules.jobs.discover import discover
from openhcs_rules.jobs.illumination import estimate_plate_illumination
from openhcs_rules.jobs.process_wells import WellsFailed, process_wells
from openhcs_rules.progress.files import EVENTS_DIR_ENV, EventWriter
from openhcs_rules.progress.well_events import MAX_ERROR_CHARS, WellEvents
from openhcs_rules_testkit.workflow import PIPELINE

WELLS = ["B02", "B03", "C02"]


@pytest.fixture
def plate(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "plate"
    generate_imagexpress_plate(folder, "p", wells=WELLS, sites=1, channels=1, z_planes=1, shape=(128, 128), seed=3)
    plate_json = tmp_path / "out" / "plate.json"
    structure = discover("p", folder, plate_json)
    estimate_plate_illumination(structure, tmp_path / "out" / "illumination.npz", 8)
    return folder, plate_json


def _run(tmp_path: Path, plate_json: Path) -> dict[str, Any]:
    out = tmp_path / "out"
    return process_wells(
        plate_json,
        "B02-C02",
        PIPELINE,
        out / "wells",
        out / "chunks" / "B02-C02.json",
        out / "illumination.npz",
        gpu="numpy",
    )


def _events(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    lines = [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.read_text().splitlines()]
    return [(line["type"], line["body"]) for line in lines]


def test_each_well_is_started_and_finished_with_its_count_and_a_rerun_skips_them(tmp_path, plate, monkeypatch):
    events_dir = tmp_path / "run" / ".openhcs" / "events"
    monkeypatch.setenv(EVENTS_DIR_ENV, str(events_dir))
    _, plate_json = plate
    manifest = _run(tmp_path, plate_json)
    (job_file,) = events_dir.glob("*.jsonl")
    assert job_file.name.startswith("job-")  # this process's own file
    events = _events(events_dir)
    assert [(kind, body["well"]) for kind, body in events] == [
        (kind, well) for well in WELLS for kind in ("well_started", "well_finished")
    ]
    for kind, body in events:
        assert kind in EVENT_TYPES and body["plate"] == "p"
        if kind == "well_finished":
            assert body["objects"] == manifest["summaries"][body["well"]]["n_objects"] > 0
            assert isinstance(body["seconds"], float) and body["seconds"] > 0

    _run(tmp_path, plate_json)  # same inputs: every well already done
    assert _events(events_dir)[len(events) :] == [("well_skipped", {"plate": "p", "well": w}) for w in WELLS]


def test_a_failed_well_says_why_and_the_others_finish(tmp_path, plate, monkeypatch):
    events_dir = tmp_path / "events"
    monkeypatch.setenv(EVENTS_DIR_ENV, str(events_dir))
    folder, plate_json = plate
    tiff = next(p for p in folder.rglob("*B03*") if p.is_file())
    good = tiff.read_bytes()
    tiff.write_bytes(good[:200])  # a corrupt TIFF
    with pytest.raises(WellsFailed):
        _run(tmp_path, plate_json)
    events = _events(events_dir)
    assert [(kind, body["well"]) for kind, body in events] == [
        ("well_started", "B02"),
        ("well_finished", "B02"),
        ("well_started", "B03"),
        ("well_failed", "B03"),
        ("well_started", "C02"),
        ("well_finished", "C02"),
    ]
    failed = events[3][1]
    assert set(failed) == {"plate", "well", "error"} and failed["error"]
    assert len(failed["error"]) <= MAX_ERROR_CHARS + 100
    tiff.write_bytes(good)  # fixed: the rerun skips the two done wells and redoes the failed one
    _run(tmp_path, plate_json)
    assert [(kind, body["well"]) for kind, body in _events(events_dir)[len(events) :]] == [
        ("well_skipped", "B02"),
        ("well_skipped", "C02"),
        ("well_started", "B03"),
        ("well_finished", "B03"),
    ]


def test_without_an_execution_server_nothing_is_written(tmp_path, plate, monkeypatch):
    monkeypatch.delenv(EVENTS_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    _, plate_json = plate
    _run(tmp_path, plate_json)
    created = {p.relative_to(tmp_path).parts[:2] for p in sorted(tmp_path.rglob("*")) if p not in before}
    assert created == {("out", "wells"), ("out", "chunks")}  # the job's outputs only
    assert WellEvents.from_env("p").writer is None


def test_the_helper_reports_the_exception_re_raises_and_holds_no_descriptor(tmp_path):
    events = WellEvents("p", EventWriter(tmp_path, "job"))
    with pytest.raises(ValueError, match="bad"):
        with events.well("B02"):
            assert events.writer is not None and events.writer._fd is None  # closed after each event
            raise ValueError("bad" + "!" * 5000)
    with events.well("B03") as outcome:
        outcome.summary = {"n_objects": 7}
    with events.well("C02"):
        pass  # no summary given: no count
    kinds = _events(tmp_path)
    assert kinds[1][0] == "well_failed" and kinds[1][1]["error"].startswith("ValueError: bad!")
    assert len(kinds[1][1]["error"]) < MAX_ERROR_CHARS + 100
    assert kinds[3][1]["objects"] == 7 and "objects" not in kinds[5][1]
    silent = WellEvents("p")
    with silent.well("B02") as outcome:
        outcome.summary = {"n_objects": 1}
    silent.skipped("B03")
