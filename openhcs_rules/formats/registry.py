"""Which handler reads which plate: an ordered, open list of format handlers.

Detection asks each registered handler in order and takes the first that recognises the folder, so more
specific formats should be registered before looser ones. The list is open: other modules (the OME-Zarr
handler, plugins) call :func:`register_handler` at import time. Reading a plane dispatches on
``plate.format``, the handler name saved in ``plate.json``, so a worker process needs no detection.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from openhcs_rules.errors import FormatError
from openhcs_rules.formats.base import FormatHandler
from openhcs_rules.formats.imagexpress import ImageXpressHandler
from openhcs_rules.formats.ome_zarr import OmeZarrHandler
from openhcs_rules.formats.omero import OmeroFormatHandler
from openhcs_rules.formats.opera_phenix import OperaPhenixHandler
from openhcs_rules.formats.pattern import PatternHandler
from openhcs_rules.formats.yokogawa import YokogawaHandler
from openhcs_rules.plate.model import ImageStructure, PlateStructure

_HANDLERS: list[type[FormatHandler]] = []
#: how many folder names and file suffixes an error message quotes
_EXAMPLES = 5

#: what detect_format looked for, per format, for the error message when nothing matched
_LOOKED_FOR = (
    "ImageXpress: a .HTD file, MetaXpress TimePoint_N/ZStep_M folders, or TIFFs named like "
    "'<plate>_B02_s1_w1.tif' (direct transfer: '<name>_E07_s1<GUID>.tif'; the folder itself or at the end "
    "of a chain of single subfolders such as <name>/<date>/<acquisition id>)",
    "Opera Phenix: Index.idx.xml or Index.xml (Harmony export), in the folder or in its Images/ subfolder",
    "Yokogawa CellVoyager (CV7000, CV8000, CQ1): MeasurementData.mlf with MeasurementDetail.mrf, in the folder "
    "or at the end of a chain of single subfolders",
    "OME-Zarr: a .zarr folder with OME-NGFF plate metadata",
)


def register_handler(cls: type[FormatHandler]) -> type[FormatHandler]:
    """Append a handler class (usable as a decorator). Registering the same class again is a no-op;
    a different class under a taken name is an error, since plate.json files name handlers."""
    if not (isinstance(cls, type) and issubclass(cls, FormatHandler)):
        raise TypeError(f"{cls!r} is not a FormatHandler subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} has no 'name' class attribute")
    for known in _HANDLERS:
        if known is cls:
            return cls
        if known.name == name:
            raise ValueError(f"format name {name!r} is already registered by {known.__name__}")
    _HANDLERS.append(cls)
    return cls


def registered_handlers() -> list[type[FormatHandler]]:
    """The handler classes in detection order (a copy)."""
    return list(_HANDLERS)


def handler_for(name: str, **options: Any) -> FormatHandler:
    """A handler instance for a format name as stored in ``PlateStructure.format``.

    ``options`` configure handlers that need more than a folder (the pattern format's ``pattern`` and
    ``layout``); None values are dropped, so callers can pass their optional settings unconditionally.
    """
    given = {key: value for key, value in options.items() if value is not None}
    for cls in _HANDLERS:
        if cls.name == name:
            return _instantiate(cls, given)
    known = ", ".join(cls.name for cls in _HANDLERS)
    raise FormatError(
        f"no handler for plate format {name!r} (known: {known}); the plate.json was written by another "
        "version or plugin: rerun discovery, or install the plugin that provides this format"
    )


def detect_format(root: str | Path) -> FormatHandler:
    """The first registered handler that recognises ``root``; FormatError saying what was looked for."""
    root = Path(root)
    if not root.exists():
        raise FormatError(f"plate folder {root} does not exist: check the path in the screen config")
    if not root.is_dir():
        raise FormatError(f"plate path {root} is a file, not a folder: give the folder that holds the plate")
    for cls in _HANDLERS:
        if cls.detect(root):
            return cls()
    looked_for = "\n  - ".join(_LOOKED_FOR)
    refusals = [f"{cls.name}: {text}" for cls in _HANDLERS if (text := cls.refusal(root))]
    found = "\n  - ".join([summarise_folder(root), *refusals])
    raise FormatError(
        f"{root.absolute()} is not a plate folder of any supported format.\nFound:\n  - {found}\n"
        f"Looked for:\n  - {looked_for}\n"
        "Point at the plate's own folder (for a direct transfer with several acquisitions, at one "
        "acquisition folder); for an instrument without a reader, use format: pattern with a regular "
        "expression for its file names."
    )


def summarise_folder(root: Path) -> str:
    """'12 files (8 .tif, 4 .txt) and 1 subfolder (x)': what a refused folder holds, for the error message."""
    try:
        with os.scandir(root) as it:
            entries = [(e.name, e.is_dir()) for e in it if not e.name.startswith(".")]
    except OSError as exc:
        return f"{root} cannot be listed: {exc}"
    folders = sorted(name for name, is_dir in entries if is_dir)
    suffixes = Counter(Path(name).suffix.lower() or "(no extension)" for name, is_dir in entries if not is_dir)
    kinds = ", ".join(f"{count} {suffix}" for suffix, count in suffixes.most_common(_EXAMPLES))
    text = f"{root} holds {sum(suffixes.values())} file(s)" + (f" ({kinds})" if kinds else "")
    if folders:
        text += f" and {len(folders)} subfolder(s) ({', '.join(folders[:_EXAMPLES])})"
    return text


def _instantiate(cls: type[FormatHandler], options: dict[str, Any]) -> FormatHandler:
    """``cls(**options)``; options a format does not take are a FormatError naming them."""
    try:
        return cls(**options)
    except TypeError:
        if not options:
            raise
        raise FormatError(
            f"format {cls.name!r} takes no option(s) {', '.join(sorted(options))}: they belong to format 'pattern'"
        ) from None


def discover_plate(
    root: str | Path, name: str | None = None, format_name: str = "auto", **options: Any
) -> PlateStructure:
    """Parse the plate under ``root`` (``name`` defaults to the instrument's plate id, else the folder name).

    ``format_name`` 'auto' detects the format; any other name forces that handler, configured with
    ``options`` (the pattern format's ``pattern`` and ``layout``), which detection never uses.
    """
    given = {key: value for key, value in options.items() if value is not None}
    if format_name == "auto":
        if given:
            raise FormatError(
                f"option(s) {', '.join(sorted(given))} only apply to a named format: set format: pattern "
                "(detection never reads file names by a pattern)"
            )
        return detect_format(root).parse(Path(root), name)
    return handler_for(format_name, **given).parse(Path(root), name)


def read_plane(plate: PlateStructure, image: ImageStructure) -> np.ndarray:
    """Read one 2D plane with the handler that discovered the plate."""
    return handler_for(plate.format).read_plane(plate, image)


register_handler(OmeroFormatHandler)  # omero:// plate URLs only; imports no omero-py until used
register_handler(OmeZarrHandler)  # most specific folder format: a .zarr with plate metadata
register_handler(OperaPhenixHandler)
register_handler(YokogawaHandler)  # before ImageXpress: its calibration TIFFs resemble ImageXpress names
register_handler(ImageXpressHandler)
register_handler(PatternHandler)  # never detected (detect is always False): chosen with format: pattern
