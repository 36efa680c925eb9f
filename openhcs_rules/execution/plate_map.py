"""A run's plates as maps of wells: which are pending, running, done, failed or skipped, with object counts.

The web page draws each plate as a grid. Its cells come from two sources: the run's well events (the only
record of what happened to a well, ``well_started``/``well_finished``/``well_failed``/``well_skipped``) and,
once discovery has written it, the plate's structure (``<output dir>/<plate>/plate.json`` in the run folder),
which lists every well of the plate, so wells no job has reached yet show as pending and the grid spans the
plate's real format (8 x 12 for a 96-well plate) rather than the wells seen so far.

:func:`plate_map` is pure (events and layouts in, a JSON-ready dict out) so its rules are tested without a
run; :func:`run_layouts` is the one part that reads files.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from openhcs_rules.execution.states import Event, RunState
from openhcs_rules.execution.submission import RESULTS_DIR, SCREEN_FILE
from openhcs_rules.plate.naming import infer_layout, normalise_well_name, parse_well_name, row_name

#: well states, as the page shows them
PENDING, RUNNING, DONE, FAILED, SKIPPED = "pending", "running", "done", "failed", "skipped"
#: a plate.json larger than this is not read for its layout (the page falls back to the wells seen)
MAX_PLATE_JSON_BYTES = 64 * 1024 * 1024
#: plate names as a config may give them (they are folder names in the run's results)
PLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
#: the largest layout drawn (1536-well plates are 32 x 48); anything bigger is a broken file
MAX_ROWS, MAX_COLUMNS = 64, 96


@dataclass(frozen=True)
class PlateLayout:
    """A plate's format and wells, as discovery recorded them."""

    rows: int
    columns: int
    wells: tuple[str, ...] = ()


def _well(name: object) -> tuple[str, tuple[int, int]] | None:
    """A well's canonical name and 0-based position; None for anything that is not a well name."""
    if not isinstance(name, str) or len(name) > 8:
        return None
    try:
        return normalise_well_name(name), parse_well_name(name)
    except ValueError:
        return None


