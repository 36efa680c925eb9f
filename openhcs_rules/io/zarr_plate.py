"""OME-Zarr (NGFF) HCS plates: per-well pixel arrays and field metadata written by well jobs, the plate by assembly.

Why two stages: each well job writes its own fields' arrays (plain zarr v3) and, in the same background
writer, each field's NGFF metadata (multiscales, channels, labels); the plate job then links those chunk
files into ``plate.ome.zarr/<row>/<col>/<field>`` (hard links, no pixel copy) and writes the plate and well
metadata, and the field metadata of wells written before jobs wrote it. Every NGFF block is the document
ome-zarr-py 0.18 writes for zarr v3 (NGFF 0.5), built here as plain JSON attributes: ome-zarr-py imports dask,
~1.3 s of every job that imported it, for what are a few dictionaries (a test compares both writers' files).
Metadata files (``zarr.json``) are copied, never linked, so writing plate metadata cannot alter a well
job's output.

A field's pixels are the instrument's (integer, every z plane: ``output.images: raw``, the default) or the
pipeline's float32 output (``processed``); integer images keep their type at every pyramid level. The
``nuclei`` labels have the image's axes and shape (c of size 1): a 2D segmentation is repeated on each z
plane of a raw z-stack, as NGFF asks of a label image.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openhcs_rules.core.files import atomic_path
from openhcs_rules.io.well_folder import Field
from openhcs_rules.plate.model import PlateStructure
from openhcs_rules.plate.naming import parse_well_name, row_name

IMAGE_AXES = ("t", "c", "z", "y", "x")
LABEL_AXES = ("t", "c", "z", "y", "x")  # NGFF labels keep the image's axes with c of size 1
LABEL_NAME = "nuclei"
#: the NGFF version of every block written here: what ome-zarr-py 0.18 writes for zarr v3 (``CurrentFormat``)
NGFF_VERSION = "0.5"
#: the plate of processed images that ``output.images: both`` adds beside ``plate.ome.zarr`` (raw images)
PROCESSED_PLATE = "processed.ome.zarr"
_COLORS = ("0000FF", "00FF00", "FF0000", "FF00FF", "FFFF00", "00FFFF")


def _pyramid(array: np.ndarray, levels: int, labels: bool) -> list[np.ndarray]:
    """Downsample y and x by 2 per level: mean for intensities, nearest (striding) for labels.

    Integer intensities (the instrument's raw pixels) stay in their type at every level, the means rounded:
    a uint16 plate is uint16 throughout its pyramid, as viewers and ``omero`` windows expect.
    """
    out = [array]
    integer = array.dtype.kind in "ui"
    for _ in range(levels - 1):
        prev = out[-1]
        y, x = prev.shape[-2] // 2 * 2, prev.shape[-1] // 2 * 2
        if y < 2 or x < 2:
            break
        if labels:
            out.append(np.ascontiguousarray(prev[..., 0:y:2, 0:x:2]))
        elif integer and array.dtype.itemsize <= 2:
            out.append(_mean_of_2x2_small_integers(prev, y, x))
        else:
            cropped = prev[..., :y, :x].astype(np.float32, copy=False)
            block = cropped.reshape(*prev.shape[:-2], y // 2, 2, x // 2, 2)
            mean = block.mean(axis=(-3, -1), dtype=np.float32)
            out.append(np.rint(mean).astype(array.dtype) if integer else mean)
    return out


def _mean_of_2x2_small_integers(prev: np.ndarray, y: int, x: int) -> np.ndarray:
    """The rounded mean of each 2x2 block of an 8- or 16-bit image, equal to the float32 block mean's.

    Four such values add up exactly in float32 (under 2**18, any order) and a quarter of that is exact too,
    so the mean equals ``block.mean(dtype=float32)`` bit for bit; summed from four strided views it is ~7x
    faster (no float32 copy of the whole level, no reshaped reduction). It is the last site's pyramid that a
    well job waits for before it can finish, and every other site's that shares a core with the pipeline.
    """
    total = prev[..., 0:y:2, 0:x:2].astype(np.float32)
    total += prev[..., 1:y:2, 0:x:2]
    total += prev[..., 0:y:2, 1:x:2]
    total += prev[..., 1:y:2, 1:x:2]
    total *= np.float32(0.25)
    return np.rint(total, out=total).astype(prev.dtype)


def field_pixels(image: np.ndarray) -> np.ndarray:
    """The image as a field stores it: integer pixels (raw, as acquired) as they are, anything else float32."""
    if image.dtype.kind in "ui":
        return image
    return image.astype(np.float32, copy=False)


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1,) * (len(shape) - 2) + (min(shape[-2], 1024), min(shape[-1], 1024))


#: chunk files named ``c.0.1.0.0.0`` beside the array's zarr.json instead of nested ``c/0/1/0/0/0``
#: folders: six times fewer directories to create when a well is written and again when the plate
#: links it in (a 1536-well plate made ~60,000 folders). Valid zarr v3, read by any zarr reader.
FLAT_CHUNK_KEYS = {"name": "default", "separator": "."}


# how pixel chunks are compressed: Blosc (a core zarr v3 codec, read by zarr-python, tensorstore, napari-ome-zarr
# and ome-zarr-py) with byte shuffle and zstd at level 1. Camera pixels are mostly noise in their low byte, so
# shuffling the bytes first lets a fast level compress better than zarr's default (zstd level 3, unshuffled):
# one 2048^2 site of 6 uint16 planes and its labels, 0.18 s and 16.7 MB instead of 0.38 s and 21.2 MB. A well
# job compresses every plane it writes, so this is a third of the well's write time.
def pixel_compressor() -> Any:
    """The codec every pixel array is written with (see above); zarr imported only when a job writes."""
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="zstd", clevel=1, shuffle="shuffle")


#: zarr writes every chunk, without first comparing it with the fill value to leave out the empty ones: that
#: comparison took half of a 2048^2 site's write (6 planes: 0.17 s, 0.08 s without), and a camera plane is never
#: all zeros. An empty label chunk (no object there) is then stored, compressed to a few bytes.
WRITE_EVERY_CHUNK = {"write_empty_chunks": True}


def _write_level(group: Any, level: int, array: np.ndarray, axes: tuple[str, ...]) -> None:
    """One pyramid level as array ``<level>`` of ``group``.

    ``dimension_names`` equal to the multiscales axes names: NGFF 0.5 requires them on every array, and the
    plate links these very arrays (their zarr.json copied), so the well job is where they must be written.
    """
    group.create_array(
        str(level),
        data=array,
        chunks=_chunks(array.shape),
        chunk_key_encoding=FLAT_CHUNK_KEYS,
        dimension_names=axes,
        compressors=[pixel_compressor()],
        config=WRITE_EVERY_CHUNK,
    )


def open_well_group(folder: str | Path) -> Any:
    """A new zarr v3 group for one well's fields (the caller makes the folder's appearance atomic)."""
    import zarr

    return zarr.open_group(store=str(folder), mode="w", zarr_format=3)


@dataclass
class FieldDescription:
    """What a field's NGFF metadata says beyond its pixels: names, channels and physical scale."""

    plate: str
    well: str
    channel_names: list[str]
    pixel_um: float = 1.0
    z_step_um: float = 1.0

    @classmethod
    def of(cls, plate: PlateStructure, well: str, channel_names: list[str]) -> FieldDescription:
        return cls(plate.name, well, channel_names, plate.pixel_size_um or 1.0, plate.z_step_um or 1.0)


