"""Rule ``assemble_plate``: the plate's OME-Zarr (or TIFF folder), objects.csv, wells.csv (per well and t), heatmap."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

from openhcs_rules.core.files import atomic_write_bytes, remove_stale_temps
from openhcs_rules.io.registry import backend_for
from openhcs_rules.io.well_folder import OBJECT_COLUMNS, WellFolder
from openhcs_rules.jobs.heatmap import plot_heatmap
from openhcs_rules.plate.model import PlateStructure
from openhcs_rules.plate.naming import parse_well_name, row_name

log = logging.getLogger(__name__)

#: what the plate's assembly job writes under the plate's results folder
PLATE_OUTPUTS = ("plate.ome.zarr", "images", "objects.csv", "wells.csv", "heatmap.png")


def true_counts(plate: PlateStructure) -> dict[tuple[str, int], int] | None:
    """True object counts per (well, timepoint), over the well's sites, for generated demo plates, else None."""
    from openhcs_rules.demo.synthetic import GROUND_TRUTH_FILE, read_ground_truth

    if not (Path(plate.root) / GROUND_TRUTH_FILE).is_file():
        return None
    return {
        (well, t): sum(sites.values())
        for t in plate.timepoints
        for well, sites in read_ground_truth(plate.root, t).items()
    }


def concat_objects(plate_name: str, folders: dict[str, WellFolder], out_csv: str | Path) -> int:
    """Concatenate the wells' objects.csv into one file; return the row count.

    Wells with objects have the same columns by construction. A well without any object has only the fixed
    columns (its measurement columns come from the objects' rows), so it adds no row and its header is not
    compared; when no well has an object, the table is the fixed columns alone.
    """
    header: list[str] | None = None
    lines: list[str] = []
    for well in sorted(folders, key=parse_well_name):
        text = folders[well].objects_csv.read_text().splitlines()
        if len(text) < 2:
            continue
        if header is None:
            header = text[0].split(",")
        elif text[0].split(",") != header:
            raise ValueError(f"{folders[well].objects_csv} has different columns than the other wells")
        lines.extend(text[1:])
    if header is None:
        header = list(OBJECT_COLUMNS)
    atomic_write_bytes(out_csv, ("\n".join([",".join(header)] + lines) + "\n").encode())
    return len(lines)


#: numeric columns of a well's objects.csv that its per-timepoint summary needs back as numbers
_INT_COLUMNS = ("site", "t")


def read_objects(path: str | Path) -> list[dict[str, Any]]:
    """A well's objects.csv with sites, timepoints, areas and intensities as numbers again.

    Only for summaries written before they carried ``timepoints``: a chunk rerun keeps such wells (same
    run key), and the plate's table must still be per timepoint.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        rows: list[dict[str, Any]] = list(csv.DictReader(handle))
    for row in rows:
        for key, value in row.items():
            if key in _INT_COLUMNS:
                row[key] = int(value)
            elif key == "area_px" or key.startswith("mean_intensity_"):
                row[key] = float(value)
    return rows


def timepoint_summaries(
    plate: PlateStructure, well: str, summary: dict[str, Any], wells_dir: str | Path | None
) -> list[dict[str, Any]]:
    """The well's per-timepoint figures: from its summary.json, or from its objects.csv for older summaries."""
    if "timepoints" in summary:
        return summary["timepoints"]
    if wells_dir is None:
        raise ValueError(f"summary of {well} has no per-timepoint figures and no wells folder was given")
    from openhcs_rules.jobs.process_well import summarise_timepoints

    return summarise_timepoints(read_objects(WellFolder(Path(wells_dir) / well).objects_csv), plate, well)


def well_rows(
    plate: PlateStructure, summaries: dict[str, dict[str, Any]], wells_dir: str | Path | None = None
) -> list[dict[str, Any]]:
    """wells.csv in long format: one row per well and timepoint, wells in plate order, then by ``t``.

    Per timepoint because a time-lapse plate images each site once per timepoint: a row over all
    timepoints would add them together. Single-timepoint plates get ``t`` = 1, so the columns never change.
    """
    truth = true_counts(plate)
    rows = []
    for well in sorted(summaries, key=parse_well_name):
        for entry in timepoint_summaries(plate, well, summaries[well], wells_dir):
            rows.append(_well_row(plate.name, well, entry, truth))
    return rows


def _well_row(
    plate_name: str, well: str, entry: dict[str, Any], truth: dict[tuple[str, int], int] | None
) -> dict[str, Any]:
    """One well at one timepoint; ``objects_per_site`` is blank (not 0) when no site was imaged then."""
    r, c = parse_well_name(well)
    n_sites = entry["n_sites"]
    row = {
        "plate": plate_name,
        "well": well,
        "row": row_name(r),
        "column": c + 1,
        "t": entry["t"],
        "n_sites": n_sites,
        "missing_sites": " ".join(map(str, entry["missing_sites"])),
        "n_objects": entry["n_objects"],
        "objects_per_site": entry["n_objects"] / n_sites if n_sites else None,
        "mean_area_px": entry["mean_area_px"],
    }
    row.update({k: v for k, v in entry.items() if k.startswith("mean_intensity_")})
    if truth is not None:
        row["true_count"] = truth.get((well, entry["t"]))
    return row


def write_wells_csv(rows: list[dict[str, Any]], path: str | Path) -> None:
    """All rows' columns (a timepoint without objects has no intensity means), ``true_count`` last."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    columns.sort(key=lambda name: name == "true_count")  # stable: only moves true_count to the end
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def assemble_plate(
    plate_json: str | Path, wells_dir: str | Path, out_dir: str | Path, backend: str = "zarr"
) -> list[dict[str, Any]]:
    """Everything per plate: images, objects.csv, wells.csv and heatmap.png under ``out_dir``."""
    plate = PlateStructure.load_json(plate_json)
    out = Path(out_dir)
    storage = backend_for(plate, backend)
    folders = {well: storage.well_folder(Path(wells_dir) / well) for well in plate.well_names}
    summaries = {w: folder.read_summary() for w, folder in folders.items()}
    # a killed assembly's temp plate is never renamed into place; this job owns these outputs, so clear it
    remove_stale_temps(*(out / name for name in PLATE_OUTPUTS))
    storage.assemble_images(plate, folders, out)  # plate.ome.zarr, or images/<well>/ TIFFs
    n_objects = concat_objects(plate.name, folders, out / "objects.csv")
    rows = well_rows(plate, summaries, wells_dir)
    write_wells_csv(rows, out / "wells.csv")
    plot_heatmap(plate, rows, out / "heatmap.png")
    try:
        storage.save_plate(plate, out)  # a server backend attaches the tables to its copy of the plate
    finally:
        storage.close()
    log.info("%s: %d wells, %d timepoints, %d objects", plate.name, len(summaries), len(plate.timepoints), n_objects)
    return rows
