"""Plate maps: which well holds which treatment, and which wells are the controls.

A plate map is a CSV file a person writes (or exports from a liquid handler), one row per well::

    well,treatment,concentration_uM,control
    A01,DMSO,0,negative
    A02,staurosporine,1,positive
    B01,compound_17,10,

``well`` names the well (``A1``, ``A01`` and ``a01`` alike); every other column is carried into the tables
as ``Metadata_<column>`` (the pycytominer convention, so ``annotate``/``aggregate`` keep it), and the
``control`` column, when present, gives a well's role: ``negative``, ``positive`` or empty. Wells the map
does not list are simply not annotated; a map naming a well twice, a well the plate does not have, or an
unknown control role is refused with the line it is on, before anything is computed from it.

Values stay text: a concentration ``1e-6`` or a compound id ``007`` means what the person wrote, and
pycytominer reads metadata as text anyway.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from openhcs_rules.errors import ConfigError
from openhcs_rules.plate.naming import parse_well_name, well_name

#: the column naming each row's well
WELL_COLUMN = "well"
#: the column giving a well's control role
CONTROL_COLUMN = "control"
#: the roles a control column may hold (case-insensitive), empty for a sample
CONTROL_ROLES = ("negative", "positive")
#: a plate map larger than this is not a plate map (a 1536-well plate's map is ~100 KB)
MAX_PLATEMAP_BYTES = 16 * 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True)
class PlateMap:
    """A read plate map: its metadata columns (as ``Metadata_<name>``) per well, and the control wells."""

    source: str
    columns: tuple[str, ...] = ()
    wells: dict[str, dict[str, str]] = field(default_factory=dict)

    def metadata(self, well: str) -> dict[str, str]:
        """The well's ``Metadata_*`` values; empty strings for a well the map does not list."""
        return self.wells.get(well, dict.fromkeys(self.columns, ""))

    def control_role(self, well: str) -> str:
        """``negative``, ``positive`` or ``""``."""
        return self.wells.get(well, {}).get(metadata_column(CONTROL_COLUMN), "")

    def controls(self, role: str) -> list[str]:
        return sorted((w for w in self.wells if self.control_role(w) == role), key=parse_well_name)


def metadata_column(name: str) -> str:
    """``concentration (uM)`` -> ``Metadata_concentration__uM_``: the pycytominer metadata column of a map column."""
    return "Metadata_" + _UNSAFE.sub("_", name.strip())


def read_platemap(path: str | Path, plate_wells: Iterable[str] | None = None) -> PlateMap:
    """Read and check a plate map; ConfigError naming the file and line of every problem.

    ``plate_wells``, when given, are the wells the plate has: a map row for another well is an error (a
    map written for a 384-well plate used on a 96-well one names wells that do not exist).
    """
    source = Path(path)
    try:
        size = source.stat().st_size
        if size > MAX_PLATEMAP_BYTES:
            raise ConfigError(f"plate map {source}: {size} bytes; a plate map is at most {MAX_PLATEMAP_BYTES}")
        text = source.read_text(encoding="utf-8-sig")  # Excel writes a byte-order mark
    except UnicodeDecodeError as exc:
        raise ConfigError(f"plate map {source}: not UTF-8 text ({exc.reason}); save it as CSV UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"plate map {source}: cannot be read ({exc.strerror})") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise ConfigError(f"plate map {source}: empty; the first line names the columns (well, ...)")
    header = [cell.strip() for cell in rows[0]]
    problems: list[str] = []
    lowered = [name.lower() for name in header]
    if WELL_COLUMN not in lowered:
        raise ConfigError(f"plate map {source}, line 1: no '{WELL_COLUMN}' column (columns: {', '.join(header)})")
    names = [metadata_column(name) for name in header]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates or any(not name for name in header):
        raise ConfigError(f"plate map {source}, line 1: empty or repeated column names ({', '.join(header)})")
    well_at = lowered.index(WELL_COLUMN)
    control_at = lowered.index(CONTROL_COLUMN) if CONTROL_COLUMN in lowered else None
    if control_at is not None:
        names[control_at] = metadata_column(CONTROL_COLUMN)
    columns = tuple(name for i, name in enumerate(names) if i != well_at)
    allowed = set(plate_wells) if plate_wells is not None else None
    wells: dict[str, dict[str, str]] = {}
    for line, cells in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            problems.append(f"line {line}: {len(cells)} values for {len(header)} columns")
            continue
        try:
            well = well_name(*parse_well_name(cells[well_at]))
        except ValueError:
            problems.append(f"line {line}: {cells[well_at]!r} is not a well name like A01")
            continue
        if well in wells:
            problems.append(f"line {line}: well {well} is listed twice")
            continue
        if allowed is not None and well not in allowed:
            problems.append(f"line {line}: well {well} is not on this plate")
            continue
        values = {names[i]: cells[i].strip() for i in range(len(header)) if i != well_at}
        if control_at is not None:
            role = cells[control_at].strip().lower()
            if role not in ("", *CONTROL_ROLES):
                problems.append(f"line {line}: control {cells[control_at]!r}; write negative, positive or nothing")
            values[names[control_at]] = role
        wells[well] = values
    if problems:
        shown = "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ConfigError(f"plate map {source}: {shown}")
    return PlateMap(str(source), columns, wells)