def write_field(
    root: Any, index: int, data: Field, pyramid_levels: int = 3, describe: FieldDescription | None = None
) -> None:
    """Write one field's image pyramid (and label pyramid) as ``<index>/<level>`` arrays of ``root``.

    With ``describe``, the field's multiscales/omero/labels metadata is written too, here in the well job
    (wells run in parallel) rather than later in the plate's one assembly job.
    """
    group = root.create_group(str(index))
    for level, array in enumerate(_pyramid(field_pixels(data.image), pyramid_levels, False)):
        _write_level(group, level, array, IMAGE_AXES)
    if data.labels is not None:
        labels = data.labels.astype(np.int32, copy=False)[:, None]  # (t, 1, z, y, x)
        label_group = group.create_group("labels").create_group(LABEL_NAME)
        for level, array in enumerate(_pyramid(labels, pyramid_levels, True)):
            _write_level(label_group, level, array, LABEL_AXES)
    if describe is not None:
        write_field_metadata(group, str(index), describe)


def write_well_images(out_dir: str | Path, fields: dict[int, Field], pyramid_levels: int = 3) -> None:
    """Write one well's fields as zarr v3 arrays ``<field>/<level>`` (and ``<field>/labels/nuclei/<level>``).

    Atomic: written under a temporary name and renamed, so a killed job leaves nothing that looks done.
    """
    with atomic_path(out_dir) as tmp:
        root = open_well_group(tmp)
        for index in sorted(fields):
            write_field(root, index, fields[index], pyramid_levels)


