"""Rule ``assemble_plate``: the plate's OME-Zarr (or TIFF folder), its tables, assay quality and heatmap.

Tables (:mod:`openhcs_rules.jobs.tables`), each as Parquet and CSV, in CellProfiler/pycytominer names:
``objects`` (one row per object), ``images`` (one row per site and timepoint: its quality measures and QC
flag, :mod:`openhcs_rules.jobs.image_quality`), ``wells`` (one row per well and timepoint, the plate map's
columns joined, the readout normalised to the negative controls) and ``assay_quality.csv`` (Z' and SSMD per
timepoint, :mod:`openhcs_rules.jobs.assay_quality`). Pictures: ``heatmap.png``, ``qc_montage.png`` (every
well's thumbnail with its nuclei outlined, flagged wells framed), ``flatfield.png`` (the illumination
profiles); ``flagged_images.csv`` lists the flagged images with their reasons; ``plate.html`` shows the assay
quality, the wells table and the flagged images as a page (the report's view of the plate's numbers).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from openhcs_rules.core.files import remove_stale_temps
from openhcs_rules.demo.ground_truth import GROUND_TRUTH_FILE, read_ground_truth
from openhcs_rules.io.registry import backend_for
from openhcs_rules.io.well_folder import WellFolder
from openhcs_rules.jobs import tables
from openhcs_rules.jobs.assay_quality import DEFAULT_FEATURE, add_percent_of_negative, assay_quality
from openhcs_rules.jobs.heatmap import plot_heatmap
from openhcs_rules.jobs.image_quality import FLAG, flag_images, flagged_wells, image_rows
from openhcs_rules.jobs.plate_page import write_plate_page
from openhcs_rules.jobs.qc_figures import flatfield_figure, plate_montage
from openhcs_rules.plate.model import PlateStructure
from openhcs_rules.plate.naming import parse_well_name, row_name, well_name
from openhcs_rules.plate.platemap import PlateMap, read_platemap

log = logging.getLogger(__name__)

#: what the plate's assembly job writes under the plate's results folder
PLATE_OUTPUTS = (
    "plate.ome.zarr",
    "processed.ome.zarr",
    "images",
    "objects.csv",
    "objects.parquet",
    "wells.csv",
    "wells.parquet",
    "assay_quality.csv",
    "images.csv",
    "images.parquet",
    "flagged_images.csv",
    "plate.html",
    "qc_montage.png",
    "flatfield.png",
    "heatmap.png",
)


def true_counts(plate: PlateStructure) -> dict[tuple[str, int], int] | None:
    """True object counts per (well, timepoint), over the well's sites, for generated demo plates, else None."""
    if not (Path(plate.root) / GROUND_TRUTH_FILE).is_file():
        return None
    return {
        (well, t): sum(sites.values())
        for t in plate.timepoints
        for well, sites in read_ground_truth(plate.root, t).items()
    }


def write_objects_table(folders: dict[str, WellFolder], out_dir: Path, platemap: PlateMap | None = None) -> int:
    """``objects.parquet`` and ``objects.csv``: the wells' objects in plate order, in the field's names, with
    the plate map's columns; return the row count. A well without objects adds no row; a plate without any
    object still gets both files, with the identifying columns only."""
    ordered = sorted(folders, key=parse_well_name)
    table = tables.read_well_objects(folders[well].objects_csv for well in ordered)
    table = tables.order_columns(tables.annotate(table, platemap))
    tables.write_table(table, out_dir / "objects.parquet", out_dir / "objects.csv")
    return int(table.num_rows)


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


def wells_table_rows(
    rows: list[dict[str, Any]], platemap: PlateMap | None, feature: str = DEFAULT_FEATURE
) -> list[dict[str, Any]]:
    """The wells table: the per-well rows in the field's names, the plate map's columns after the
    identifying ones, and ``<feature>_PercentOfNegative``."""
    renamed = [{tables.well_column(key): value for key, value in row.items()} for row in rows]
    out = []
    for row in renamed:
        identity = {k: v for k, v in row.items() if not tables.is_feature(k)}
        annotation = platemap.metadata(row["Metadata_Well"]) if platemap is not None else {}
        out.append({**identity, **annotation, **{k: v for k, v in row.items() if tables.is_feature(k)}})
    add_percent_of_negative(out, platemap, feature)
    return out


