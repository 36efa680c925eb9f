"""The well output folder ``wells/<well>/``: its layout, its done-check, writing it and reading it back.

Layout (one folder per well, written by that well's job only)::

    wells/<well>/
        images.zarr/   zarr layout: one group per field, <field>/<level> arrays (+ labels/nuclei/<level>);
                       with ``output.images: both`` the processed fields too, under ``processed/<field>``
        images/        disk layout: one TIFF per plane, canonical virtual names (labels: ``_labels_``);
                       with ``both`` the processed planes under ``images/processed/``
        objects.csv    one row per object
        summary.json   written last: its presence (with the run's key) means the well is complete

What the field images hold is ``output.images`` (:data:`IMAGE_CONTENTS`): ``raw``, the planes as the
instrument wrote them (their own type, every z plane and channel), or ``processed``, the pipeline's float32
output; the labels are written beside either. A 2D segmentation (one label plane per timepoint, as after a
z projection) of a z-stack is repeated on every z plane: NGFF wants a label image of the image's shape.

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
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from openhcs_rules.core.files import atomic_path, atomic_write_bytes, atomic_write_text, remove_stale_temps
from openhcs_rules.core.priority import lower_helper_priority
from openhcs_rules.pipeline.executor import LabelKey, PlaneKey, WellResult

#: the images folder of each local layout (``output.backend``)
IMAGE_FOLDERS = {"zarr": "images.zarr", "disk": "images"}
OBJECTS_CSV = "objects.csv"
SUMMARY_JSON = "summary.json"
#: columns every objects.csv starts with; measurement columns follow, sorted
OBJECT_COLUMNS = ("plate", "well", "site", "z", "t", "label", "area_px", "centroid_y", "centroid_x")
#: what a TIFF label plane's name has instead of the channel's ``_w<c>_``
_LABELS_MARK = "_labels_"
#: ``output.images``: what a well's field images hold (see the module's text)
IMAGE_CONTENTS = ("raw", "processed", "both")
#: sites a well's writer may hold not yet written; the next submit waits for the oldest beyond that. Its thread
#: runs at a helper's priority (core.priority): on a machine whose cores are all busy it can fall behind the
#: kernels, and each site it holds is that site's planes and labels in memory
MAX_UNWRITTEN_SITES = 2
#: where ``both`` puts the processed images: a group of ``images.zarr``, a folder of ``images/``
PROCESSED = "processed"

T = TypeVar("T")


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

    Channels, z planes and timepoints are sorted. A site's labels are kept when they cover the same timepoints
    as its images and either the same z planes or a single one, which then stands for every z plane (a 2D
    segmentation of a projection, kept with the raw z-stack); other labels (segmenting before a projection
    leaves labels the image no longer has) and labels of another plane size are left out.
    """
    labels = labels or {}
    fields: dict[int, Field] = {}
    for site in sorted({PlaneKey(*k).site for k in images}):
        keys = [PlaneKey(*k) for k in images if k[0] == site]
        cs, zs, ts = (sorted({getattr(k, axis) for k in keys}) for axis in ("channel", "z", "t"))
        first = np.asarray(images[keys[0]])
        kind = dtype or np.result_type(*(np.asarray(images[k]).dtype for k in keys))
        image = np.zeros((len(ts), len(cs), len(zs), *first.shape), dtype=kind)
        for key in keys:
            plane = images[key]
            if plane.shape != first.shape:
                raise ValueError(f"field {site}: planes differ in shape ({plane.shape} and {first.shape})")
            image[ts.index(key.t), cs.index(key.channel), zs.index(key.z)] = plane
        site_labels = {LabelKey(*k): v for k, v in labels.items() if k[0] == site}
        fields[site] = Field(image, _stack_labels(site_labels, zs, ts, first.shape))
    return fields