def link_tree(source: Path, target: Path) -> None:
    """Mirror ``source`` into ``target``: chunk files hard-linked (copied across filesystems), metadata copied."""
    for directory, _, files in os.walk(source):
        rel = Path(directory).relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            src, dst = Path(directory) / name, target / rel / name
            if name in ("zarr.json", ".zattrs", ".zgroup", ".zarray"):
                shutil.copy2(src, dst)
                continue
            try:
                os.link(src, dst)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                shutil.copy2(src, dst)


def _channel_metadata(names: list[str], windows: list[tuple[float, float]]) -> dict[str, Any]:
    channels = []
    for i, (name, (low, high)) in enumerate(zip(names, windows, strict=True)):
        channels.append(
            {
                "label": name,
                "color": _COLORS[i % len(_COLORS)],
                "active": True,
                "window": {"start": float(low), "end": float(high), "min": float(low), "max": float(high)},
            }
        )
    return {"channels": channels, "rdefs": {"model": "color"}}


def assemble_plate_zarr(
    out_path: str | Path,
    plate: PlateStructure,
    well_dirs: Mapping[str, str | Path],
    channel_names: list[str],
    z_step_um: float | None = None,
) -> None:
    """Build ``plate.ome.zarr`` from the wells' arrays: chunk files linked, every NGFF metadata block written."""
    import zarr

    pixel = plate.pixel_size_um or 1.0
    z_step = z_step_um or plate.z_step_um or 1.0
    with atomic_path(out_path) as tmp:
        root = zarr.open_group(store=str(tmp), mode="w", zarr_format=3)
        rows = [row_name(i) for i in range(plate.rows)]
        columns = [str(i + 1) for i in range(plate.columns)]
        wells: list[dict[str, Any]] = []
        field_count = 0
        for well in sorted(well_dirs, key=parse_well_name):
            r, c = parse_well_name(well)
            wells.append({"path": f"{rows[r]}/{columns[c]}", "rowIndex": r, "columnIndex": c})
            source = Path(well_dirs[well])
            fields = sorted((p.name for p in source.iterdir() if p.is_dir() and p.name.isdigit()), key=int)
            field_count = max(field_count, len(fields))
            well_group = root.require_group(rows[r]).require_group(columns[c])
            for field in fields:
                link_tree(source / field, tmp / rows[r] / columns[c] / field)
            images: list[dict[str, Any]] = [{"path": f, "acquisition": 0} for f in fields]
            well_group.attrs["ome"] = {"version": NGFF_VERSION, "well": {"images": images}}
            describe = FieldDescription(plate.name, well, channel_names, pixel, z_step)
            for field in fields:
                field_dir = tmp / rows[r] / columns[c] / field
                if not has_dimension_names(field_dir):  # linked from a well job that predates strict NGFF 0.5
                    make_field_copy_strict(field_dir)
                if not has_field_metadata(field_dir):  # written by the well job unless it predates that
                    write_field_metadata(zarr.open_group(store=str(field_dir), mode="r+"), field, describe)
        root.attrs["ome"] = {
            "version": NGFF_VERSION,
            "plate": {
                "columns": [{"name": name} for name in columns],
                "rows": [{"name": name} for name in rows],
                "wells": wells,
                "name": plate.name,
                "field_count": field_count,
                "acquisitions": [{"id": 0, "name": plate.name}],
                "version": NGFF_VERSION,  # also inside the block, as ome-zarr-py writes it (ome-zarr-models asks)
            },
        }


