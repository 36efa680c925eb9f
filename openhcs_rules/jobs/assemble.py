"""Rule ``assemble_plate``: the plate's OME-Zarr (or TIFF folder), objects.csv, wells.csv and heatmap."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from openhcs_rules.io.atomic import atomic_path, atomic_write_bytes, remove_stale_temps
from openhcs_rules.plate.model import PlateStructure
from openhcs_rules.plate.naming import parse_well_name, row_name

log = logging.getLogger(__name__)

#: what the plate's assembly job writes under the plate's results folder
PLATE_OUTPUTS = ("plate.ome.zarr", "images", "objects.csv", "wells.csv", "heatmap.png")


def true_counts_per_well(plate: PlateStructure) -> dict[str, int] | None:
    """Per-well true object counts (all sites and timepoints) for generated demo plates, else None."""
    from openhcs_rules.demo.synthetic import GROUND_TRUTH_FILE, read_ground_truth

    if not (Path(plate.root) / GROUND_TRUTH_FILE).is_file():
        return None
    totals: dict[str, int] = {}
    for t in plate.timepoints:
        for well, sites in read_ground_truth(plate.root, t).items():
            totals[well] = totals.get(well, 0) + sum(sites.values())
    return totals


def concat_objects(plate_name: str, well_dirs: dict[str, Path], out_csv: str | Path) -> int:
    """Concatenate the wells' objects.csv (same columns by construction) into one file; return row count."""
    header: list[str] | None = None
    lines: list[str] = []
    for well in sorted(well_dirs, key=parse_well_name):
        text = (well_dirs[well] / "objects.csv").read_text().splitlines()
        if not text:
            continue
        if header is None:
            header = text[0].split(",")
        elif text[0].split(",") != header:
            raise ValueError(f"{well_dirs[well] / 'objects.csv'} has different columns than the other wells")
        lines.extend(text[1:])
    atomic_write_bytes(out_csv, ("\n".join([",".join(header or [])] + lines) + "\n").encode())
    return len(lines)


def well_rows(plate: PlateStructure, summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    truth = true_counts_per_well(plate)
    rows = []
    for well in sorted(summaries, key=parse_well_name):
        summary = summaries[well]
        r, c = parse_well_name(well)
        row = {
            "plate": plate.name,
            "well": well,
            "row": row_name(r),
            "column": c + 1,
            "n_sites": summary["n_sites"],
            "missing_sites": " ".join(map(str, summary["missing_sites"])),
            "n_objects": summary["n_objects"],
            "objects_per_site": summary["n_objects"] / max(summary["n_sites"], 1),
            "mean_area_px": summary["mean_area_px"],
        }
        row.update({k: v for k, v in summary.items() if k.startswith("mean_intensity_")})
        if truth is not None:
            row["true_count"] = truth.get(well)
        rows.append(row)
    return rows


def write_wells_csv(rows: list[dict[str, Any]], path: str | Path) -> None:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def plot_heatmap(
    plate: PlateStructure, rows: list[dict[str, Any]], path: str | Path, value: str = "objects_per_site"
) -> None:
    """Plate-layout heatmap of one per-well value; wells without data stay blank (not zero)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.full((plate.rows, plate.columns), np.nan)
    for row in rows:
        r, c = parse_well_name(row["well"])
        grid[r, c] = row[value]
    width = max(4.0, 0.35 * plate.columns + 2)
    fig, ax = plt.subplots(figsize=(width, max(3.0, 0.35 * plate.rows + 1.5)))
    image = ax.imshow(grid, cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(plate.columns), [str(i + 1) for i in range(plate.columns)], fontsize=7)
    ax.set_yticks(range(plate.rows), [row_name(i) for i in range(plate.rows)], fontsize=7)
    if plate.rows * plate.columns <= 384:
        for row in rows:
            r, c = parse_well_name(row["well"])
            ax.text(c, r, f"{row[value]:.0f}", ha="center", va="center", color="white", fontsize=6)
    ax.set_title(f"{plate.name}: {value.replace('_', ' ')}")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def link_tiff_images(well_dirs: dict[str, Path], out_dir: str | Path) -> None:
    """Disk backend: gather each well's TIFFs under ``images/<well>/`` (hard links, no pixel copy)."""
    from openhcs_rules.io.zarr_plate import link_tree

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for well, folder in well_dirs.items():
            link_tree(folder / "images", tmp / well)


def assemble_plate(
    plate_json: str | Path, wells_dir: str | Path, out_dir: str | Path, backend: str = "zarr"
) -> list[dict[str, Any]]:
    """Everything per plate: images, objects.csv, wells.csv and heatmap.png under ``out_dir``."""
    plate = PlateStructure.load_json(plate_json)
    out = Path(out_dir)
    well_dirs = {well: Path(wells_dir) / well for well in plate.well_names}
    summaries = {w: json.loads((d / "summary.json").read_text()) for w, d in well_dirs.items()}
    # a killed assembly's temp plate is never renamed into place; this job owns these outputs, so clear it
    remove_stale_temps(*(out / name for name in PLATE_OUTPUTS))
    if backend == "zarr":
        from openhcs_rules.io.zarr_plate import assemble_plate_zarr

        names = [plate.channel(i).name for i in plate.channel_indices]
        assemble_plate_zarr(out / "plate.ome.zarr", plate, {w: d / "images.zarr" for w, d in well_dirs.items()}, names)
    else:
        link_tiff_images(well_dirs, out / "images")
    n_objects = concat_objects(plate.name, well_dirs, out / "objects.csv")
    rows = well_rows(plate, summaries)
    write_wells_csv(rows, out / "wells.csv")
    plot_heatmap(plate, rows, out / "heatmap.png")
    if plate.format == "omero":  # derived plate + tables as FileAnnotations on the server
        from openhcs_rules.omero.results import publish_plate

        publish_plate(plate_json, out)
    log.info("%s: %d wells, %d objects", plate.name, len(rows), n_objects)
    return rows
