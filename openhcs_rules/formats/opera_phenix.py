"""Opera Phenix / Operetta CLS plates exported by Harmony: an ``Index.idx.xml`` or ``Index.xml`` + TIFFs.

Harmony's index file lists every image with its well (Row, Col), field, plane, timepoint and channel, so
discovery needs no file-name parsing: the XML is the truth and file names (``r01c01f01p01-ch1sk1fk1fl1``)
are only used through the ``URL`` element, and their ``sk`` number to cross-check the timepoint. Harmony
versions differ in the XML namespace (``.../PEHH/HarmonyV5``, ``.../HarmonyV6``, ``<guid>/HarmonyV7``), so
elements are matched by local name only, and in where the per-channel facts live:

- V5 writes ChannelName, ImageResolutionX/Y, ImageSizeX/Y and the wavelengths into every ``<Image>``;
- V6 and V7 write them once per channel into ``Maps/Map/Entry[@ChannelID]`` (next to the Maps holding
  FlatfieldProfile and SkewcropParameters). A fact is taken from the ``<Image>`` first, then from the Maps.

Index conversions: FieldID -> site, PlaneID -> z, ChannelID -> channel (all 1-based already). TimepointID
is 0-based in V5 but 1-based from V6 on (both write ``sk1`` for the first timepoint), so t = TimepointID +
offset with the offset read from the ``sk`` numbers of the file names (``sk`` - TimepointID, which must
be one value); without usable ``sk`` numbers the version decides and a warning says so. Lengths carry a
``Unit`` attribute (metres in every export seen) and are converted to micrometres. Anything that cannot be
found or cross-checked (a missing Map entry, a resolution that is not a number, an image size that
disagrees with the TIFF) is a warning naming the index file; planes of different sizes are a FormatError.

Folders: the index lies in the plate folder or in its ``Images/`` (``images/`` in some exports) subfolder;
URLs are resolved against the index's folder first, then its images subfolder. The file is streamed
(iterparse) because index files of large screens reach hundreds of megabytes.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openhcs_rules.errors import FormatError
from openhcs_rules.formats.base import FormatHandler, tiff_page_info
from openhcs_rules.plate.channels import unique_channel_names
from openhcs_rules.plate.model import ChannelInfo, ImageKey, ImageStructure, PlateStructure, build_wells
from openhcs_rules.plate.naming import infer_layout, safe_plate_name, well_name

#: index file names, preferred first
INDEX_NAMES: tuple[str, ...] = ("Index.idx.xml", "Index.xml")
#: the images subfolder of an export, matched case-insensitively ("Images" and "images" are both seen)
IMAGES_FOLDER = "images"
_TO_UM = {"m": 1e6, "mm": 1e3, "um": 1.0, "µm": 1.0, "nm": 1e-3}
_PLATE_FIELDS = ("PlateID", "MeasurementID", "Name", "PlateTypeName", "PlateRows", "PlateColumns")
#: per-channel facts: in every <Image> in V5, in Maps/Map/Entry[@ChannelID] from V6 on
_CHANNEL_FACTS = (
    "ChannelName",
    "ChannelType",
    "ImageResolutionX",
    "ImageResolutionY",
    "ImageSizeX",
    "ImageSizeY",
    "MainExcitationWavelength",
    "MainEmissionWavelength",
)
_SK_RE = re.compile(r"sk(\d+)fk\d+", re.IGNORECASE)
_VERSION_RE = re.compile(r"HarmonyV(\d+)", re.IGNORECASE)
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


def image_folders(folder: Path) -> list[Path]:
    """``folder``'s ``Images``/``images`` subfolders (exports spell it either way; sorted, so 'Images' first)."""
    try:
        with os.scandir(folder) as it:
            return sorted(Path(e.path) for e in it if e.name.lower() == IMAGES_FOLDER and e.is_dir())
    except OSError:
        return []


def find_index_file(root: Path) -> Path | None:
    """``Index.idx.xml`` or ``Index.xml`` in ``root`` or its ``Images``/``images`` folder (case-insensitive)."""
    for folder in (Path(root), *image_folders(Path(root))):
        names = _file_names(folder)
        for candidate in INDEX_NAMES:
            if candidate.lower() in names:
                return names[candidate.lower()]
    return None