def _datasets(group: Any, pixel: float, z_step: float) -> list[dict[str, Any]]:
    levels = sorted((k for k in group.array_keys() if k.isdigit()), key=int)
    full = group[levels[0]].shape
    datasets = []
    for level in levels:
        shape = group[level].shape
        factor_y, factor_x = full[-2] / shape[-2], full[-1] / shape[-1]
        scale = [1.0, 1.0, z_step, pixel * factor_y, pixel * factor_x]
        datasets.append({"path": level, "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    return datasets


_AXES = [
    {"name": "t", "type": "time"},
    {"name": "c", "type": "channel"},
    {"name": "z", "type": "space", "unit": "micrometer"},
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
]


def has_field_metadata(field_dir: Path) -> bool:
    """True when a field group's zarr.json already holds NGFF multiscales metadata (read as plain JSON)."""
    try:
        attributes = json.loads((field_dir / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return "multiscales" in attributes.get("ome", {})


def has_dimension_names(field_dir: Path) -> bool:
    """True when the field's first array names its dimensions, as every array of a well job since NGFF 0.5 does.

    One small read per field: the arrays of a well are all written by one job, so one tells for all.
    """
    try:
        return json.loads((field_dir / "0" / "zarr.json").read_text()).get("dimension_names") is not None
    except (OSError, ValueError):
        return False


def make_field_copy_strict(field_dir: Path) -> None:
    """Bring a field linked from an older well job's output up to strict NGFF 0.5, in the plate's copies only.

    Such wells are skipped by a rerun (same inputs, same run key) yet lack ``dimension_names`` and the
    labels group's ``ome.version``. The plate's ``zarr.json`` files are copies (see :func:`link_tree`), so
    completing them here leaves the well job's outputs as they were.
    """
    labels = field_dir / "labels"
    images = [field_dir]
    if labels.is_dir():
        images += [p for p in sorted(labels.iterdir()) if (p / "zarr.json").is_file()]
        _edit_json(labels / "zarr.json", _with_labels_version)
    for image in images:
        for level in sorted(p for p in image.iterdir() if p.name.isdigit()):
            _edit_json(level / "zarr.json", _with_dimension_names)


def _edit_json(path: Path, edit: Callable[[dict[str, Any]], bool]) -> None:
    """Rewrite a metadata file when ``edit`` changed its document (it says so)."""
    if path.is_file():
        document = json.loads(path.read_text())
        if edit(document):
            path.write_text(json.dumps(document, indent=2))


def _with_dimension_names(document: dict[str, Any]) -> bool:
    """Name an array's dimensions after the multiscales axes (both image and label arrays are t, c, z, y, x)."""
    if document.get("node_type") != "array" or document.get("dimension_names") is not None:
        return False
    if len(document["shape"]) != len(IMAGE_AXES):
        return False
    document["dimension_names"] = list(IMAGE_AXES)
    return True


def _with_labels_version(document: dict[str, Any]) -> bool:
    ome = document.get("attributes", {}).get("ome")
    if not ome or "version" in ome:
        return False
    document["attributes"]["ome"] = {"version": NGFF_VERSION, **ome}
    return True


def _update_ome(group: Any, entries: dict[str, Any]) -> None:
    """Add ``entries`` to a group's ``ome`` attributes, keeping what is there (one write of its zarr.json)."""
    group.attrs["ome"] = {**group.attrs.get("ome", {}), **entries}


def _multiscales(group: Any, name: str, pixel: float, z_step: float) -> list[dict[str, Any]]:
    """A multiscales block: the group's levels with their scales in µm, the t, c, z, y, x axes and a name."""
    return [{"datasets": _datasets(group, pixel, z_step), "name": name, "axes": _AXES}]


def write_field_metadata(group: Any, field: str, describe: FieldDescription) -> None:
    """A field's multiscales (with scales in µm), omero channels (names, colours, display windows) and labels.

    The blocks, their keys and their order are ome-zarr-py's (``write_multiscales_metadata``, ``add_metadata``
    and ``write_label_metadata``), with ``ome.version`` also on the ``labels`` group, which NGFF 0.5 requires
    of every OME group and ome-zarr-py 0.18 leaves out (strict validators, ome-zarr-models, refuse the plate).
    """
    pixel, z_step = describe.pixel_um, describe.z_step_um
    levels = sorted((k for k in group.array_keys() if k.isdigit()), key=int)
    coarse = group[levels[-1]]  # display windows from the smallest level: same percentiles, 1/16 the pixels
    sample = np.asarray(coarse[0, :, coarse.shape[2] // 2])  # (c, y, x) middle plane
    windows = [(float(np.percentile(p, 0.5)), float(np.percentile(p, 99.8))) for p in sample]
    _update_ome(
        group,
        {
            "version": NGFF_VERSION,
            "multiscales": _multiscales(group, f"{describe.plate} {describe.well} field {field}", pixel, z_step),
            "omero": _channel_metadata(describe.channel_names, windows),
        },
    )
    if "labels" in group.group_keys():
        labels_group = group["labels"]
        label = labels_group[LABEL_NAME]
        _update_ome(
            label,
            {
                "version": NGFF_VERSION,
                "multiscales": _multiscales(label, LABEL_NAME, pixel, z_step),
                "image-label": {"source": {"image": "../../"}, "version": NGFF_VERSION},
            },
        )
        listed = list(labels_group.attrs.get("ome", {}).get("labels", []))
        _update_ome(labels_group, {"version": NGFF_VERSION, "labels": [*listed, LABEL_NAME]})
