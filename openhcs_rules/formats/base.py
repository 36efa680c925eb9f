"""The contract every microscope format handler fulfils, and the TIFF reading they share.

A handler turns a plate folder into a :class:`~openhcs_rules.plate.model.PlateStructure` once (discovery)
and later reads single 2D planes for the well jobs. Discovery and reading are split because discovery runs
once per plate while reading runs in many processes that only have the saved ``plate.json``: the handler
must therefore be able to read a plane from ``plate.root`` + ``image.source`` alone, without state.

TIFF reading lives here because ImageXpress and Opera Phenix both store one plane per TIFF file, and a
truncated or corrupt file must produce the same clear :class:`ImageReadError` whichever format it came from.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import numpy as np
import tifffile

from openhcs_rules.errors import ImageReadError
from openhcs_rules.plate.model import ImageStructure, PlateStructure

#: storage backends a handler's planes can be materialised into (see the pipeline's memory/io layers)
DEFAULT_BACKENDS: tuple[str, ...] = ("disk", "zarr")


class FormatHandler(ABC):
    """One microscope format: recognise its folders, list its planes, read one plane.

    Handlers are stateless (everything learned in :meth:`parse` goes into the returned PlateStructure),
    so the registry can hand out a fresh instance wherever one is needed, including in worker processes.
    """

    #: the value stored in ``PlateStructure.format``; the registry dispatches :meth:`read_plane` on it
    name: ClassVar[str]
    #: backends this format's planes can be written to by the pipeline
    compatible_backends: ClassVar[tuple[str, ...]] = DEFAULT_BACKENDS

    @classmethod
    @abstractmethod
    def detect(cls, root: Path) -> bool:
        """True when ``root`` is a plate of this format. Must be cheap (it only peeks at names) and strict:
        claim a folder only when its files are consistent with the format, since the first handler that
        claims a folder reads it, and a wrong claim turns calibration files or another instrument's images
        into wells."""

    @classmethod
    def refusal(cls, root: Path) -> str | None:
        """What this format saw in a folder it did not claim (counts, example names), or None.

        The registry quotes it when no format claims a folder, so the user learns what was found and why
        it did not fit, not only what was looked for.
        """
        return None

    @abstractmethod
    def parse(self, root: Path, plate_name: str | None = None) -> PlateStructure:
        """List every plane of the plate under ``root`` (sources relative to ``root``)."""

    def read_plane(self, plate: PlateStructure, image: ImageStructure) -> np.ndarray:
        """Read one 2D plane. The default serves one-plane-per-TIFF formats; ``index[0]`` picks a page."""
        page = image.index[0] if image.index else 0
        return read_tiff_plane(Path(plate.root) / image.source, page=page, expected_shape=plate.image_shape)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} format={self.name!r}>"


# -- TIFF helpers ----------------------------------------------------------------------------------------
_REFETCH_HINT = "copy the file again from the instrument or its export, or remove it and rerun discovery"


@contextmanager
def open_tiff(path: str | Path) -> Iterator[tifffile.TiffFile]:
    """Open a TIFF and always close it; a missing or unparsable file becomes an ImageReadError.

    Why a context manager of our own: tifffile raises a zoo of exception types for broken files and keeps a
    file handle open until closed; long pipeline runs over thousands of files must not leak handles.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(
            f"image file {path} does not exist (or is not a file): restore it, or rerun discovery if the "
            "plate folder changed since plate.json was written"
        )
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # tifffile/imagecodecs raise many unrelated types for broken files
        raise ImageReadError(
            f"image file {path} is not a readable TIFF ({type(exc).__name__}: {exc}); it is probably "
            f"truncated or corrupt: {_REFETCH_HINT}"
        ) from exc
    try:
        yield tif
    finally:
        tif.close()


