"""Where a screen stands: per plate the wells done, failed and left, and an estimate of the time left.

Read from what the jobs leave on disk, so it works the same for a running and a finished screen, a run on
this machine or on a cluster, started with ``snakemake`` or through the execution server:

- a plate's wells are those of its ``plate.json`` (written by discovery; before that, the plate is
  "not discovered");
- a well is **done** when its ``summary.json`` exists (written last by its job, atomically);
- a well has **failed** when the last run of its chunk recorded it in ``chunks/<chunk>.failed.json`` and it
  is not done since (a rerun that succeeds removes the record);
- a well is **running** when the run's durable events (an execution-server run folder's ``.openhcs/events``)
  say it started and did not end; without events, running wells count as left;
- the **time left** comes from the pace so far: the finish times of the done wells (their summaries'
  modification times) give wells per second over the recent past, whatever the number of parallel jobs;
  with fewer than two done wells there is no estimate (never a guess from nothing).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openhcs_rules.plate.model import PlateStructure
from openhcs_rules.progress.files import EVENTS_SUBDIR

#: the finish times used for the pace: the most recent ones (an early slow well says little about the rest)
PACE_WINDOW = 50


@dataclass
class PlateStatus:
    """One plate's wells by state, and the estimate of the time left (seconds; None when unknown)."""

    plate: str
    discovered: bool
    wells: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    left: int = 0
    eta_s: float | None = None
    failures: dict[str, str] = field(default_factory=dict)
    assembled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pace_eta(finish_times: Iterable[float], left: int) -> float | None:
    """Seconds until ``left`` more wells are done at the pace of the recent finish times; None below two."""
    recent = sorted(finish_times)[-PACE_WINDOW:]
    if left == 0:
        return 0.0
    if len(recent) < 2 or recent[-1] <= recent[0]:
        return None
    per_well = (recent[-1] - recent[0]) / (len(recent) - 1)
    return left * per_well


def _failures(plate_dir: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for record in sorted((plate_dir / "chunks").glob("*.failed.json")):
        try:
            wells = json.loads(record.read_text()).get("wells", {})
        except (OSError, ValueError, AttributeError):
            continue  # a record being replaced: the next look reads it
        if isinstance(wells, dict):
            found.update({str(w): str(reason) for w, reason in wells.items()})
    return found


def running_wells(events_dir: Path | None) -> dict[str, set[str]]:
    """Plate -> wells whose ``well_started`` event has no ``well_finished``/``well_failed`` after it."""
    if events_dir is None or not events_dir.is_dir():
        return {}
    from openhcs_rules.progress.reader import EventTailer

    tailer = EventTailer(events_dir, {}, ("well_started", "well_finished", "well_failed", "well_skipped"))
    started: dict[str, set[str]] = {}
    while True:
        events = tailer.read_new(max_events=10_000)
        if not events:
            break
        for event_type, body, _when in events:
            plate, well = body.get("plate"), body.get("well")
            if not isinstance(plate, str) or not isinstance(well, str):
                continue
            wells = started.setdefault(plate, set())
            if event_type == "well_started":
                wells.add(well)
            else:
                wells.discard(well)
    return started


def plate_status(plate: str, plate_dir: Path, running: set[str] | None = None) -> PlateStatus:
    """One plate's status from its results folder (module docstring)."""
    plate_json = plate_dir / "plate.json"
    if not plate_json.is_file():
        return PlateStatus(plate, discovered=False)
    structure = PlateStructure.load_json(plate_json)
    wells = structure.well_names
    finish: dict[str, float] = {}
    for well in wells:
        try:
            finish[well] = (plate_dir / "wells" / well / "summary.json").stat().st_mtime
        except OSError:
            continue
    failures = {w: reason for w, reason in _failures(plate_dir).items() if w in wells and w not in finish}
    active = {w for w in (running or set()) if w in wells and w not in finish and w not in failures}
    left = len(wells) - len(finish) - len(failures) - len(active)
    return PlateStatus(
        plate,
        discovered=True,
        wells=len(wells),
        done=len(finish),
        failed=len(failures),
        running=len(active),
        left=left,
        eta_s=pace_eta(finish.values(), left + len(active)),
        failures=failures,
        assembled=(plate_dir / "wells.csv").is_file() and len(finish) == len(wells),
    )


def screen_status(screen: Mapping[str, Any], workdir: Path) -> list[PlateStatus]:
    """Every plate of a validated screen config, run in ``workdir`` (where Snakemake ran)."""
    out = Path(screen["output"]["dir"]).expanduser()
    out = out if out.is_absolute() else workdir / out
    running = running_wells(workdir / EVENTS_SUBDIR)
    return [plate_status(name, out / name, running.get(name)) for name in screen["plates"]]


def finished(statuses: Iterable[PlateStatus]) -> bool:
    """True when nothing is left to run (every well done or failed) on every discovered plate."""
    return all(s.discovered and s.left == 0 and s.running == 0 for s in statuses)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")
