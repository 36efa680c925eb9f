"""Direct pixel path: read an imported image's original file from OMERO's managed repository with tifffile.

Why: a job that runs next to the server (``omero.data_dir`` mounted and readable) can skip the API entirely;
the files are the ones the microscope wrote, and uncompressed TIFF data is memory-mapped instead of copied
through the server. Only files whose planes map unambiguously onto the image's Z/C/T are read this way
(OME-TIFF, or a plain TIFF with one varying dimension); anything else returns a reason and the caller
reads that image through the API, so the two paths always agree.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from openhcs_rules.errors import ImageReadError
from openhcs_rules.omero.structure import ImageInfo

log = logging.getLogger(__name__)

MANAGED_REPOSITORY = "ManagedRepository"
_OME_SUFFIXES = (".ome.tif", ".ome.tiff", ".ome.tf2", ".ome.tf8", ".ome.btf")
_TIFF_SUFFIXES = (".tif", ".tiff", *_OME_SUFFIXES)


@dataclass(frozen=True)
class Located:
    """Where an image's planes are: a file, a series in it, and how (z, c, t) maps to a page of the series."""

    path: Path
    series: int
    axes: tuple[str, ...]  # the non-YX axes of the series, outermost first, as 'Z', 'C', 'T' or '-'
    dims: tuple[int, ...]
    plane_shape: tuple[int, int]

    def page_of(self, z: int, c: int, t: int) -> int:
        index = tuple({"Z": z, "C": c, "T": t}.get(axis, 0) for axis in self.axes)
        return int(np.ravel_multi_index(index, self.dims)) if self.dims else 0


class _OpenFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.tif = tifffile.TiffFile(path)
        #: series index -> read-only memory map of its planes (uncompressed contiguous series only)
        self.mapped: dict[int, np.ndarray] = {}

    def close(self) -> None:
        self.mapped.clear()  # views already handed out keep their mapping alive
        self.tif.close()


def _map_contiguous(handle: _OpenFile, series: tifffile.TiffPageSeries, located: Located) -> np.ndarray:
    """Map a contiguous series as (planes, y, x), after checking the file really holds all of them."""
    dtype = np.dtype(series.dtype).newbyteorder(handle.tif.byteorder)
    count = int(np.prod(located.dims)) if located.dims else 1
    assert series.dataoffset is not None, "only contiguous series (with a data offset) are mapped"
    offset = int(series.dataoffset)
    end = offset + count * located.plane_shape[0] * located.plane_shape[1] * dtype.itemsize
    size = os.path.getsize(located.path)
    if end > size:
        raise ImageReadError(f"{located.path} is truncated: its pixel data should end at byte {end}, file has {size}")
    return np.memmap(located.path, dtype=dtype, mode="r", offset=offset, shape=(count, *located.plane_shape))


