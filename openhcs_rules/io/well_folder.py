"""The well output folder ``wells/<well>/``: its layout, its done-check, writing it and reading it back.

Layout (one folder per well, written by that well's job only)::

    wells/<well>/
        images.zarr/   zarr layout: one group per field, <field>/<level> arrays (+ labels/nuclei/<level>)
        images/        disk layout: one TIFF per plane, canonical virtual names (labels: ``_labels_``)
        objects.csv    one row per object
        summary.json   written last: its presence (with the run's key) means the well is complete

Every output appears atomically (written under a temporary name, then renamed), images first and
``summary.json`` last, so a killed job leaves nothing that looks complete. The plate's assembly job and
the OMERO backend read the folder back through :meth:`WellFolder.read_fields` and :meth:`read_summary`.

A field's pixels travel as one :class:`Field` (image (t, c, z, y, x), labels (t, z, y, x)), made from a
well's plane dicts by :func:`stack_fields`, the one place planes are stacked into fields.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openhcs_rules.core.files import atomic_path, atomic_write_bytes, atomic_write_text, remove_stale_temps
from openhcs_rules.pipeline.executor import LabelKey, PlaneKey, WellResult

#: the images folder of each local layout (``output.backend``)
IMAGE_FOLDERS = {"zarr": "images.zarr", "disk": "images"}
OBJECTS_CSV = "objects.csv"
SUMMARY_JSON = "summary.json"
#: columns every objects.csv starts with; measurement columns follow, sorted
OBJECT_COLUMNS = ("plate", "well", "site", "z", "t", "label", "area_px", "centroid_y", "centroid_x")
#: what a TIFF label plane's name has instead of the channel's ``_w<c>_``
_LABELS_MARK = "_labels_"


@dataclass(frozen=True)
class Field:
    """Pixels of one field (site) of a well: image (t, c, z, y, x) and optional labels (t, z, y, x)."""

    image: np.ndarray
    labels: np.ndarray | None = None


def stack_fields(
    images: Mapping[PlaneKey, np.ndarray],
    labels: Mapping[LabelKey, np.ndarray] | None = None,
    dtype: Any = None,
) -> dict[int, Field]:
    """Per site: the planes stacked into a :class:`Field` (``dtype``: the image's type, default the planes').

    Channels, z planes and timepoints are sorted. A site's labels are kept when they cover the same z planes
    and timepoints as its images (segmenting before a projection leaves labels the image no longer has).
    """
    labels = labels or {}
    fields: dict[int, Field] = {}
    for site in sorted({PlaneKey(*k).site for k in images}):
        keys = [PlaneKey(*k) for k in images if k[0] == site]
        cs, zs, ts = (sorted({getattr(k, axis) for k in keys}) for axis in ("channel", "z", "t"))
        first = np.asarray(images[keys[0]])
        image = np.zeros((len(ts), len(cs), len(zs), *first.shape), dtype=dtype or first.dtype)
        for key in keys:
            plane = images[key]
            if plane.shape != first.shape:
                raise ValueError(f"field {site}: planes differ in shape ({plane.shape} and {first.shape})")
            image[ts.index(key.t), cs.index(key.channel), zs.index(key.z)] = plane
        label_keys = [LabelKey(*k) for k in labels if k[0] == site]
        stacked = None
        if label_keys and sorted({k.z for k in label_keys}) == zs and sorted({k.t for k in label_keys}) == ts:
            stacked = np.zeros((len(ts), len(zs), *first.shape), dtype=np.int32)
            for label_key in label_keys:
                stacked[ts.index(label_key.t), zs.index(label_key.z)] = labels[label_key]
        fields[site] = Field(image, stacked)
    return fields


class WellFolder:
    """One well's output folder; ``layout`` ('zarr' or 'disk') says how its images are stored.

    ``well`` (the well's name, in TIFF names and objects.csv) defaults to the folder's name.
    """

    def __init__(self, path: str | Path, layout: str = "zarr", well: str | None = None) -> None:
        if layout not in IMAGE_FOLDERS:
            raise ValueError(f"unknown image layout {layout!r}; known: {', '.join(IMAGE_FOLDERS)}")
        self.path, self.layout = Path(path), layout
        self.well = well or self.path.name

    def __repr__(self) -> str:
        return f"WellFolder({str(self.path)!r}, {self.layout!r}, {self.well!r})"

    @property
    def images(self) -> Path:
        return self.path / IMAGE_FOLDERS[self.layout]

    @property
    def objects_csv(self) -> Path:
        return self.path / OBJECTS_CSV

    @property
    def summary_json(self) -> Path:
        return self.path / SUMMARY_JSON

    # -- done-check ------------------------------------------------------------------------------------------
    def is_complete(self) -> bool:
        """True when summary.json and the images are there (by any run; two stats, nothing read)."""
        return self.summary_json.exists() and self.images.exists()

    def is_done(self, run_key: str) -> bool:
        """True when summary.json was written by a run with this key and the images are there."""
        if not self.is_complete():
            return False
        try:
            return json.loads(self.summary_json.read_text()).get("run_key") == run_key
        except (OSError, ValueError):
            return False

    def mark_not_done(self) -> None:
        """Remove summary.json, so the well counts as not done and a rerun redoes it."""
        self.summary_json.unlink(missing_ok=True)

    # -- writing ---------------------------------------------------------------------------------------------
    def clear_interrupted_writes(self) -> None:
        """Remove the temporaries that a killed run of this well left in its folder (its outputs only).

        A SIGKILLed job cannot clean up, and its half-written ``.images.zarr.<random>.tmp`` (a whole well's
        pixels) would otherwise outlive every successful rerun. The well's job owns this folder, so nothing
        else is writing these targets now.
        """
        names = (*IMAGE_FOLDERS.values(), OBJECTS_CSV, SUMMARY_JSON)
        remove_stale_temps(*(self.path / name for name in names))

    def image_writer(self, pyramid_levels: int = 3, describe: Any = None) -> WellImageWriter:
        """A context manager that writes the well's images site by site (see :class:`WellImageWriter`)."""
        return WellImageWriter(self, pyramid_levels, describe)

    def write_objects(self, objects: list[dict[str, Any]], plate: str) -> None:
        """``objects.csv``: the fixed columns, then the measurements' columns sorted."""
        extra = sorted({k for row in objects for k in row} - set(OBJECT_COLUMNS))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(OBJECT_COLUMNS) + extra, lineterminator="\n")
        writer.writeheader()
        for row in objects:
            writer.writerow({"plate": plate, "well": self.well, **row})
        atomic_write_bytes(self.objects_csv, buffer.getvalue().encode())

    def write_summary(self, summary: dict[str, Any]) -> None:
        """``summary.json``, last of the well's outputs: its presence means the well is complete."""
        atomic_write_text(self.summary_json, json.dumps(summary, indent=1))

    # -- reading back ----------------------------------------------------------------------------------------
    def read_summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = json.loads(self.summary_json.read_text())
        return summary

    def result_files(self) -> list[Path]:
        """The well's small result files (objects.csv, summary.json, ...), sorted by name."""
        return sorted(p for p in self.path.iterdir() if p.is_file() and not p.name.startswith("."))

    def read_fields(self) -> dict[int, Field]:
        """The well's processed fields by site, from ``images.zarr`` or ``images/`` (whichever is there)."""
        zarr_folder, tiff_folder = self.path / IMAGE_FOLDERS["zarr"], self.path / IMAGE_FOLDERS["disk"]
        if zarr_folder.is_dir():
            return _read_zarr_fields(zarr_folder)
        if tiff_folder.is_dir():
            return _read_tiff_fields(tiff_folder)
        raise FileNotFoundError(f"{self.path} has neither images.zarr nor images/: run process_well for it first")