def get_tiff_page(tif: tifffile.TiffFile, path: Path, page: int = 0) -> tifffile.TiffPage:
    """Page ``page`` of an open TIFF; a file with no pages (truncated) or too few is an ImageReadError."""
    try:
        tiff_page = tif.pages[page]
    except (IndexError, ValueError) as exc:
        count = len(tif.pages)
        if count == 0:
            raise ImageReadError(
                f"image file {path} is truncated or corrupt: it holds no image (its TIFF directory is "
                f"missing, as happens when a copy is cut short): {_REFETCH_HINT}"
            ) from exc
        raise ImageReadError(
            f"image file {path} has no page {page}, only {count}: the plate structure does not match the "
            "file; rerun discovery"
        ) from exc
    if not isinstance(tiff_page, tifffile.TiffPage):  # a TiffFrame: load its full page
        tiff_page = tiff_page.aspage()
    return tiff_page


def _check_data_extent(tiff_page: tifffile.TiffPage, path: Path) -> None:
    """Refuse pages whose pixel data would lie past the end of the file.

    tifffile silently zero-fills missing strips of uncompressed files in some versions, so a half-copied
    file could otherwise be read as an image with a black lower half.
    """
    size = os.path.getsize(path)
    spans = zip(tiff_page.dataoffsets, tiff_page.databytecounts, strict=False)
    ends = [offset + count for offset, count in spans]
    if ends and max(ends) > size:
        raise ImageReadError(
            f"image file {path} is truncated: its pixel data should end at byte {max(ends)} but the file "
            f"has {size} bytes: {_REFETCH_HINT}"
        )


def _as_plane(data: np.ndarray, path: Path) -> np.ndarray:
    """Squeeze singleton axes; anything that is still not 2D (RGB, a stack in one page) is refused."""
    if data.ndim > 2:
        data = data.reshape([n for n in data.shape if n != 1] or [1, 1])
    if data.ndim != 2:
        raise ImageReadError(
            f"image file {path} holds an array of shape {data.shape}, not a single 2D grey plane: export "
            "one grey plane per file (no RGB, no multi-sample pages)"
        )
    return data


def read_tiff_plane(path: str | Path, page: int = 0, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read page ``page`` of a TIFF as a 2D array, or raise ImageReadError naming the file.

    Raises for a missing file, a truncated or corrupt file (any tifffile/imagecodecs error, or pixel data
    past the end of the file) and, when ``expected_shape`` is given, a plane whose shape differs from the
    plate's ``image_shape`` (later steps stack planes and would fail far from the cause).
    """
    path = Path(path)
    with open_tiff(path) as tif:
        tiff_page = get_tiff_page(tif, path, page)
        _check_data_extent(tiff_page, path)
        try:
            data = tiff_page.asarray()
        except Exception as exc:
            raise ImageReadError(
                f"image file {path} cannot be decoded ({type(exc).__name__}: {exc}); it is truncated or "
                f"corrupt: {_REFETCH_HINT}"
            ) from exc
    plane = _as_plane(np.asarray(data), path)
    if expected_shape is not None and tuple(plane.shape) != tuple(expected_shape):
        raise ImageReadError(
            f"image file {path} is {plane.shape[0]}x{plane.shape[1]} pixels but the plate's images are "
            f"{expected_shape[0]}x{expected_shape[1]}: all planes of a plate must have one size; remove or "
            "re-export the odd file (or rerun discovery if the plate was re-acquired)"
        )
    return plane


def tiff_page_info(path: str | Path, page: int = 0) -> tuple[tuple[int, int], str]:
    """(shape, dtype name) of one TIFF page from its header only, without decoding pixels."""
    path = Path(path)
    with open_tiff(path) as tif:
        tiff_page = get_tiff_page(tif, path, page)
        shape = tuple(n for n in tiff_page.shape if n != 1) or (1, 1)
        if len(shape) != 2:
            raise ImageReadError(
                f"image file {path} holds an array of shape {tiff_page.shape}, not a single 2D grey plane"
            )
        return (int(shape[0]), int(shape[1])), np.dtype(tiff_page.dtype).name