def _stack_labels(
    labels: Mapping[LabelKey, np.ndarray], zs: list[int], ts: list[int], shape: tuple[int, ...]
) -> np.ndarray | None:
    """One site's label planes as (t, z, y, x) over the image's z planes, or None where they do not fit it."""
    label_zs = sorted({k.z for k in labels})
    if not labels or sorted({k.t for k in labels}) != ts or any(np.shape(p) != shape for p in labels.values()):
        return None
    if label_zs != zs and len(label_zs) != 1:
        return None
    stacked = np.zeros((len(ts), len(zs), *shape), dtype=np.int32)
    for key, plane in labels.items():
        if label_zs == zs:
            stacked[ts.index(key.t), zs.index(key.z)] = plane
        else:  # one plane for the whole stack: the same objects on every z plane
            stacked[ts.index(key.t)] = plane
    return stacked


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

    def image_writer(self, pyramid_levels: int = 3, describe: Any = None, images: str = "processed") -> WellImageWriter:
        """A context manager that writes the well's images site by site (see :class:`WellImageWriter`).

        ``images`` (:data:`IMAGE_CONTENTS`) says what the field images hold; the well job passes
        ``output.images`` (default ``raw``), and ``processed`` here keeps this method's earlier meaning.
        """
        return WellImageWriter(self, pyramid_levels, describe, images)

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
        """The well's fields by site (what ``output.images`` put there), from ``images.zarr`` or ``images/``."""
        zarr_folder, tiff_folder = self.path / IMAGE_FOLDERS["zarr"], self.path / IMAGE_FOLDERS["disk"]
        if zarr_folder.is_dir():
            return _read_zarr_fields(zarr_folder)
        if tiff_folder.is_dir():
            return _read_tiff_fields(tiff_folder)
        raise FileNotFoundError(f"{self.path} has neither images.zarr nor images/: run process_well for it first")

    @property
    def processed_images(self) -> Path:
        """Where ``output.images: both`` put the processed images (a group or folder inside :attr:`images`)."""
        return self.images / PROCESSED

    def has_processed_images(self) -> bool:
        """True when the well kept processed images beside raw ones (``output.images: both``)."""
        return self.processed_images.is_dir()

    def read_overview(self, site: int = 1, channel: int = 0, size: int = 128) -> Overview | None:
        """A small picture of one field for a plate montage: bounded reads, whatever the image size.

        ``channel`` is the position on the field's channel axis (channels sorted by index). The middle z plane
        at the first timepoint, from the coarsest pyramid level that is still at least ``size`` pixels (zarr),
        or from the one TIFF of that plane (disk); then block-averaged to at most ``size`` pixels a side, and
        the labels strided to the same grid (nearest: outlines stay object borders). None when the well has
        no such field.
        """
        zarr_folder, tiff_folder = self.path / IMAGE_FOLDERS["zarr"], self.path / IMAGE_FOLDERS["disk"]
        if zarr_folder.is_dir():
            found = _zarr_overview(zarr_folder, site, channel, size)
        elif tiff_folder.is_dir():
            found = _tiff_overview(tiff_folder, site, channel)
        else:
            return None
        if found is None:
            return None
        return _shrunk(*found, size)


@dataclass(frozen=True)
class Overview:
    """A field's thumbnail: one channel's float32 pixels (y, x) and its labels on the same grid (or None)."""

    image: np.ndarray
    labels: np.ndarray | None