def plate_map(
    events: Iterable[Event], layouts: Mapping[str, PlateLayout] | None = None, plates: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    """``{plate: {"rows": [...], "columns": [...], "wells": {well: {"state", "objects"}}}}`` for a run.

    Rules: a well's latest event decides its state, except that ``well_skipped`` after ``well_finished`` keeps
    it done with its count (a resumed run skips the wells it finished before; they are no less done). A well
    still running when its Snakemake process ends (a new ``run_started``, or a ``run_state`` that is neither
    running nor draining) is pending again: it will be redone. Wells in a layout with no event are pending.
    Rows and columns span the plate's layout (grown to hold any well outside it); without a layout, the
    smallest standard plate holding the wells seen. Plates come in the order given, then as events name them.
    Malformed event bodies are ignored: the map must draw whatever a job wrote.
    """
    layouts = dict(layouts or {})
    states: dict[str, dict[str, dict[str, Any]]] = {plate: {} for plate in plates}
    for event in events:
        body = event.body if isinstance(event.body, dict) else {}
        state = body.get("state") if event.type == "run_state" else None
        if event.type == "run_started" or event.type == "run_state" and not _is_active(state):
            for wells in states.values():  # a process ended or a new one starts: nothing runs now
                for cell in wells.values():
                    if cell["state"] == RUNNING:
                        cell["state"] = PENDING
            continue
        if not event.type.startswith("well_"):
            continue
        plate, found = body.get("plate"), _well(body.get("well"))
        if not isinstance(plate, str) or not plate or found is None:
            continue
        cell = states.setdefault(plate, {}).setdefault(found[0], {"state": PENDING, "objects": None})
        if event.type == "well_started":
            cell.update(state=RUNNING, objects=None)
        elif event.type == "well_finished":
            objects = body.get("objects")
            valid = isinstance(objects, int) and not isinstance(objects, bool) and objects >= 0
            cell.update(state=DONE, objects=objects if valid else None)
        elif event.type == "well_failed":
            cell.update(state=FAILED, objects=None)
        elif event.type == "well_skipped" and cell["state"] != DONE:
            cell.update(state=SKIPPED, objects=None)
    for plate in layouts:
        states.setdefault(plate, {})
    return {plate: _plate(wells, layouts.get(plate)) for plate, wells in states.items()}


_ACTIVE_STATES = frozenset({RunState.RUNNING.value, RunState.DRAINING.value, RunState.ABORTING.value})


def _is_active(state: object) -> bool:
    return isinstance(state, str) and state in _ACTIVE_STATES


def _plate(cells: dict[str, dict[str, Any]], layout: PlateLayout | None) -> dict[str, Any]:
    """One plate's grid: every well of the layout (pending unless an event says otherwise) and those seen."""
    wells: dict[str, dict[str, Any]] = {}
    positions: dict[str, tuple[int, int]] = {}
    for name in (*(layout.wells if layout else ()), *cells):
        found = _well(name)
        if found is None or found[0] in positions:
            continue
        positions[found[0]] = found[1]
    for name in sorted(positions, key=positions.__getitem__):
        wells[name] = dict(cells.get(name, {"state": PENDING, "objects": None}))
    if layout is not None:
        rows, columns = layout.rows, layout.columns
    elif positions:
        rows, columns = infer_layout(list(positions))
    else:
        rows = columns = 0
    rows = max([rows, *(r + 1 for r, _ in positions.values())])
    columns = max([columns, *(c + 1 for _, c in positions.values())])
    return {"rows": [row_name(i) for i in range(rows)], "columns": list(range(1, columns + 1)), "wells": wells}


# -- the plates' structure in a run folder -------------------------------------------------------------------
_cache: dict[tuple[str, int, int], PlateLayout | None] = {}
_cache_lock = threading.Lock()
_CACHE_ENTRIES = 64


def load_layout(path: Path) -> PlateLayout | None:
    """The layout in a ``plate.json``; None when there is none yet or it cannot be read.

    Only rows, columns and well names are taken (not the thousands of image records), and the result is
    cached by the file's size and modification time: the page asks every few seconds, discovery writes the
    file once.
    """
    try:
        stat = path.stat()
    except (OSError, ValueError):
        return None
    if stat.st_size > MAX_PLATE_JSON_BYTES:
        return None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    layout: PlateLayout | None = None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows, columns, wells = int(data["rows"]), int(data["columns"]), data["wells"]
        if 0 < rows <= MAX_ROWS and 0 < columns <= MAX_COLUMNS and isinstance(wells, dict):
            layout = PlateLayout(rows, columns, tuple(str(name) for name in wells))
    except (OSError, ValueError, TypeError, KeyError):
        layout = None
    with _cache_lock:
        if len(_cache) >= _CACHE_ENTRIES:
            _cache.pop(next(iter(_cache)))
        _cache[key] = layout
    return layout


def output_dir(folder: Path) -> Path:
    """Where the run writes its plates: ``output.dir`` of its ``screen.yaml`` (inside the folder), or
    ``results``; the server wrote that file, but a path is still only accepted below the run folder."""
    wanted: object = RESULTS_DIR
    try:
        config = yaml.safe_load((folder / SCREEN_FILE).read_text(encoding="utf-8"))
        output = config.get("output") if isinstance(config, dict) else None
        if isinstance(output, dict) and isinstance(output.get("dir"), str):
            wanted = output["dir"]
    except (OSError, ValueError, yaml.YAMLError):
        pass
    candidate = (folder / str(wanted)).resolve()
    root = folder.resolve()
    return candidate if root in candidate.parents else root / RESULTS_DIR


def run_layouts(folder: str | Path, plates: Iterable[str]) -> dict[str, PlateLayout]:
    """The layouts of a run's plates whose ``plate.json`` discovery has written (plate names as configs
    allow them; others are not looked up)."""
    out = output_dir(Path(folder))
    found: dict[str, PlateLayout] = {}
    for plate in plates:
        if not isinstance(plate, str) or not PLATE_NAME.match(plate):
            continue
        layout = load_layout(out / plate / "plate.json")
        if layout is not None:
            found[plate] = layout
    return found
