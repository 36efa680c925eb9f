"""Opera Phenix / Operetta CLS plates exported by Harmony: an ``Index.idx.xml`` or ``Index.xml`` + TIFFs.

Harmony's index file lists every image with its well (Row, Col), field, plane, timepoint and channel, so
discovery needs no file-name parsing: the XML is the truth and file names (``r01c01f01p01-ch1sk1fk1fl1``)
are only used through the ``URL`` element. Harmony versions differ in the XML namespace
(``.../PEHH/HarmonyV5``, ``.../HarmonyV6``...), so elements are matched by local name only.

Index conversions: FieldID -> site, PlaneID -> z, ChannelID -> channel (all 1-based already) and
TimepointID (0-based) -> t = TimepointID + 1. Lengths carry a ``Unit`` attribute (metres in every export
seen) and are converted to micrometres. Images live next to the XML or in an ``Images/`` folder next to it;
URLs are resolved against the XML's folder first, then ``Images/``. The file is streamed (iterparse) because
index files of large screens reach hundreds of megabytes.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openhcs_rules.errors import FormatError
from openhcs_rules.formats.base import FormatHandler, infer_layout, tiff_page_info
from openhcs_rules.plate.model import ChannelInfo, ImageKey, ImageStructure, PlateStructure, build_wells
from openhcs_rules.plate.naming import well_name

#: index file names, preferred first
INDEX_NAMES: tuple[str, ...] = ("Index.idx.xml", "Index.xml")
_TO_UM = {"m": 1e6, "mm": 1e3, "um": 1.0, "µm": 1.0, "nm": 1e-3}
_PLATE_FIELDS = ("PlateID", "MeasurementID", "Name", "PlateTypeName", "PlateRows", "PlateColumns")
_EXAMPLES = 5

#: one image entry: child local name -> (text, Unit attribute)
Record = dict[str, tuple[str, str | None]]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _file_names(folder: Path) -> dict[str, Path]:
    try:
        with os.scandir(folder) as it:
            return {e.name.lower(): Path(e.path) for e in it if e.is_file()}
    except OSError:
        return {}


def find_index_file(root: Path) -> Path | None:
    """``Index.idx.xml`` or ``Index.xml`` in ``root`` or ``root/Images`` (names matched case-insensitively)."""
    for folder in (Path(root), Path(root) / "Images"):
        names = _file_names(folder)
        for candidate in INDEX_NAMES:
            if candidate.lower() in names:
                return names[candidate.lower()]
    return None


# -- reading the XML ------------------------------------------------------------------------------------------
@dataclass
class HarmonyIndex:
    """What discovery needs from an index file: plate fields, image records, flatfield profiles."""

    path: Path
    plate: dict[str, str] = field(default_factory=dict)
    images: list[Record] = field(default_factory=list)
    flatfield_profiles: dict[str, str] = field(default_factory=dict)


def _record(element: ET.Element) -> Record:
    return {_local(child.tag): ((child.text or "").strip(), child.get("Unit")) for child in element}


def read_harmony_index(path: Path) -> HarmonyIndex:
    """Stream the index file; malformed XML becomes a FormatError naming the file and the line."""
    index = HarmonyIndex(Path(path))
    stack: list[str] = []
    try:
        for event, element in ET.iterparse(path, events=("start", "end")):
            name = _local(element.tag)
            if event == "start":
                stack.append(name)
                continue
            stack.pop()
            parent = stack[-1] if stack else ""
            _collect(index, name, parent, stack, element)
    except ET.ParseError as exc:
        raise FormatError(
            f"Harmony index file {path} is not valid XML ({exc}): the export was probably interrupted; "
            "export the measurement again from Harmony"
        ) from exc
    except OSError as exc:
        raise FormatError(f"cannot read Harmony index file {path}: {exc}") from exc
    return index


def _collect(index: HarmonyIndex, name: str, parent: str, stack: list[str], element: ET.Element) -> None:
    if name == "Image" and parent == "Images":
        index.images.append(_record(element))
        element.clear()
    elif parent == "Plate" and name in _PLATE_FIELDS and name not in index.plate and "Plates" in stack:
        index.plate[name] = (element.text or "").strip()
    elif name == "Entry" and parent == "Map":
        for child in element:
            if _local(child.tag) == "FlatfieldProfile":
                text = (child.text or "").strip()
                channel = element.get("ChannelID") or _channel_in_profile(text)
                if channel:
                    index.flatfield_profiles[channel] = text
        element.clear()
    elif name == "Well" and parent == "Wells":
        element.clear()


def _channel_in_profile(text: str) -> str | None:
    match = re.search(r"Channel:\s*(\d+)", text)
    return match.group(1) if match else None


# -- one image record -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Entry:
    key: ImageKey
    url: str
    channel_name: str | None
    emission_nm: float | None
    position_um: tuple[float, float] | None
    z_um: float | None


def _require_int(record: Record, name: str, path: Path) -> int:
    text = record.get(name, ("", None))[0]
    try:
        return int(text)
    except ValueError:
        image_id = record.get("id", ("?", None))[0]
        raise FormatError(
            f"Harmony index file {path}: image {image_id!r} has {name}={text!r}, expected an integer; the "
            "index is damaged or from an unsupported Harmony version: export the measurement again"
        ) from None


def to_um(quantity: tuple[str, str | None] | None, default_unit: str = "m") -> float | None:
    """A Harmony length (text, Unit) in micrometres; None when absent or not a number."""
    if quantity is None or not quantity[0]:
        return None
    unit = (quantity[1] or default_unit).strip()
    try:
        return float(quantity[0]) * _TO_UM[unit]
    except (ValueError, KeyError):
        return None


def _number(quantity: tuple[str, str | None] | None) -> float | None:
    try:
        return float(quantity[0]) if quantity and quantity[0] else None
    except ValueError:
        return None


def _entry(record: Record, path: Path) -> _Entry:
    row, col = _require_int(record, "Row", path), _require_int(record, "Col", path)
    site, plane = _require_int(record, "FieldID", path), _require_int(record, "PlaneID", path)
    timepoint, channel = _require_int(record, "TimepointID", path), _require_int(record, "ChannelID", path)
    url = record.get("URL", ("", None))[0]
    if not url or min(row, col, site, plane, channel) < 1 or timepoint < 0:
        raise FormatError(
            f"Harmony index file {path}: image {record.get('id', ('?', None))[0]!r} has no URL or an index "
            f"out of range (Row={row}, Col={col}, FieldID={site}, PlaneID={plane}, ChannelID={channel}, "
            f"TimepointID={timepoint}); export the measurement again from Harmony"
        )
    x, y = to_um(record.get("PositionX")), to_um(record.get("PositionY"))
    emission = _number(record.get("MainEmissionWavelength"))
    return _Entry(
        key=ImageKey(well_name(row - 1, col - 1), site, channel, plane, timepoint + 1),
        url=url.replace("\\", "/"),
        channel_name=record.get("ChannelName", ("", None))[0] or None,
        emission_nm=emission if emission and emission > 0 else None,
        position_um=(x, y) if x is not None and y is not None else None,
        z_um=to_um(record.get("PositionZ")),
    )


# -- resolving URLs -----------------------------------------------------------------------------------------
class _Resolver:
    """Find image files by URL with one directory listing per folder (no stat per image)."""

    def __init__(self, xml_dir: Path) -> None:
        self.bases = [xml_dir, xml_dir / "Images"]
        self._listings: dict[Path, dict[str, Path]] = {}

    def _listing(self, folder: Path) -> dict[str, Path]:
        if folder not in self._listings:
            try:
                with os.scandir(folder) as it:
                    self._listings[folder] = {e.name: Path(e.path) for e in it if e.is_file()}
            except OSError:
                self._listings[folder] = {}
        return self._listings[folder]

    def resolve(self, url: str) -> Path | None:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url):  # an http(s) URL from a Harmony server
            url = url.rsplit("/", 1)[-1]
        for base in self.bases:
            candidate = base / url
            if candidate.name in self._listing(candidate.parent):
                return candidate
        return None


# -- the handler ---------------------------------------------------------------------------------------------
class OperaPhenixHandler(FormatHandler):
    """Harmony exports of the Opera Phenix (and Operetta CLS, same index format)."""

    name = "opera_phenix"
    compatible_backends = ("disk", "zarr")

    @classmethod
    def detect(cls, root: Path) -> bool:
        """True when ``root`` or ``root/Images`` holds ``Index.idx.xml`` or ``Index.xml``."""
        return Path(root).is_dir() and find_index_file(Path(root)) is not None

    def parse(self, root: Path, plate_name: str | None = None) -> PlateStructure:
        """List the planes the index file describes and that exist on disk (missing ones are warned)."""
        root = Path(root).absolute()
        index_path = find_index_file(root) if root.is_dir() else None
        if index_path is None:
            raise FormatError(
                f"{root} is not an Opera Phenix plate folder: no Index.idx.xml or Index.xml in it or in its "
                "Images/ folder; point at the Harmony export folder that holds the index file"
            )
        index = read_harmony_index(index_path)
        warnings: list[str] = []
        entries = self._usable_entries(index, warnings)
        resolver = _Resolver(index_path.parent)
        images, missing = self._images(root, entries, resolver)
        if missing:
            warnings.append(
                f"{len(missing)} image(s) listed in {index_path.name} have no file and were left out, e.g. "
                f"{', '.join(missing[:_EXAMPLES])}: copy the complete export"
            )
        if not images:
            raise FormatError(
                f"Harmony index file {index_path} lists {len(entries)} usable image(s) but none of their files "
                f"exist next to it or in {index_path.parent / 'Images'}: copy the image files of the export"
            )
        return self._assemble(root, index, entries, images, plate_name, warnings)

    @staticmethod
    def _usable_entries(index: HarmonyIndex, warnings: list[str]) -> list[_Entry]:
        """Image records whose State is Ok (or absent), as entries."""
        good: list[Record] = []
        bad_ids: list[str] = []
        for record in index.images:
            if record.get("State", ("Ok", None))[0] in ("Ok", ""):
                good.append(record)
            else:
                bad_ids.append(record.get("id", ("?", None))[0])
        if bad_ids:
            warnings.append(
                f"{len(bad_ids)} image(s) have a State other than 'Ok' in the index and were left out: "
                f"{', '.join(bad_ids[:_EXAMPLES])}"
            )
        return [_entry(r, index.path) for r in good]

    @staticmethod
    def _images(root: Path, entries: list[_Entry], resolver: _Resolver) -> tuple[list[ImageStructure], list[str]]:
        images: list[ImageStructure] = []
        missing: list[str] = []
        seen: dict[ImageKey, str] = {}
        for entry in entries:
            path = resolver.resolve(entry.url)
            if path is None:
                missing.append(entry.url)
                continue
            if entry.key in seen:
                raise FormatError(
                    f"the Harmony index lists two images for well {entry.key.well} field {entry.key.site} "
                    f"channel {entry.key.channel} plane {entry.key.z} timepoint {entry.key.t - 1}: "
                    f"{seen[entry.key]} and {entry.url}; the index is damaged: export it again"
                )
            seen[entry.key] = entry.url
            source = Path(os.path.relpath(path, root)).as_posix()
            images.append(ImageStructure(entry.key, source, None, entry.position_um))
        return images, missing

    def _assemble(
        self,
        root: Path,
        index: HarmonyIndex,
        entries: list[_Entry],
        images: list[ImageStructure],
        plate_name: str | None,
        warnings: list[str],
    ) -> PlateStructure:
        wells = build_wells(images)
        first_record = index.images[0]
        first_image = wells[min(wells, key=lambda w: wells[w].position)].images[0]
        shape, dtype = self._check_shape(root, first_image, first_record, warnings)
        rows, columns = self._layout(index, list(wells), warnings)
        resolution = to_um(first_record.get("ImageResolutionX"))
        metadata: dict[str, Any] = {
            "index_file": Path(os.path.relpath(index.path, root)).as_posix(),
            "instrument_plate_name": index.plate.get("Name"),
            "plate_id": index.plate.get("PlateID"),
            "plate_type": index.plate.get("PlateTypeName"),
            "measurement_id": index.plate.get("MeasurementID"),
        }
        if index.flatfield_profiles:
            metadata["flatfield_profiles"] = dict(sorted(index.flatfield_profiles.items()))
        return PlateStructure(
            name=plate_name or root.name,
            format=self.name,
            root=str(root),
            rows=rows,
            columns=columns,
            channels=_channels(entries, warnings),
            wells=wells,
            image_shape=shape,
            dtype=dtype,
            pixel_size_um=round(resolution, 6) if resolution else None,
            z_step_um=_z_step_um(entries),
            warnings=warnings,
            metadata=metadata,
        )

    @staticmethod
    def _check_shape(
        root: Path, image: ImageStructure, record: Record, warnings: list[str]
    ) -> tuple[tuple[int, int], str]:
        """Shape and dtype from the first file's header; the XML's ImageSizeX/Y is only cross-checked."""
        shape, dtype = tiff_page_info(root / image.source)
        height, width = _number(record.get("ImageSizeY")), _number(record.get("ImageSizeX"))
        if height is not None and width is not None and (int(height), int(width)) != shape:
            warnings.append(
                f"the index declares {int(height)}x{int(width)} images but {image.source} is "
                f"{shape[0]}x{shape[1]}: the file's size is used"
            )
        return shape, dtype

    @staticmethod
    def _layout(index: HarmonyIndex, wells: list[str], warnings: list[str]) -> tuple[int, int]:
        try:
            return int(index.plate["PlateRows"]), int(index.plate["PlateColumns"])
        except (KeyError, ValueError):
            layout = infer_layout(wells)
            warnings.append(f"no PlateRows/PlateColumns in {index.path.name}: assumed {layout[0]}x{layout[1]} wells")
            return layout


def _channels(entries: list[_Entry], warnings: list[str]) -> list[ChannelInfo]:
    """One ChannelInfo per ChannelID, named by ChannelName; conflicting names are warned about."""
    channels: dict[int, ChannelInfo] = {}
    for entry in entries:
        index = entry.key.channel
        info = ChannelInfo(index, entry.channel_name or f"ch{index}", entry.emission_nm)
        known = channels.setdefault(index, info)
        if known.name != info.name:
            warnings.append(f"channel {index} is named both {known.name!r} and {info.name!r} in the index")
            channels[index] = ChannelInfo(index, known.name, known.wavelength_nm)
    return [channels[i] for i in sorted(channels)]


def _z_step_um(entries: list[_Entry]) -> float | None:
    """Mean plane spacing (um) of the first stack with more than one plane, from PositionZ."""
    stacks: dict[tuple[str, int, int, int], list[_Entry]] = {}
    for entry in entries:
        k = entry.key
        stacks.setdefault((k.well, k.site, k.channel, k.t), []).append(entry)
    for stack in stacks.values():
        heights = [e.z_um for e in sorted(stack, key=lambda e: e.key.z)]
        if len(heights) > 1 and all(h is not None for h in heights):
            known = [h for h in heights if h is not None]
            steps = [abs(b - a) for a, b in zip(known, known[1:], strict=False)]
            return round(sum(steps) / len(steps), 4)
    return None