# -- reading the XML ------------------------------------------------------------------------------------------
@dataclass
class HarmonyIndex:
    """What discovery needs from an index file: namespace, plate fields, images, per-channel Map entries."""

    path: Path
    namespace: str = ""
    plate: dict[str, str] = field(default_factory=dict)
    images: list[Record] = field(default_factory=list)
    channel_maps: dict[str, Record] = field(default_factory=dict)
    flatfield_profiles: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> int | None:
        """The Harmony version in the namespace (``.../HarmonyV7`` -> 7), None when it names none."""
        match = _VERSION_RE.search(self.namespace)
        return int(match.group(1)) if match else None


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
                if not stack and element.tag.startswith("{"):
                    index.namespace = element.tag[1:].split("}", 1)[0]
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
        _collect_map_entry(index, element)
        element.clear()
    elif name == "Well" and parent == "Wells":
        element.clear()


def _collect_map_entry(index: HarmonyIndex, entry: ET.Element) -> None:
    """One ``Maps/Map/Entry``: a flatfield profile, or (V6+) the channel's facts; other Maps are skipped."""
    channel = entry.get("ChannelID")
    for child in entry:
        local, text = _local(child.tag), (child.text or "").strip()
        if local == "FlatfieldProfile":
            key = channel or _channel_in_profile(text)
            if key:
                index.flatfield_profiles[key] = text
        elif local in _CHANNEL_FACTS and channel:
            index.channel_maps.setdefault(channel, {}).setdefault(local, (text, child.get("Unit")))


def _channel_in_profile(text: str) -> str | None:
    match = re.search(r"Channel:\s*(\d+)", text)
    return match.group(1) if match else None


# -- timepoints -----------------------------------------------------------------------------------------------
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