def write_wells_table(rows: list[dict[str, Any]], out_dir: Path) -> None:
    """``wells.parquet`` and ``wells.csv``: metadata first, then features sorted by name."""
    tables.write_table(
        tables.order_columns(tables.rows_to_table(rows)), out_dir / "wells.parquet", out_dir / "wells.csv"
    )


def write_assay_quality(
    rows: list[dict[str, Any]], platemap: PlateMap | None, feature: str, path: Path
) -> list[dict[str, Any]]:
    """``assay_quality.csv``: Z' and SSMD of the controls per timepoint (or, empty, the reason why not)."""
    quality = assay_quality(rows, platemap, feature)
    columns = ["Metadata_Plate", "Metadata_Timepoint", "feature", "n_positive", "mean_positive", "sd_positive"]
    columns += ["n_negative", "mean_negative", "sd_negative", "z_prime", "ssmd", "note"]
    tables.write_table(tables.rows_to_table(quality, columns), None, path)
    return quality


def write_image_tables(plate: PlateStructure, summaries: dict[str, dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """``images.parquet``/``images.csv`` (every image, flagged or not) and ``flagged_images.csv`` (the
    flagged ones with their reasons); returns the rows."""
    rows = flag_images(image_rows(plate, summaries))
    table = tables.order_columns(tables.rows_to_table(rows))
    tables.write_table(table, out / "images.parquet", out / "images.csv")
    flagged = [row for row in rows if row.get(FLAG)]
    columns = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Timepoint", "Metadata_QCFlagReason"]
    tables.write_table(tables.rows_to_table(flagged, columns), None, out / "flagged_images.csv")
    return rows


def assemble_plate(
    plate_json: str | Path,
    wells_dir: str | Path,
    out_dir: str | Path,
    backend: str = "zarr",
    platemap: str | Path | None = None,
    control_feature: str = DEFAULT_FEATURE,
    nuclei_channel: int | str | None = None,
    illumination: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Everything per plate under ``out_dir`` (module docstring); ``platemap`` is the plate's map (CSV),
    ``nuclei_channel`` the channel the QC montage shows, ``illumination`` the plate's flat-field profiles."""
    plate = PlateStructure.load_json(plate_json)
    out = Path(out_dir)
    layout = [well_name(r, c) for r in range(plate.rows) for c in range(plate.columns)]
    plate_map = read_platemap(platemap, layout) if platemap else None
    storage = backend_for(plate, backend)
    folders = {well: storage.well_folder(Path(wells_dir) / well) for well in plate.well_names}
    summaries = {w: folder.read_summary() for w, folder in folders.items()}
    # a killed assembly's temp plate is never renamed into place; this job owns these outputs, so clear it
    remove_stale_temps(*(out / name for name in PLATE_OUTPUTS))
    storage.assemble_images(plate, folders, out)  # plate.ome.zarr, or images/<well>/ TIFFs
    n_objects = write_objects_table(folders, out, plate_map)
    rows = well_rows(plate, summaries, wells_dir)
    wells = wells_table_rows(rows, plate_map, control_feature)
    write_wells_table(wells, out)
    quality = write_assay_quality(wells, plate_map, control_feature, out / "assay_quality.csv")
    plot_heatmap(plate, rows, out / "heatmap.png")
    images = write_image_tables(plate, summaries, out)
    flagged = [
        {key: row.get(key) for key in ("Metadata_Well", "Metadata_Site", "Metadata_Timepoint", "Metadata_QCFlagReason")}
        for row in images
        if row.get(FLAG)
    ]
    write_plate_page(plate.name, wells, quality, flagged, out / "plate.html")
    plate_montage(plate, folders, out / "qc_montage.png", flagged_wells(images), channel=nuclei_channel)
    if illumination is not None:
        names = {index: plate.channel(index).name for index in plate.channel_indices}
        flatfield_figure(illumination, names, out / "flatfield.png")
    try:
        storage.save_plate(plate, out)  # a server backend attaches the tables to its copy of the plate
    finally:
        storage.close()
    log.info("%s: %d wells, %d timepoints, %d objects", plate.name, len(summaries), len(plate.timepoints), n_objects)
    return rows