class DirectReader:
    """Plane reads from ``<data_dir>/ManagedRepository``; keeps a few files open (they are read plane by plane)."""

    def __init__(self, data_dir: str | os.PathLike[str], max_open: int = 8) -> None:
        self.repository = Path(data_dir) / MANAGED_REPOSITORY
        self.max_open = max_open
        self._open: OrderedDict[Path, _OpenFile] = OrderedDict()
        self._lock = threading.Lock()

    def usable(self) -> str | None:
        """None when the repository can be read here, else why not."""
        if not self.repository.is_dir():
            return f"{self.repository} is not a folder here (omero.data_dir not mounted on this machine?)"
        if not os.access(self.repository, os.R_OK | os.X_OK):
            return f"{self.repository} is not readable by this user"
        return None

    def _file(self, path: Path) -> _OpenFile:
        handle = self._open.get(path)
        if handle is not None:
            self._open.move_to_end(path)
            return handle
        handle = _OpenFile(path)
        self._open[path] = handle
        while len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        return handle

    def locate(self, info: ImageInfo) -> Located | str:
        """The file and page mapping of ``info``'s planes, or a reason why this image must use the API."""
        names = [(p, n) for p, n in info.files if n.lower().endswith(_TIFF_SUFFIXES)]
        ome = [(p, n) for p, n in names if n.lower().endswith(_OME_SUFFIXES)]
        candidates = ome or (names if len(info.files) == 1 and len(names) == 1 else [])
        if not candidates:
            listed = ", ".join(n for _, n in info.files[:4]) or "none"
            return f"its original files ({listed}) are not a single TIFF or an OME-TIFF set"
        reasons = []
        for rel_path, name in candidates[:3]:
            path = self.repository / rel_path / name
            if not os.access(path, os.R_OK):
                reasons.append(f"{path} is not readable")
                continue
            try:
                with self._lock:
                    handle = self._file(path)
                    found = _map_series(handle.tif, info, path)
            except (OSError, ValueError, tifffile.TiffFileError) as exc:
                reasons.append(f"{path}: {exc}")
                continue
            if isinstance(found, Located):
                return found
            reasons.append(found)
        return "; ".join(reasons)

    def read(self, located: Located, z: int, c: int, t: int) -> np.ndarray:
        """One plane as a native-endian array.

        Uncompressed contiguous series are memory-mapped once and planes are returned as read-only views,
        without a copy: pages are read when first touched, and a job that stacks its planes (as the pipeline
        does) copies each byte once instead of twice. Writing into such a plane raises instead of silently
        changing what later reads return; ``.copy()`` gives a writable one. Other files are decoded page by
        page with tifffile into new, writable arrays.
        """
        page = located.page_of(z, c, t)
        with self._lock:
            handle = self._file(located.path)
            series = handle.tif.series[located.series]
            mapped = handle.mapped.get(located.series)
            if mapped is None and series.dataoffset is not None:
                mapped = handle.mapped[located.series] = _map_contiguous(handle, series, located)
            if mapped is None:
                try:
                    tiff_page = series.pages[page]
                    if tiff_page is None:
                        raise ValueError("the series has no such page")
                    data = tiff_page.asarray()
                except Exception as exc:  # tifffile/imagecodecs raise many types for broken data
                    raise ImageReadError(
                        f"{located.path}: cannot decode page {page} ({type(exc).__name__}: {exc})"
                    ) from exc
                return np.asarray(data).reshape(data.shape[-2:]).astype(data.dtype.newbyteorder("="), copy=False)
        plane = mapped[page].view(np.ndarray)
        return plane if plane.dtype.isnative else plane.astype(plane.dtype.newbyteorder("="))

    def close(self) -> None:
        with self._lock:
            while self._open:
                _, handle = self._open.popitem()
                handle.close()


def _map_series(tif: tifffile.TiffFile, info: ImageInfo, path: Path) -> Located | str:
    """Check that series ``info.series`` holds exactly the image's planes and say how to index them."""
    if info.series >= len(tif.series):
        return f"{path} has {len(tif.series)} series, the image is series {info.series}"
    series = tif.series[info.series]
    axes = series.get_axes(False) if hasattr(series, "get_axes") else series.axes
    shape = series.get_shape(False) if hasattr(series, "get_shape") else series.shape
    pixels = info.pixels
    sizes = {"Z": pixels.size_z, "C": pixels.size_c, "T": pixels.size_t}
    if axes[-2:] != "YX" and not (axes[-3:-1] == "YX" and axes[-1] == "S" and shape[-1] == 1):
        return f"{path} series {info.series} has axes {axes}, not planes ending in YX"
    plane_at = axes.index("YX")
    if tuple(shape[plane_at : plane_at + 2]) != (pixels.size_y, pixels.size_x):
        return f"{path} planes are {tuple(shape[plane_at : plane_at + 2])}, OMERO says {(pixels.size_y, pixels.size_x)}"
    if np.dtype(series.dtype).newbyteorder("=") != pixels.dtype:
        return f"{path} holds {np.dtype(series.dtype).name}, OMERO says {pixels.dtype.name}"
    outer = [(a, n) for a, n in zip(axes[:plane_at], shape[:plane_at], strict=True) if n != 1 or a in sizes]
    varying = [axis for axis, n in sizes.items() if n > 1]
    mapped: list[str] = []
    for axis, n in outer:
        if axis in sizes:
            if n != sizes[axis]:
                return f"{path} has {n} along {axis}, OMERO says {sizes[axis]}"
            mapped.append(axis)
        elif n > 1 and len(varying) == 1 and n == sizes[varying[0]] and varying[0] not in mapped:
            mapped.append(varying[0])  # a plain multi-page TIFF: the one varying dimension
        elif n > 1:
            return f"{path} has an axis {axis} of length {n} that does not map onto Z, C or T"
        else:
            mapped.append("-")
    missing = [axis for axis, n in sizes.items() if n > 1 and axis not in mapped]
    if missing:
        return f"{path} series {info.series} ({axes}) has no axis for OMERO's {', '.join(missing)}"
    dims = tuple(n for (_, n) in outer)
    return Located(path, info.series, tuple(mapped), dims, (pixels.size_y, pixels.size_x))