def _sk_number(url: str) -> int | None:
    """The timepoint number Harmony puts in file names (``...-ch1sk2fk1fl1.tiff`` -> 2), if any."""
    match = _SK_RE.search(url.replace("\\", "/").rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


def timepoint_offset(index: HarmonyIndex, records: list[Record], warnings: list[str]) -> int:
    """The ``offset`` in t = TimepointID + offset: 1 where TimepointID counts from 0 (V5), 0 where from 1.

    Read from the data, not the version: every file name's ``sk`` number is the 1-based timepoint, so
    ``sk - TimepointID`` must be one value. Only when no file name has an ``sk`` number, or they disagree,
    does the version (or a TimepointID of 0) decide, with a warning, since that cannot be cross-checked.
    """
    if not records:
        return 1
    ids = [_require_int(r, "TimepointID", index.path) for r in records]
    offsets = {sk - tid for r, tid in zip(records, ids, strict=True) if (sk := _sk_number(r.get("URL", ("", None))[0]))}
    if len(offsets) == 1 and min(ids) + next(iter(offsets)) >= 1:
        return next(iter(offsets))
    fallback, reason = _offset_without_sk(index.version, min(ids))
    if offsets:
        problem = (
            f"TimepointID and the 'sk<n>' timepoint number of the file names disagree (sk - TimepointID is "
            f"{sorted(offsets)} across images, expected one value)"
        )
    else:
        problem = "the file names carry no 'sk<n>' timepoint number to cross-check TimepointID with"
    warnings.append(
        f"Harmony index file {index.path}: {problem}; took t = TimepointID + {fallback} because {reason}: "
        "check the timepoints shown by inspect"
    )
    return fallback


def _offset_without_sk(version: int | None, smallest_id: int) -> tuple[int, str]:
    if smallest_id <= 0:
        return 1, f"the smallest TimepointID is {smallest_id}"
    if version is not None and version <= 5:
        return 1, f"Harmony V{version} counts TimepointID from 0"
    if version is not None:
        return 0, f"Harmony V{version} counts TimepointID from 1"
    return 0, f"the namespace names no Harmony version and the smallest TimepointID is {smallest_id}"


# -- one image record -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Entry:
    key: ImageKey
    url: str
    timepoint_id: int
    position_um: tuple[float, float] | None
    z_um: float | None


def to_um(quantity: tuple[str, str | None] | None, default_unit: str = "m") -> float | None:
    """A Harmony length (text, Unit) in micrometres; None when absent or not a number."""
    value, _problem = _length_um(quantity, default_unit)
    return value


def _length_um(quantity: tuple[str, str | None] | None, default_unit: str = "m") -> tuple[float | None, str | None]:
    """(micrometres, None), or (None, what is wrong with it); (None, None) when absent."""
    if quantity is None or not quantity[0]:
        return None, None
    unit = (quantity[1] or default_unit).strip()
    if unit not in _TO_UM:
        return None, f"has Unit={unit!r}, expected one of {', '.join(_TO_UM)}"
    try:
        return float(quantity[0]) * _TO_UM[unit], None
    except ValueError:
        return None, f"is {quantity[0]!r}, expected a number"


def _entry(record: Record, path: Path, offset: int) -> _Entry:
    row, col = _require_int(record, "Row", path), _require_int(record, "Col", path)
    site, plane = _require_int(record, "FieldID", path), _require_int(record, "PlaneID", path)
    timepoint, channel = _require_int(record, "TimepointID", path), _require_int(record, "ChannelID", path)
    url = record.get("URL", ("", None))[0]
    if not url or min(row, col, site, plane, channel, timepoint + offset) < 1:
        raise FormatError(
            f"Harmony index file {path}: image {record.get('id', ('?', None))[0]!r} has no URL or an index "
            f"out of range (Row={row}, Col={col}, FieldID={site}, PlaneID={plane}, ChannelID={channel}, "
            f"TimepointID={timepoint}; expected all >= 1, TimepointID >= {1 - offset}); export the "
            "measurement again from Harmony"
        )
    x, y = to_um(record.get("PositionX")), to_um(record.get("PositionY"))
    return _Entry(
        key=ImageKey(well_name(row - 1, col - 1), site, channel, plane, timepoint + offset),
        url=url.replace("\\", "/"),
        timepoint_id=timepoint,
        position_um=(x, y) if x is not None and y is not None else None,
        z_um=to_um(record.get("PositionZ")),
    )


# -- per-channel facts ----------------------------------------------------------------------------------------
@dataclass
class _ChannelFacts:
    """A channel's facts from its first <Image> (V5) or its Maps entry (V6+); None where not found."""

    index: int
    name: str | None
    emission_nm: float | None
    resolution_um: tuple[float | None, float | None]
    size: tuple[int, int] | None  # (ImageSizeY, ImageSizeX): rows x columns, as a numpy shape


class _FactReader:
    """Looks facts up per channel and collects, per fact, the channels where it is missing or wrong."""

    def __init__(self, index: HarmonyIndex, first_records: dict[int, Record]) -> None:
        self.index = index
        self.first_records = first_records
        self.missing: dict[str, list[int]] = {}
        self.problems: list[str] = []

    def raw(self, channel: int, name: str) -> tuple[str, str | None] | None:
        for source in (self.first_records.get(channel, {}), self.index.channel_maps.get(str(channel), {})):
            if source.get(name, ("", None))[0]:
                return source[name]
        self.missing.setdefault(name, []).append(channel)
        return None

    def where(self, channel: int) -> str:
        return f"channel {channel}"

    def number(self, channel: int, name: str, unit: str | None = None) -> float | None:
        quantity = self.raw(channel, name)
        if quantity is None:
            return None
        if unit is not None and quantity[1] not in (None, "", unit):
            self.problems.append(f"{name} of {self.where(channel)} has Unit={quantity[1]!r}, expected {unit!r}")
            return None
        try:
            return float(quantity[0])
        except ValueError:
            self.problems.append(f"{name} of {self.where(channel)} is {quantity[0]!r}, expected a number")
            return None

    def length(self, channel: int, name: str) -> float | None:
        value, problem = _length_um(self.raw(channel, name))
        if problem:
            self.problems.append(f"{name} of {self.where(channel)} {problem}")
        return value

    def facts(self, channel: int) -> _ChannelFacts:
        name = self.raw(channel, "ChannelName")
        emission = self.number(channel, "MainEmissionWavelength", unit="nm")
        width, height = self.number(channel, "ImageSizeX"), self.number(channel, "ImageSizeY")
        return _ChannelFacts(
            index=channel,
            name=name[0] if name else None,
            emission_nm=emission if emission and emission > 0 else None,  # 0: brightfield, no emission filter
            resolution_um=(self.length(channel, "ImageResolutionX"), self.length(channel, "ImageResolutionY")),
            size=(int(height), int(width)) if height and width else None,
        )


_CONSEQUENCE = {
    "ChannelName": "they are named ch<ChannelID>",
    "MainEmissionWavelength": "their wavelength is unknown",
    "ImageResolutionX": "the pixel size is unknown",
    "ImageResolutionY": "the pixel size is taken as square",
    "ImageSizeX": "their image size is not cross-checked with the TIFFs",
    "ImageSizeY": "their image size is not cross-checked with the TIFFs",
}


def read_channel_facts(index: HarmonyIndex, entries: list[_Entry], warnings: list[str]) -> dict[int, _ChannelFacts]:
    """Every channel's facts; what is missing or malformed becomes one warning per fact, naming the file."""
    first_records: dict[int, Record] = {}
    for record in index.images:
        channel = record.get("ChannelID", ("", None))[0]
        if channel.isdigit():
            first_records.setdefault(int(channel), record)
    reader = _FactReader(index, first_records)
    facts = {c: reader.facts(c) for c in sorted({e.key.channel for e in entries})}
    for name, channels in reader.missing.items():
        if name.endswith("Y") and reader.missing.get(name[:-1] + "X") == channels:
            continue  # said once for X and Y
        if name in _CONSEQUENCE:
            listed = ", ".join(map(str, channels))
            warnings.append(
                f"Harmony index file {index.path}: no {name} for channel(s) {listed}, neither in their <Image> "
                f'elements (Harmony V5) nor in Maps/Map/Entry[@ChannelID="{channels[0]}"] (V6 and later): '
                f"{_CONSEQUENCE[name]}"
            )
    warnings += [f"Harmony index file {index.path}: {problem}" for problem in reader.problems]
    return facts


def _pixel_size_um(facts: dict[int, _ChannelFacts], path: Path, warnings: list[str]) -> float | None:
    """The plate's pixel size: the first channel's ImageResolutionX; disagreements are warned about."""
    known = {c: f.resolution_um for c, f in facts.items() if f.resolution_um[0] is not None}
    if not known:
        return None
    first = min(known)
    x, y = known[first]
    assert x is not None  # known holds only channels with an X resolution
    if y is not None and abs(y - x) > 1e-6 * x:
        warnings.append(f"{path}: channel {first} has non-square pixels ({x:g} x {y:g} um): {x:g} um is used")
    others = {c: r[0] for c, r in known.items() if r[0] is not None and abs(r[0] - x) > 1e-6 * x}
    if others:
        listed = ", ".join(f"channel {c}: {v:g} um" for c, v in sorted(others.items()))
        warnings.append(
            f"{path}: channels have different pixel sizes ({listed}; channel {first}: {x:g} um, which is used): "
            "measurements in um are only right for channel-{first}-sized pixels"
        )
    return round(x, 6)


def _channel_infos(facts: dict[int, _ChannelFacts], warnings: list[str]) -> list[ChannelInfo]:
    """ChannelInfos named as Harmony named them, made unique with the emission wavelength, else the index."""
    channels = [ChannelInfo(c, f.name or f"ch{c}", f.emission_nm) for c, f in sorted(facts.items())]
    qualifiers = {c: [f"em{f.emission_nm:g}nm" if f.emission_nm else None] for c, f in facts.items()}
    return unique_channel_names(channels, warnings, qualifiers)


# -- resolving URLs -----------------------------------------------------------------------------------------
class _Resolver:
    """Find image files by URL with one directory listing per folder (no stat per image)."""

    def __init__(self, xml_dir: Path) -> None:
        self.bases = [xml_dir, *image_folders(xml_dir)]
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
    """Harmony exports of the Opera Phenix (and Operetta CLS, same index format), Harmony V5 to V7."""

    name = "opera_phenix"
    compatible_backends = ("disk", "zarr")

    @classmethod
    def detect(cls, root: Path) -> bool:
        """True when ``root`` or its ``Images``/``images`` folder holds ``Index.idx.xml`` or ``Index.xml``."""
        return Path(root).is_dir() and find_index_file(Path(root)) is not None

    def parse(self, root: Path, plate_name: str | None = None) -> PlateStructure:
        """List the planes the index file describes and that exist on disk (missing ones are warned).

        ``plate_name`` (the config's name) wins; without it the plate is named from its PlateID.
        """
        root = Path(root).absolute()
        index_path = find_index_file(root) if root.is_dir() else None
        if index_path is None:
            raise FormatError(
                f"{root} is not an Opera Phenix plate folder: no Index.idx.xml or Index.xml in it or in its "
                "Images/ folder; point at the Harmony export folder that holds the index file"
            )
        index = read_harmony_index(index_path)
        warnings: list[str] = []
        records = self._usable_records(index, warnings)
        offset = timepoint_offset(index, records, warnings)
        entries = [_entry(r, index.path, offset) for r in records]
        images, missing = self._images(root, entries, _Resolver(index_path.parent))
        if missing:
            warnings.append(
                f"{len(missing)} image(s) listed in {index_path} have no file and were left out, e.g. "
                f"{', '.join(missing[:_EXAMPLES])}: copy the complete export"
            )
        if not images:
            raise FormatError(
                f"Harmony index file {index_path} lists {len(entries)} usable image(s) but none of their files "
                f"exist next to it or in its Images/ folder: copy the image files of the export"
            )
        plate = self._assemble(root, index, entries, images, plate_name, warnings)
        plate.metadata["timepoint_id_offset"] = offset
        return plate

    @staticmethod
    def _usable_records(index: HarmonyIndex, warnings: list[str]) -> list[Record]:
        """Image records whose State is Ok (or absent)."""
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
        return good

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
                    f"channel {entry.key.channel} plane {entry.key.z} TimepointID {entry.timepoint_id}: "
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
        facts = read_channel_facts(index, entries, warnings)
        shape, dtype = self._check_shapes(root, index.path, images, facts, warnings)
        rows, columns = self._layout(index, list(wells), warnings)
        metadata: dict[str, Any] = {
            "index_file": Path(os.path.relpath(index.path, root)).as_posix(),
            "harmony_version": index.version,
            "index_namespace": index.namespace,
            "instrument_plate_name": index.plate.get("Name"),
            "plate_id": index.plate.get("PlateID"),
            "plate_type": index.plate.get("PlateTypeName"),
            "measurement_id": index.plate.get("MeasurementID"),
        }
        if index.flatfield_profiles:
            metadata["flatfield_profiles"] = dict(sorted(index.flatfield_profiles.items()))
        return PlateStructure(
            name=plate_name or self._name_from_index(index, root, warnings),
            format=self.name,
            root=str(root),
            rows=rows,
            columns=columns,
            channels=_channel_infos(facts, warnings),
            wells=wells,
            image_shape=shape,
            dtype=dtype,
            pixel_size_um=_pixel_size_um(facts, index.path, warnings),
            z_step_um=_z_step_um(entries),
            warnings=warnings,
            metadata=metadata,
        )

    @staticmethod
    def _name_from_index(index: HarmonyIndex, root: Path, warnings: list[str]) -> str:
        """The PlateID made a valid plate name (the instrument's id, as Harmony shows it); else the folder."""
        name = safe_plate_name(index.plate.get("PlateID"))
        if name is None:
            warnings.append(f"{index.path} has no usable <Plates><Plate><PlateID>: the plate is named {root.name!r}")
        return name or root.name

    @staticmethod
    def _check_shapes(
        root: Path, path: Path, images: list[ImageStructure], facts: dict[int, _ChannelFacts], warnings: list[str]
    ) -> tuple[tuple[int, int], str]:
        """Shape and dtype from the first file of each channel (headers only); the index's ImageSizeX/Y is only
        cross-checked. Channels of different sizes cannot be stacked: a FormatError now, not a failed well later.
        """
        first: dict[int, ImageStructure] = {}
        for image in sorted(images, key=lambda i: i.key):
            first.setdefault(image.key.channel, image)
        plate_source = first[min(first)].source
        plate_shape, plate_dtype = tiff_page_info(root / plate_source)
        for channel, image in sorted(first.items()):
            shape, dtype = tiff_page_info(root / image.source)
            declared = facts[channel].size if channel in facts else None
            if declared is not None and declared != shape:
                warnings.append(
                    f"Harmony index file {path} declares {declared[0]}x{declared[1]} images (ImageSizeY x "
                    f"ImageSizeX) for channel {channel} but {image.source} is {shape[0]}x{shape[1]}: the file's "
                    "size is used"
                )
            if shape != plate_shape:
                raise FormatError(
                    f"{root / image.source} (channel {channel}) is {shape[0]}x{shape[1]} pixels but "
                    f"{root / plate_source} is {plate_shape[0]}x{plate_shape[1]}: every plane of a plate must "
                    "have one size (expected the same binning and crop for all channels); re-export the plate "
                    "or acquire the channels with the same camera settings"
                )
            elif dtype != plate_dtype:
                warnings.append(f"{image.source} is {dtype} but {plate_source} is {plate_dtype}")
        return plate_shape, plate_dtype

    @staticmethod
    def _layout(index: HarmonyIndex, wells: list[str], warnings: list[str]) -> tuple[int, int]:
        try:
            return int(index.plate["PlateRows"]), int(index.plate["PlateColumns"])
        except (KeyError, ValueError):
            layout = infer_layout(wells)
            warnings.append(f"no PlateRows/PlateColumns in {index.path}: assumed {layout[0]}x{layout[1]} wells")
            return layout


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