class WellImageWriter:
    """Writes each site's images as soon as it is computed, in a background thread, into one atomic folder.

    Compression and file writes overlap the next site's processing; the folder only appears under its
    final name (``images.zarr`` or ``images``) once every site is written, so a killed job leaves nothing
    that looks complete.
    """

    def __init__(self, folder: WellFolder, pyramid_levels: int, describe: Any = None) -> None:
        self.folder, self.levels = folder, pyramid_levels
        self.describe = describe  # a zarr_plate.FieldDescription: write each field's NGFF metadata too
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer")
        self._futures: list[Future[None]] = []

    def __enter__(self) -> WellImageWriter:
        self._atomic = atomic_path(self.folder.images)
        self._tmp = self._atomic.__enter__()
        try:
            self._open()
        except BaseException as error:  # a full disk already here: no temp folder left, the error names it
            self._pool.shutdown(wait=False)
            self._atomic.__exit__(type(error), error, error.__traceback__)
            raise
        return self

    def _open(self) -> None:
        if self.folder.layout == "zarr":
            from openhcs_rules.io.zarr_plate import open_well_group

            self._root = open_well_group(self._tmp)
        else:
            self._tmp.mkdir()

    def submit(self, result: WellResult) -> None:
        if self.folder.layout == "zarr":
            from openhcs_rules.io.zarr_plate import write_field

            for site, data in stack_fields(result.images, result.labels, np.float32).items():
                job = self._pool.submit(write_field, self._root, site - 1, data, self.levels, self.describe)
                self._futures.append(job)
        else:
            self._futures.append(self._pool.submit(_write_tiffs, result, self._tmp, self.folder.well))

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        self._pool.shutdown(wait=True)
        failure = error
        if failure is None:
            for job in self._futures:
                if job.exception() is not None:
                    failure = job.exception()
                    break
        if failure is None:
            self._atomic.__exit__(None, None, None)
        else:
            self._atomic.__exit__(type(failure), failure, failure.__traceback__)
            if error is None:
                raise failure


