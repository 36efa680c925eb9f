"""Plain data the adapter returns: what the rest of the package knows about OMERO objects.

Why not omero-py objects: everything above the adapter (structure building, path naming, the backend, the
storage plugin) then runs and is tested without omero-py types, and these records pickle and JSON-encode.
Indices here are OMERO's: 0-based row, column, Z, C and T.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: OMERO PixelsType values -> numpy dtypes ("bit" is packed and not supported)
PIXEL_TYPES: dict[str, str] = {
    "int8": "int8",
    "uint8": "uint8",
    "int16": "int16",
    "uint16": "uint16",
    "int32": "int32",
    "uint32": "uint32",
    "float": "float32",
    "double": "float64",
}


def omero_pixel_type(dtype: np.dtype | str) -> str:
    """The OMERO PixelsType value for a numpy dtype (float32 -> 'float')."""
    name = np.dtype(dtype).name
    for omero_name, numpy_name in PIXEL_TYPES.items():
        if numpy_name == name:
            return omero_name
    raise ValueError(f"OMERO has no pixel type for numpy {name}; convert to one of {sorted(PIXEL_TYPES.values())}")


@dataclass(frozen=True)
class PixelsRecord:
    pixels_id: int
    size_x: int
    size_y: int
    size_z: int
    size_c: int
    size_t: int
    pixels_type: str
    physical_size_x_um: float | None = None
    physical_size_z_um: float | None = None

    @property
    def dtype(self) -> np.dtype:
        if self.pixels_type not in PIXEL_TYPES:
            raise ValueError(f"OMERO pixel type {self.pixels_type!r} is not supported")
        return np.dtype(PIXEL_TYPES[self.pixels_type])


@dataclass(frozen=True)
class ImageRecord:
    image_id: int
    name: str
    series: int
    fileset_id: int | None
    pixels: PixelsRecord | None


@dataclass(frozen=True)
class WellRecord:
    well_id: int
    row: int
    column: int
    #: (wellsample id, image) in WellSample id order: the order fields were acquired / imported
    samples: tuple[tuple[int, ImageRecord], ...] = ()


@dataclass(frozen=True)
class ChannelRecord:
    index: int
    name: str | None
    emission_nm: float | None = None


@dataclass(frozen=True)
class PlateRecord:
    plate_id: int
    name: str
    rows: int | None
    columns: int | None
    wells: tuple[WellRecord, ...]
    channels: tuple[ChannelRecord, ...] = ()
    #: fileset id -> (path, name) of its original files, relative to the managed repository
    filesets: dict[int, tuple[tuple[str, str], ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleRecord:
    wellsample_id: int
    image_id: int
    image_name: str
    image_description: str


@dataclass(frozen=True)
class FileAnnotationRecord:
    annotation_id: int
    file_id: int
    name: str
    size: int
    sha1: str | None
    created_ms: int | None
