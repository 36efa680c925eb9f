"""The report's plate heatmap: one plate-layout panel per timepoint, all on one colour scale, in one PNG.

One picture (not one per timepoint) keeps the ``assemble_plate`` rule's outputs fixed whatever the plate,
and one colour scale makes a well's change over time readable as a change of colour.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from openhcs_rules.core.files import atomic_path
from openhcs_rules.plate.model import PlateStructure
from openhcs_rules.plate.naming import parse_well_name, row_name

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
#: inches per well when there is room: a 96-well panel is about 4 x 3 inches
CELL_IN = 0.35
#: the whole picture stays within this (20 x 16 inches is 2000 x 1600 pixels), however many panels
MAX_WIDTH_IN, MAX_HEIGHT_IN = 20.0, 16.0
#: room around each panel for its title and tick labels, and for the colour bar and the title
PANEL_MARGIN_IN, COLORBAR_IN, TITLE_IN = 0.8, 1.2, 0.5
#: well values are written into the wells only when a well is at least this wide and the plate this small
LABEL_MIN_CELL_IN, LABEL_MAX_WELLS = 0.25, 384


def panel_grid(panels: int) -> tuple[int, int]:
    """(rows, columns) of panels: up to 3 side by side, then a near-square grid (20 panels: 4 x 5)."""
    if panels <= 3:
        return 1, max(panels, 1)
    columns = math.ceil(math.sqrt(panels))
    return math.ceil(panels / columns), columns


def cell_size(plate: PlateStructure, grid: tuple[int, int]) -> float:
    """Inches per well: CELL_IN unless the panels would make the picture wider or taller than the maximum."""
    rows, columns = grid
    across = (MAX_WIDTH_IN - COLORBAR_IN) / columns - PANEL_MARGIN_IN
    down = (MAX_HEIGHT_IN - TITLE_IN) / rows - PANEL_MARGIN_IN
    return max(0.02, min(CELL_IN, across / plate.columns, down / plate.rows))


def plate_grid(plate: PlateStructure, rows: list[dict[str, Any]], t: int, value: str) -> np.ndarray:
    """One timepoint's values laid out as the plate; wells without a value are NaN (drawn blank, not zero)."""
    grid = np.full((plate.rows, plate.columns), np.nan)
    for row in rows:
        if int(row["t"]) == t and row[value] not in (None, ""):
            r, c = parse_well_name(row["well"])
            grid[r, c] = float(row[value])
    return grid


def _label_wells(ax: Axes, grid: np.ndarray, low: float, high: float, fontsize: float) -> None:
    """Each well's value in the well, dark on the bright end of the colour map so it stays legible."""
    span = high - low or 1.0
    for (r, c), number in np.ndenumerate(grid):
        if np.isfinite(number):
            text = f"{number:.0f}" if abs(number) >= 10 else f"{number:.1f}"
            colour = "black" if (number - low) / span > 0.6 else "white"
            ax.text(c, r, text, ha="center", va="center", color=colour, fontsize=fontsize)


def _ticks(ax: Axes, plate: PlateStructure, cell: float) -> None:
    """Row letters and column numbers, thinned out when wells are too small for a label each."""
    stride = max(1, math.ceil(0.14 / cell))
    columns = range(0, plate.columns, stride)
    rows = range(0, plate.rows, stride)
    ax.set_xticks(list(columns), [str(i + 1) for i in columns], fontsize=7)
    ax.set_yticks(list(rows), [row_name(i) for i in rows], fontsize=7)


def heatmap_figure(plate: PlateStructure, rows: list[dict[str, Any]], value: str = "objects_per_site") -> Figure:
    """Panels "t = 1", "t = 2", ... of one wells.csv value, wrapped into rows, with one shared colour bar."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend in a job

    timepoints = sorted({int(row["t"]) for row in rows}) or [1]
    grids = [plate_grid(plate, rows, t, value) for t in timepoints]
    finite = np.concatenate([g[np.isfinite(g)] for g in grids])
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    grid = panel_grid(len(timepoints))
    cell = cell_size(plate, grid)
    width = grid[1] * (plate.columns * cell + PANEL_MARGIN_IN) + COLORBAR_IN
    height = grid[0] * (plate.rows * cell + PANEL_MARGIN_IN) + TITLE_IN
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = figure.subplots(*grid, squeeze=False).ravel()
    labelled = cell >= LABEL_MIN_CELL_IN and plate.rows * plate.columns <= LABEL_MAX_WELLS
    for ax, t, values in zip(axes, timepoints, grids, strict=False):
        image = ax.imshow(values, cmap="viridis", interpolation="nearest", vmin=low, vmax=high)
        _ticks(ax, plate, cell)
        ax.set_title(f"t = {t}", fontsize=9)
        if labelled:
            _label_wells(ax, values, low, high, 6 if cell >= 0.3 else 5)
    for ax in axes[len(timepoints) :]:
        ax.remove()
    figure.colorbar(image, ax=list(axes[: len(timepoints)]), shrink=0.8, label=value.replace("_", " "))
    figure.suptitle(f"{plate.name}: {value.replace('_', ' ')}")
    return figure


def plot_heatmap(
    plate: PlateStructure, rows: list[dict[str, Any]], path: str | Path, value: str = "objects_per_site"
) -> None:
    """Write :func:`heatmap_figure` as the report's PNG (atomically: a killed job leaves no half picture)."""
    figure = heatmap_figure(plate, rows, value)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