class WellImageWriter:
    """Writes each site's images as soon as it is computed, in a background thread, into one atomic folder.

    Compression and file writes overlap the next site's processing; the folder only appears under its
    final name (``images.zarr`` or ``images``) once every site is written, so a killed job leaves nothing
    that looks complete. ``images`` (:data:`IMAGE_CONTENTS`) picks the pixels: the planes as read
    (``WellResult.raw``), the pipeline's output, or both (processed under :data:`PROCESSED`).
    """

    def __init__(
        self, folder: WellFolder, pyramid_levels: int, describe: Any = None, images: str = "processed"
    ) -> None:
        if images not in IMAGE_CONTENTS:
            raise ValueError(f"unknown images {images!r}; known: {', '.join(IMAGE_CONTENTS)}")
        self.folder, self.levels, self.images = folder, pyramid_levels, images
        self.describe = describe  # a zarr_plate.FieldDescription: write each field's NGFF metadata too
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer", initializer=lower_helper_priority)
        self._futures: list[Future[None]] = []
        self._unwritten: deque[list[Future[None]]] = deque()  # each submitted site's writes, oldest first

    def __enter__(self) -> WellImageWriter:
        self._atomic = atomic_path(self.folder.images)
        self._tmp = self._atomic.__enter__()
        if self.folder.layout == "zarr":
            # opened by the writer's thread, first: importing zarr (~0.2 s) overlaps the first site's processing
            # instead of delaying it; a failure (a full disk) is raised by the next submit, or at the end
            self._futures.append(self._pool.submit(self._open))
            return self
        try:
            self._open()
        except BaseException as error:  # a full disk already here: no temp folder left, the error names it
            self._pool.shutdown(wait=False)
            self._atomic.__exit__(type(error), error, error.__traceback__)
            raise
        return self

    def _open(self) -> None:
        both = self.images == "both"
        if self.folder.layout == "zarr":
            from openhcs_rules.io.zarr_plate import open_well_group

            self._root = open_well_group(self._tmp)
            self._roots = {"": self._root, PROCESSED: self._root.create_group(PROCESSED) if both else None}
        else:
            self._tmp.mkdir()
            if both:
                (self._tmp / PROCESSED).mkdir()

    def _contents(self, result: WellResult) -> list[tuple[str, Mapping[PlaneKey, Any], Any]]:
        """(where, planes, dtype) of each image the well keeps: ``""`` is the field image itself."""
        processed = (result.images, np.float32)
        if self.images == "processed":
            return [("", *processed)]
        if not result.raw:
            raise ValueError(
                f"output.images {self.images!r} writes the planes as read, and this result carries none "
                "(WellResult.raw is empty: the caller did not keep them)"
            )
        raw = ("", result.raw, None)  # None: the planes' own type (uint16 for most cameras)
        return [raw] if self.images == "raw" else [raw, (PROCESSED, *processed)]

    def submit(self, result: WellResult) -> None:
        opened = self._futures[0] if self._futures and self.folder.layout == "zarr" else None
        failed = opened.exception() if opened is not None and opened.done() else None
        if failed is not None:
            raise failed  # the well's group could not be made (a full disk): stop the well here
        while len(self._unwritten) >= MAX_UNWRITTEN_SITES:
            wait(self._unwritten.popleft())  # a failed write is raised at the end, with the others
        writes: list[Future[None]] = []
        for where, planes, dtype in self._contents(result):
            if self.folder.layout == "zarr":
                for site, data in stack_fields(planes, result.labels, dtype).items():
                    writes.append(self._pool.submit(self._write_field, where, site - 1, data))
            else:
                folder = self._tmp / where if where else self._tmp
                writes.append(self._pool.submit(_write_tiffs, planes, result.labels, folder, self.folder.well))
        self._futures.extend(writes)
        self._unwritten.append(writes)

    def _write_field(self, where: str, index: int, data: Field) -> None:
        """One field into the group of ``where`` (made by :meth:`_open`, earlier in the same thread)."""
        from openhcs_rules.io.zarr_plate import write_field

        write_field(self._roots[where], index, data, self.levels, self.describe)

    def run(self, work: Callable[..., T], *args: Any) -> Future[T]:
        """``work(*args)`` in the writer's thread, after the writes submitted so far: other per-site work that
        can overlap the next site's processing (the well job's image quality measures). Take its result with
        :func:`take`, which does the work in the caller's thread instead when it has not started yet."""
        return self._pool.submit(work, *args)

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


def take(job: Future[T], work: Callable[..., T], *args: Any) -> T:
    """The result of ``job`` (``work(*args)`` given to :meth:`WellImageWriter.run`), done here when it has not
    started: at a well's end the caller would only wait, so the work runs in both threads instead of queueing
    behind the last site's writes."""
    if job.cancel():
        return work(*args)
    return job.result()


def _label_filename(well: str, site: int, z: int, t: int) -> str:
    from openhcs_rules.plate.naming import virtual_filename

    return virtual_filename(well, site, 1, z, t).replace("_w1_", _LABELS_MARK)