def _label_filename(well: str, site: int, z: int, t: int) -> str:
    from openhcs_rules.plate.naming import virtual_filename

    return virtual_filename(well, site, 1, z, t).replace("_w1_", _LABELS_MARK)


def _write_tiffs(result: WellResult, folder: Path, well_name: str) -> None:
    """One TIFF per processed plane (and per label image) with canonical virtual names."""
    from openhcs_rules.io.disk import DiskBackend
    from openhcs_rules.plate.naming import virtual_filename

    disk = DiskBackend()
    for (site, channel, z, t), plane in sorted(result.images.items()):
        disk.save_image(plane, str(folder / virtual_filename(well_name, site, channel, z, t)))
    for (site, z, t), labels in sorted(result.labels.items()):
        disk.save_image(labels, str(folder / _label_filename(well_name, site, z, t)))


def _read_zarr_fields(folder: Path) -> dict[int, Field]:
    import zarr

    def pixels(group: zarr.Group, path: str) -> np.ndarray:
        node = group[path]
        if not isinstance(node, zarr.Array):
            raise ValueError(f"{folder}: {node.path} is a group, not an array")
        return np.asarray(node[:])

    root = zarr.open_group(store=str(folder), mode="r")
    fields: dict[int, Field] = {}
    for key in sorted((k for k in root.group_keys() if k.isdigit()), key=int):
        group = root[key]
        assert isinstance(group, zarr.Group)  # group_keys() names groups only
        labels = pixels(group, "labels/nuclei/0")[:, 0] if "labels" in group else None
        fields[int(key) + 1] = Field(pixels(group, "0"), labels)
    return fields


def _read_tiff_fields(folder: Path) -> dict[int, Field]:
    import tifffile

    from openhcs_rules.plate.naming import parse_virtual_filename

    planes: dict[PlaneKey, np.ndarray] = {}
    labels: dict[LabelKey, np.ndarray] = {}
    for path in sorted(folder.glob("*.tif")):
        if _LABELS_MARK in path.name:
            parts = parse_virtual_filename(path.name.replace(_LABELS_MARK, "_w1_"))
            labels[LabelKey(int(parts["site"]), int(parts["z"]), int(parts["t"]))] = tifffile.imread(path)
        else:
            parts = parse_virtual_filename(path.name)
            key = PlaneKey(int(parts["site"]), int(parts["channel"]), int(parts["z"]), int(parts["t"]))
            planes[key] = tifffile.imread(path)
    return stack_fields(planes, labels)
