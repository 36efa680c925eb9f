"""OMERO plate -> :class:`PlateStructure`, and the per-image facts a worker needs to read pixels.

OMERO counts rows, columns, Z, C and T from 0; the plate model counts site, channel, z and t from 1 and names
wells 'A01'..'AF48'. This module is the one place that converts, so a 1536-well plate's row 26 is 'AA'
everywhere. Fields (sites) are a well's WellSamples in id order, the order the import created them.

Everything a worker needs to read a plane later travels in ``plate.metadata['omero']``: connection
parameters (no password), and per image its Pixels id, sizes, type, series and fileset files.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from openhcs_rules.omero.params import OmeroParams, parse_plate_url, virtual_root
from openhcs_rules.omero.records import PixelsRecord, PlateRecord
from openhcs_rules.plate.model import ChannelInfo, ImageKey, ImageStructure, PlateStructure, build_wells
from openhcs_rules.plate.naming import infer_layout, well_name

FORMAT_NAME = "omero"


@dataclass(frozen=True)
class ImageInfo:
    """What reading one OMERO image needs: its Pixels, its series in the file set, and the set's files."""

    image_id: int
    pixels: PixelsRecord
    series: int
    files: tuple[tuple[str, str], ...]


def plate_structure(record: PlateRecord, params: OmeroParams, plate_name: str | None = None) -> PlateStructure:
    """Build the plate structure from one :class:`PlateRecord` (no server calls)."""
    images: list[ImageStructure] = []
    image_meta: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    empty: list[str] = []
    shapes: set[tuple[int, int]] = set()
    dtypes: set[str] = set()
    for well in record.wells:
        name = well_name(well.row, well.column)
        if not well.samples:
            empty.append(name)
            continue
        for site, (_sample_id, image) in enumerate(well.samples, start=1):
            pixels = image.pixels
            if pixels is None:
                warnings.append(f"well {name} field {site}: OMERO image {image.image_id} has no pixels; skipped")
                continue
            shapes.add((pixels.size_y, pixels.size_x))
            dtypes.add(pixels.pixels_type)
            image_meta[str(image.image_id)] = {
                "pixels_id": pixels.pixels_id,
                "size": [pixels.size_x, pixels.size_y, pixels.size_z, pixels.size_c, pixels.size_t],
                "type": pixels.pixels_type,
                "series": image.series,
                "fileset": image.fileset_id,
            }
            source = f"image/{image.image_id}"
            for t in range(pixels.size_t):
                for c in range(pixels.size_c):
                    for z in range(pixels.size_z):
                        key = ImageKey(name, site, c + 1, z + 1, t + 1)
                        images.append(ImageStructure(key, source, (t, c, z)))
    if empty:
        shown = ", ".join(empty[:12]) + (" ..." if len(empty) > 12 else "")
        warnings.append(
            f"{len(empty)} well(s) of OMERO plate {record.plate_id} have no images and are skipped: {shown}"
        )
    if len(shapes) > 1:
        warnings.append(f"images of OMERO plate {record.plate_id} have different sizes {sorted(shapes)}")
    positions = [well_name(w.row, w.column) for w in record.wells]
    if record.rows and record.columns:
        rows, columns = int(record.rows), int(record.columns)
    else:
        rows, columns = infer_layout(positions) if positions else (0, 0)
    first = next((img.pixels for w in record.wells for _, img in w.samples if img.pixels is not None), None)
    size_c = max((img.pixels.size_c for w in record.wells for _, img in w.samples if img.pixels), default=0)
    known = {ch.index: ch for ch in record.channels}
    channels = []
    for c in range(size_c):
        found = known.get(c)
        name = found.name if found is not None and found.name else f"w{c + 1}"
        channels.append(ChannelInfo(c + 1, name, found.emission_nm if found is not None else None))
    metadata = {
        "omero": {
            "url": params.plate_url(record.plate_id),
            "plate_id": record.plate_id,
            "plate_name": record.name,
            "images": image_meta,
            "filesets": {str(k): [list(f) for f in v] for k, v in record.filesets.items()},
            "empty_wells": empty,
        }
    }
    return PlateStructure(
        name=plate_name or record.name,
        format=FORMAT_NAME,
        root=virtual_root(record.plate_id),
        rows=rows,
        columns=columns,
        channels=channels,
        wells=build_wells(images),
        image_shape=next(iter(shapes)) if len(shapes) == 1 else None,
        dtype=first.dtype.name if first is not None and len(dtypes) == 1 else None,
        pixel_size_um=first.physical_size_x_um if first is not None else None,
        z_step_um=first.physical_size_z_um if first is not None else None,
        warnings=warnings,
        metadata=metadata,
    )


def omero_meta(plate: PlateStructure) -> dict[str, Any]:
    meta = plate.metadata.get("omero")
    if not isinstance(meta, dict) or "url" not in meta:
        raise ValueError(f"plate {plate.name} was not discovered from OMERO (no metadata['omero']); rerun discovery")
    return meta


def plate_params(plate: PlateStructure) -> tuple[OmeroParams, int]:
    """Connection parameters and plate id of an OMERO plate structure (from its saved URL)."""
    return parse_plate_url(omero_meta(plate)["url"])


def image_info(plate: PlateStructure, image: ImageStructure) -> ImageInfo:
    """Everything needed to read ``image``'s pixels, from ``plate.json`` alone."""
    meta = omero_meta(plate)
    kind, _, ident = image.source.partition("/")
    if kind != "image" or ident not in meta["images"]:
        raise ValueError(f"{image.source!r} is not an image of OMERO plate {meta['plate_id']}; rerun discovery")
    entry = meta["images"][ident]
    size_x, size_y, size_z, size_c, size_t = entry["size"]
    pixels = PixelsRecord(int(entry["pixels_id"]), size_x, size_y, size_z, size_c, size_t, entry["type"])
    files = tuple(tuple(f) for f in meta["filesets"].get(str(entry.get("fileset")), []))
    return ImageInfo(int(ident), pixels, int(entry.get("series") or 0), files)


# -- cache: one load per plate per process -----------------------------------------------------------------
_CACHE: dict[tuple[str, int, str, int, bool], PlateStructure] = {}
_CACHE_LOCK = threading.Lock()


def load_plate_structure(
    params: OmeroParams, plate_id: int, plate_name: str | None = None, session: Any = None, refresh: bool = False
) -> PlateStructure:
    """The plate's structure, loaded with a constant number of calls once per process and then cached."""
    from openhcs_rules.omero.adapter import OmeroSession

    with_files = bool(params.data_dir)
    key = (params.host, params.port, params.user, int(plate_id), with_files)
    with _CACHE_LOCK:
        if not refresh and key in _CACHE:
            cached = _CACHE[key]
            return cached if plate_name in (None, cached.name) else _renamed(cached, plate_name)
    own = session is None
    session = session or OmeroSession(params)
    try:
        record = session.load_plate(plate_id, with_files=with_files)
    finally:
        if own:
            session.close()
    plate = plate_structure(record, params, plate_name)
    with _CACHE_LOCK:
        _CACHE[key] = plate
    return plate


def _renamed(plate: PlateStructure, name: str | None) -> PlateStructure:
    return PlateStructure.from_dict({**plate.to_dict(), "name": name})


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