def _write_tiffs(
    planes: Mapping[PlaneKey, np.ndarray], labels: Mapping[LabelKey, np.ndarray], folder: Path, well_name: str
) -> None:
    """One TIFF per plane, in the plane's own type (and per label image), with canonical virtual names.

    Labels are written as the pipeline made them (one plane per timepoint after a projection); reading them
    back (:func:`stack_fields`) repeats such a plane over the image's z planes.
    """
    from openhcs_rules.io.disk import DiskBackend
    from openhcs_rules.plate.naming import virtual_filename

    disk = DiskBackend()
    for (site, channel, z, t), plane in sorted(planes.items()):
        disk.save_image(plane, str(folder / virtual_filename(well_name, site, channel, z, t)))
    for (site, z, t), label_plane in sorted(labels.items()):
        disk.save_image(label_plane, str(folder / _label_filename(well_name, site, z, t)))


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


# -- thumbnails (plate montage) ------------------------------------------------------------------------------
def _zarr_overview(folder: Path, site: int, channel: int, size: int) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The middle z plane of one channel at t 1 from the coarsest level of at least ``size`` px, with labels."""
    import zarr

    root = zarr.open_group(store=str(folder), mode="r")
    key = str(site - 1)
    if key not in root.group_keys():
        return None
    group = root[key]
    assert isinstance(group, zarr.Group)  # group_keys() names groups only
    levels = sorted((k for k in group.array_keys() if k.isdigit()), key=int)
    chosen = levels[0]
    for level in levels:  # finest first: keep the last that is still large enough
        node = group[level]
        assert isinstance(node, zarr.Array)
        if max(node.shape[-2:]) >= size:
            chosen = level
    array = group[chosen]
    assert isinstance(array, zarr.Array)
    if channel >= array.shape[1]:
        return None
    z = array.shape[2] // 2
    image = np.asarray(array[0, channel, z], dtype=np.float32)
    labels = None
    if "labels" in group.group_keys():
        path = f"labels/nuclei/{chosen}"
        try:
            label_array = group[path]
        except KeyError:
            label_array = None
        if isinstance(label_array, zarr.Array):
            labels = np.asarray(label_array[0, 0, min(z, label_array.shape[2] - 1)])
    return image, labels


def _tiff_overview(folder: Path, site: int, channel: int) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The middle z plane of one channel at the first timepoint from the well's TIFFs, with its labels."""
    import tifffile

    from openhcs_rules.plate.naming import parse_virtual_filename

    planes: dict[tuple[int, int, int], Path] = {}  # (channel, t, z)
    label_planes: dict[tuple[int, int], Path] = {}  # (t, z)
    for path in folder.glob(f"*_s{site:03d}_*.tif"):
        is_labels = _LABELS_MARK in path.name
        parts = parse_virtual_filename(path.name.replace(_LABELS_MARK, "_w1_") if is_labels else path.name)
        if int(parts["site"]) != site:
            continue
        t, z = int(parts["t"]), int(parts["z"])
        if is_labels:
            label_planes[(t, z)] = path
        else:
            planes[(int(parts["channel"]), t, z)] = path
    channels = sorted({c for c, _, _ in planes})
    if channel >= len(channels):
        return None
    wanted = channels[channel]
    first_t = min(t for c, t, _ in planes if c == wanted)
    zs = sorted(z for c, t, z in planes if c == wanted and t == first_t)
    middle = zs[len(zs) // 2]
    image = np.asarray(tifffile.imread(planes[(wanted, first_t, middle)]), dtype=np.float32)
    label_zs = sorted(z for t, z in label_planes if t == first_t)
    labels = None
    if label_zs:  # the same z plane, or the one plane of a 2D segmentation
        labels = np.asarray(tifffile.imread(label_planes[(first_t, middle if middle in label_zs else label_zs[0])]))
    return image, labels


def _shrunk(image: np.ndarray, labels: np.ndarray | None, size: int) -> Overview:
    """Block-average the image (stride the labels) by the smallest whole factor that fits ``size`` px a side."""
    if labels is not None and labels.shape != image.shape:
        labels = None  # not on the image's grid: no outlines rather than misplaced ones
    factor = max(1, -(-max(image.shape) // size))
    if factor > 1:
        y, x = image.shape[0] // factor * factor, image.shape[1] // factor * factor
        blocks = image[:y, :x].reshape(y // factor, factor, x // factor, factor)
        image = blocks.mean(axis=(1, 3), dtype=np.float32)
        if labels is not None:
            labels = np.ascontiguousarray(labels[:y:factor, :x:factor])
    return Overview(image.astype(np.float32, copy=False), labels)
