"""Well names for 6- to 1536-well plates and the canonical virtual image filename.

Rows past Z continue AA..AF (1536-well plates have 32 rows), as the instruments name them.
Columns are zero-padded to two digits (A01), which sorts correctly up to 48 columns.
"""

from __future__ import annotations

import re

#: wells -> (rows, columns) for the standard SBS plate formats.
PLATE_LAYOUTS: dict[int, tuple[int, int]] = {
    6: (2, 3),
    12: (3, 4),
    24: (4, 6),
    48: (6, 8),
    96: (8, 12),
    384: (16, 24),
    1536: (32, 48),
}

_PLATE_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_WELL_RE = re.compile(r"^([A-Z]{1,2})(\d{1,3})$")
_VIRTUAL_RE = re.compile(r"^(?P<well>[A-Z]{1,2}\d{2,3})_s(?P<site>\d+)_w(?P<channel>\d+)_z(?P<z>\d+)_t(?P<t>\d+)\.tif$")


def row_name(row_index: int) -> str:
    """Name of a 0-based row index: 0 -> 'A', 25 -> 'Z', 26 -> 'AA', 31 -> 'AF'."""
    if row_index < 0 or row_index >= 26 * 27:
        raise ValueError(f"row index {row_index} is outside A..ZZ")
    if row_index < 26:
        return chr(ord("A") + row_index)
    first, second = divmod(row_index - 26, 26)
    return chr(ord("A") + first) + chr(ord("A") + second)


def row_index(name: str) -> int:
    """Inverse of :func:`row_name` ('A' -> 0, 'AF' -> 31)."""
    name = name.upper()
    if len(name) == 1:
        return ord(name) - ord("A")
    if len(name) == 2:
        return 26 + (ord(name[0]) - ord("A")) * 26 + (ord(name[1]) - ord("A"))
    raise ValueError(f"row name {name!r} is not one or two letters")


def well_name(row: int, column: int) -> str:
    """Canonical name of a well from its 0-based row and column: (0, 0) -> 'A01', (31, 47) -> 'AF48'."""
    if column < 0:
        raise ValueError(f"column index {column} is negative")
    return f"{row_name(row)}{column + 1:02d}"


def parse_well_name(name: str) -> tuple[int, int]:
    """0-based (row, column) of a well name; accepts 'A1', 'A01', 'af48' alike."""
    match = _WELL_RE.match(name.strip().upper())
    if not match:
        raise ValueError(f"{name!r} is not a well name like 'A01' or 'AF48'")
    column = int(match.group(2))
    if column < 1:
        raise ValueError(f"{name!r}: columns start at 1")
    return row_index(match.group(1)), column - 1


def normalise_well_name(name: str) -> str:
    """'b3' -> 'B03': the one spelling used everywhere inside the package."""
    return well_name(*parse_well_name(name))


def layout_for_well_count(wells: int) -> tuple[int, int]:
    """(rows, columns) of a standard plate with this many wells."""
    try:
        return PLATE_LAYOUTS[wells]
    except KeyError:
        raise ValueError(f"{wells} wells is not a standard plate; known: {sorted(PLATE_LAYOUTS)}") from None


def virtual_filename(well: str, site: int, channel: int, z: int, t: int) -> str:
    """Canonical, 1-based image name as ImageXpress writes it: 'A01_s001_w1_z001_t001.tif'."""
    for label, value in (("site", site), ("channel", channel), ("z", z), ("t", t)):
        if value < 1:
            raise ValueError(f"{label} index {value} must be 1-based (>= 1)")
    return f"{normalise_well_name(well)}_s{site:03d}_w{channel}_z{z:03d}_t{t:03d}.tif"


def parse_virtual_filename(name: str) -> dict[str, str | int]:
    """Components of a canonical virtual filename (inverse of :func:`virtual_filename`)."""
    match = _VIRTUAL_RE.match(name)
    if not match:
        raise ValueError(f"{name!r} is not a virtual filename like 'A01_s001_w1_z001_t001.tif'")
    parts = match.groupdict()
    return {
        "well": parts["well"],
        "site": int(parts["site"]),
        "channel": int(parts["channel"]),
        "z": int(parts["z"]),
        "t": int(parts["t"]),
    }


def safe_plate_name(text: str | None) -> str | None:
    """An instrument's plate id as a plate name (``^[A-Za-z0-9][A-Za-z0-9_.-]*$``, as the config requires).

    Runs of other characters become one '_' and leading/trailing separators go ('BR001 / rep #1' ->
    'BR001_rep_1'), because the name becomes a folder and a shell word; None when nothing usable is left.
    """
    if not text:
        return None
    name = _PLATE_NAME_UNSAFE.sub("_", text.strip()).strip("_.-")
    return name or None


def infer_layout(wells: list[str]) -> tuple[int, int]:
    """Smallest standard plate (PLATE_LAYOUTS) whose rows and columns hold every well.

    For formats that do not record the plate type (ImageXpress direct transfers): the layout only sizes
    plate-level overviews, so the smallest plausible plate is a safe guess; callers warn that it was guessed.
    Wells beyond 32x48 give the bounding rows x columns.
    """
    positions = [parse_well_name(w) for w in wells]
    need_rows = max(r for r, _ in positions) + 1
    need_cols = max(c for _, c in positions) + 1
    for count in sorted(PLATE_LAYOUTS):
        rows, cols = PLATE_LAYOUTS[count]
        if rows >= need_rows and cols >= need_cols:
            return rows, cols
    return need_rows, need_cols
