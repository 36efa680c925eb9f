"""Yokogawa CellVoyager measurements (CV7000, CV8000, CQ1): ``MeasurementData.mlf`` + ``MeasurementDetail.mrf``.

A measurement folder holds (names as the instruments write them)::

    MeasurementData.mlf      one bts:MeasurementRecord per image: Type, Row, Column (1-based), TimePoint,
                             FieldIndex, ZIndex, TimelineIndex, ActionIndex, Ch, X/Y/Z (um); text = file name
    MeasurementDetail.mrf    plate RowCount x ColumnCount, one bts:MeasurementChannel per channel (Ch, pixel
                             size in um, HorizontalPixels x VerticalPixels, ShadingCorrectionSource)
    <protocol>.mes           measurement setting named by the .mrf: per channel the filter (Acquisition),
                             laser (Target) and Fluorophore; optional here, used for channel names
    <title>_B02_T0001F001L01A01Z01C01.tif   the images: timepoint, field, timeline, action, z, channel
    SC_BP445-45_40x_M10_CH01.tif            shading-correction (calibration) images, not in the .mlf

The XML is the truth: file names are never parsed. Only ``bts:Type="IMG"`` records are images; other records
(``ERR``: an autofocus failure, no file) are counted and reported, and TIFFs the .mlf does not list (the
shading-correction images) are reported, never read as wells. A record's file that is missing on disk is left
out with a warning. Indices: FieldIndex -> site, ZIndex -> z, Ch -> channel (when one channel is acquired by
several actions, each (action, Ch) pair becomes its own channel), and the sorted TimePoint values -> t = 1, 2...
Records with ``ZImageProcessing`` other than None (CV7000 on-the-fly projections) are skipped where the same
field and channel also has planes. Users may point at the measurement folder or at the ``<title>_<date>``
folder the instrument writes around it (followed down a chain of single subfolders, as for ImageXpress).
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
from openhcs_rules.plate.model import ChannelInfo, ImageKey, ImageStructure, PlateStructure, build_wells
from openhcs_rules.plate.naming import PLATE_LAYOUTS, infer_layout, well_name

MLF_NAME = "MeasurementData.mlf"
MRF_NAME = "MeasurementDetail.mrf"
#: how many single-subfolder levels below the given folder the .mlf is looked for
CHAIN_DEPTH = 3
_EXAMPLES = 5
_MAX_LAYOUT = PLATE_LAYOUTS[1536]
_NO_PROJECTION = ("", "none")


def _local(name: str) -> str:
    """'{http://www.yokogawa.co.jp/BTS/BTSSchema/1.0}Row' -> 'Row' (namespaces differ between releases)."""
    return name.rsplit("}", 1)[-1]


def _attributes(element: ET.Element) -> dict[str, str]:
    return {_local(key): value.strip() for key, value in element.attrib.items()}


def _listing(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:
        return []


def _file_named(folder: Path, name: str) -> Path | None:
    """The file ``name`` in ``folder``, matched case-insensitively (copies from Windows shares vary)."""
    for entry in _listing(folder):
        if entry.name.lower() == name.lower() and entry.is_file():
            return Path(entry.path)
    return None


def find_measurement_folder(root: Path, max_depth: int = CHAIN_DEPTH) -> Path | None:
    """The folder holding ``MeasurementData.mlf``: ``root`` or the end of a chain of single subfolders.

    The CV8000 writes ``<title>_<date>_<time>/<title>/`` with TRACE logs beside the inner folder, so users
    point at either; several subfolders are ambiguous (several measurements) and stop the search.
    """
    current = Path(root)
    for _ in range(max_depth + 1):
        if _file_named(current, MLF_NAME) is not None:
            return current
        subfolders = [Path(e.path) for e in _listing(current) if e.is_dir()]
        if len(subfolders) != 1:
            return None
        current = subfolders[0]
    return None


# -- MeasurementDetail.mrf and the .mes -----------------------------------------------------------------------
@dataclass
class MeasurementDetail:
    """What discovery uses from the .mrf: plate layout, per-channel geometry, the setting file's name."""

    path: Path
    plate: dict[str, str] = field(default_factory=dict)
    channels: dict[int, dict[str, str]] = field(default_factory=dict)

    @property
    def layout(self) -> tuple[int, int] | None:
        """(RowCount, ColumnCount) when both are positive integers within a 1536-well plate."""
        try:
            rows, columns = int(self.plate["RowCount"]), int(self.plate["ColumnCount"])
        except (KeyError, ValueError):
            return None
        if not (0 < rows <= _MAX_LAYOUT[0] and 0 < columns <= _MAX_LAYOUT[1]):
            return None
        return rows, columns


def _read_xml(path: Path, what: str) -> ET.Element:
    """Parse a small XML file; broken XML is a FormatError naming the file (a copy cut short, mostly)."""
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise FormatError(
            f"{what} {path} is not valid XML ({exc}): the copy was probably interrupted; copy the measurement "
            "folder again from the CellVoyager"
        ) from exc
    except OSError as exc:
        raise FormatError(f"cannot read {what} {path}: {exc}") from exc


def read_measurement_detail(path: Path) -> MeasurementDetail:
    """The .mrf's root attributes and its MeasurementChannel elements by ``Ch``."""
    root = _read_xml(path, "CellVoyager measurement detail")
    if _local(root.tag) != "MeasurementDetail":
        raise FormatError(f"{path} is not a CellVoyager MeasurementDetail file (its root is <{_local(root.tag)}>)")
    detail = MeasurementDetail(path, _attributes(root))
    for element in root:
        if _local(element.tag) == "MeasurementChannel":
            attributes = _attributes(element)
            if attributes.get("Ch", "").isdigit():
                detail.channels[int(attributes["Ch"])] = attributes
    return detail


def read_setting_channels(path: Path) -> dict[int, dict[str, str]]:
    """Per-channel attributes (Acquisition filter, Target, Fluorophore...) of a .mes ChannelList."""
    root = _read_xml(path, "CellVoyager measurement setting")
    channels: dict[int, dict[str, str]] = {}
    for element in root.iter():
        if _local(element.tag) == "Channel":
            attributes = _attributes(element)
            if attributes.get("Ch", "").isdigit():
                channels[int(attributes["Ch"])] = attributes
    return channels


# -- MeasurementData.mlf ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    """One image record of the .mlf, indices as written (1-based) and the raw TimePoint."""

    file: str
    row: int
    column: int
    timepoint: int
    field: int
    z: int
    action: int
    ch: int
    position_um: tuple[float, float] | None
    z_um: float | None
    projection: str


@dataclass
class MeasurementData:
    """The image records of an .mlf and a count of the other record types."""

    path: Path
    images: list[Record] = field(default_factory=list)
    other_types: dict[str, int] = field(default_factory=dict)


def _int(attributes: dict[str, str], name: str, path: Path, file: str, default: int | None = None) -> int:
    text = attributes.get(name)
    if text is None and default is not None:
        return default
    try:
        return int(text or "")
    except ValueError:
        raise FormatError(
            f"CellVoyager measurement data {path}: the record of {file or 'an image'} has {name}={text!r}, "
            "expected an integer; the file is damaged or from an unsupported release"
        ) from None


def _float(attributes: dict[str, str], name: str) -> float | None:
    try:
        return float(attributes[name])
    except (KeyError, ValueError):
        return None


def _record(attributes: dict[str, str], text: str, path: Path) -> Record:
    """One IMG record; indices below 1 or a missing file name are refused, naming the record."""
    file = text.strip().replace("\\", "/")
    values = {name: _int(attributes, name, path, file) for name in ("Row", "Column", "FieldIndex", "ZIndex", "Ch")}
    timepoint = _int(attributes, "TimePoint", path, file, default=1)
    action = _int(attributes, "ActionIndex", path, file, default=1)
    if not file or min(values.values()) < 1:
        raise FormatError(
            f"CellVoyager measurement data {path}: an IMG record has no file name or an index below 1 "
            f"({file or 'no file'}: {values}); copy the measurement folder again"
        )
    x, y = _float(attributes, "X"), _float(attributes, "Y")
    return Record(
        file=file,
        row=values["Row"],
        column=values["Column"],
        timepoint=timepoint,
        field=values["FieldIndex"],
        z=values["ZIndex"],
        action=action,
        ch=values["Ch"],
        position_um=(x, y) if x is not None and y is not None else None,
        z_um=_float(attributes, "Z"),
        projection=attributes.get("ZImageProcessing", ""),
    )


def read_measurement_data(path: Path) -> MeasurementData:
    """Stream the .mlf (tens of MB for large screens); broken XML is a FormatError naming the file."""
    data = MeasurementData(Path(path))
    try:
        for _, element in ET.iterparse(path, events=("end",)):
            if _local(element.tag) != "MeasurementRecord":
                continue
            attributes = _attributes(element)
            kind = attributes.get("Type", "IMG")
            if kind == "IMG":
                data.images.append(_record(attributes, element.text or "", data.path))
            else:
                data.other_types[kind] = data.other_types.get(kind, 0) + 1
            element.clear()
    except ET.ParseError as exc:
        raise FormatError(
            f"CellVoyager measurement data {path} is not valid XML ({exc}): the copy was probably interrupted "
            "or the measurement is still running; copy the finished measurement folder again"
        ) from exc
    except OSError as exc:
        raise FormatError(f"cannot read CellVoyager measurement data {path}: {exc}") from exc
    return data


# -- records -> planes -----------------------------------------------------------------------------------------
def _channel_numbers(records: list[Record]) -> dict[tuple[int, int], int]:
    """(ActionIndex, Ch) -> channel index: Ch itself, unless one Ch is acquired by several actions."""
    pairs = sorted({(r.action, r.ch) for r in records})
    by_ch: dict[int, set[int]] = {}
    for action, ch in pairs:
        by_ch.setdefault(ch, set()).add(action)
    if all(len(actions) == 1 for actions in by_ch.values()):
        return {(action, ch): ch for action, ch in pairs}
    return {pair: index for index, pair in enumerate(pairs, start=1)}


def _drop_redundant_projections(records: list[Record], warnings: list[str]) -> list[Record]:
    """Projection records of a (well, field, t, action, Ch) that also has planes: the planes are the data."""
    planes = {(r.row, r.column, r.field, r.timepoint, r.action, r.ch) for r in records if _is_plane(r)}
    kept = [r for r in records if _is_plane(r) or (r.row, r.column, r.field, r.timepoint, r.action, r.ch) not in planes]
    if len(kept) < len(records):
        methods = sorted({r.projection for r in records if not _is_plane(r)})
        warnings.append(
            f"{len(records) - len(kept)} projection image(s) ({', '.join(methods)}) skipped: their z-planes "
            "are in the measurement too"
        )
    return kept


def _is_plane(record: Record) -> bool:
    return record.projection.lower() in _NO_PROJECTION


def _check_well(record: Record, layout: tuple[int, int], mlf: Path) -> None:
    if record.row > layout[0] or record.column > layout[1]:
        raise FormatError(
            f"CellVoyager measurement data {mlf}: {record.file} is recorded at row {record.row}, column "
            f"{record.column}, outside the plate's {layout[0]} rows x {layout[1]} columns; the .mlf and .mrf "
            "are from different measurements: copy the measurement folder again"
        )


@dataclass
class _Planes:
    images: list[ImageStructure] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    first_record: dict[ImageKey, Record] = field(default_factory=dict)


def _planes(root: Path, folder: Path, records: list[Record], layout: tuple[int, int], mlf: Path) -> _Planes:
    """ImageStructures for the records whose files exist (one directory listing per folder)."""
    channel_of = _channel_numbers(records)
    t_of = {value: rank for rank, value in enumerate(sorted({r.timepoint for r in records}), start=1)}
    listings: dict[Path, set[str]] = {}
    found = _Planes()
    for record in records:
        _check_well(record, layout, mlf)
        path = folder / record.file
        if path.parent not in listings:
            listings[path.parent] = {e.name for e in _listing(path.parent) if e.is_file()}
        if path.name not in listings[path.parent]:
            found.missing.append(record.file)
            continue
        key = ImageKey(
            well_name(record.row - 1, record.column - 1),
            record.field,
            channel_of[(record.action, record.ch)],
            record.z,
            t_of[record.timepoint],
        )
        if key in found.first_record:
            raise FormatError(
                f"CellVoyager measurement data {mlf} lists two images for well {key.well} field {key.site} "
                f"channel {key.channel} z {key.z} timepoint {key.t}: {found.first_record[key].file} and "
                f"{record.file}; the file is damaged or two measurements were merged: copy it again"
            )
        found.first_record[key] = record
        source = Path(os.path.relpath(path, root)).as_posix()
        found.images.append(ImageStructure(key, source, None, record.position_um))
    return found


# -- channels --------------------------------------------------------------------------------------------------
_FILTER_RE = re.compile(r"^SC_(?P<filter>[^_]+)_")
_BAND_RE = re.compile(r"(?:BP|LP|SP)?\s*(?P<centre>\d{3})(?:[/-]\d+)?", re.IGNORECASE)


def _channel_name(ch: int, setting: dict[str, str], detail: dict[str, str]) -> str:
    """Fluorophore, else the emission filter of the .mes, else the filter in the shading file's name."""
    for candidate in (setting.get("Fluorophore"), setting.get("Acquisition")):
        if candidate:
            return candidate
    match = _FILTER_RE.match(detail.get("ShadingCorrectionSource", ""))
    return match.group("filter") if match else f"Ch{ch}"


def _emission_nm(name: str, setting: dict[str, str]) -> float | None:
    """Centre of the emission band 'BP445/45' -> 445 (the filter the camera looks through)."""
    match = _BAND_RE.match(setting.get("Acquisition") or name)
    return float(match.group("centre")) if match else None


def _channels(
    records: list[Record], detail: MeasurementDetail | None, setting: dict[int, dict[str, str]]
) -> list[ChannelInfo]:
    """One ChannelInfo per channel index, names made unique (a name may repeat across actions)."""
    infos: dict[int, ChannelInfo] = {}
    pairs = _channel_numbers(records)
    several_actions = any(index != ch for (_, ch), index in pairs.items())
    for (action, ch), index in sorted(pairs.items(), key=lambda item: item[1]):
        detail_attributes = detail.channels.get(ch, {}) if detail else {}
        name = _channel_name(ch, setting.get(ch, {}), detail_attributes)
        if several_actions:
            name = f"{name} (A{action:02d})"
        infos[index] = ChannelInfo(index, name, _emission_nm(name, setting.get(ch, {})))
    return _unique_names([infos[i] for i in sorted(infos)])


def _unique_names(channels: list[ChannelInfo]) -> list[ChannelInfo]:
    """Append ' (Ch<n>)' to names several channels share, so every channel can be addressed by name."""
    counts: dict[str, int] = {}
    for channel in channels:
        counts[channel.name] = counts.get(channel.name, 0) + 1
    return [
        ChannelInfo(c.index, f"{c.name} (Ch{c.index})", c.wavelength_nm) if counts[c.name] > 1 else c for c in channels
    ]


# -- the handler -------------------------------------------------------------------------------------------------
class YokogawaHandler(FormatHandler):
    """CellVoyager CV7000 / CV8000 / CQ1 measurement folders (see the module docstring)."""

    name = "yokogawa"
    compatible_backends = ("disk", "zarr")

    @classmethod
    def detect(cls, root: Path) -> bool:
        """True when ``root`` or the end of a single-subfolder chain below it holds ``MeasurementData.mlf``."""
        return Path(root).is_dir() and find_measurement_folder(Path(root)) is not None

    @classmethod
    def refusal(cls, root: Path) -> str | None:
        """A .mrf without its .mlf is half a measurement: say so rather than stay silent."""
        if Path(root).is_dir() and _file_named(Path(root), MRF_NAME) is not None:
            return f"{MRF_NAME} is present but {MLF_NAME} is missing: copy the complete measurement folder"
        return None

    def parse(self, root: Path, plate_name: str | None = None) -> PlateStructure:
        """List the planes of the .mlf's image records whose files exist (missing ones are warned)."""
        root = Path(root).absolute()
        folder = find_measurement_folder(root) if root.is_dir() else None
        if folder is None:
            raise FormatError(
                f"{root} is not a Yokogawa CellVoyager measurement folder: no {MLF_NAME} in it (nor down a "
                "chain of single subfolders); point at the folder the CV7000/CV8000/CQ1 wrote the "
                f"measurement to, which holds {MLF_NAME} and {MRF_NAME}"
            )
        warnings: list[str] = []
        mlf = _file_named(folder, MLF_NAME)
        assert mlf is not None  # find_measurement_folder found it
        data = read_measurement_data(mlf)
        detail = self._detail(folder, warnings)
        self._report_other_records(data, warnings)
        if not data.images:
            raise FormatError(
                f'CellVoyager measurement data {mlf} holds no image records (bts:Type="IMG"); '
                f"records found: {data.other_types or 'none'}: the measurement acquired nothing"
            )
        records = _drop_redundant_projections(data.images, warnings)
        layout = (detail.layout if detail else None) or _MAX_LAYOUT
        planes = _planes(root, folder, records, layout, mlf)
        if planes.missing:
            warnings.append(
                f"{len(planes.missing)} image(s) listed in {MLF_NAME} have no file and were left out, e.g. "
                f"{', '.join(planes.missing[:_EXAMPLES])}: copy the complete measurement folder"
            )
        if not planes.images:
            raise FormatError(
                f"CellVoyager measurement data {mlf} lists {len(records)} image(s) but none of their files "
                f"exist in {folder} (e.g. {', '.join(planes.missing[:_EXAMPLES])}): copy the image files"
            )
        return self._assemble(root, folder, plate_name, data, detail, records, planes, warnings)

    @staticmethod
    def _detail(folder: Path, warnings: list[str]) -> MeasurementDetail | None:
        mrf = _file_named(folder, MRF_NAME)
        if mrf is None:
            warnings.append(
                f"no {MRF_NAME} in {folder}: plate layout guessed from the wells, pixel size unknown; copy "
                "the complete measurement folder"
            )
            return None
        return read_measurement_detail(mrf)

    @staticmethod
    def _report_other_records(data: MeasurementData, warnings: list[str]) -> None:
        if data.other_types:
            counts = ", ".join(f"{count} {kind}" for kind, count in sorted(data.other_types.items()))
            warnings.append(
                f"{MLF_NAME} holds records that are not images ({counts}; ERR marks an acquisition error "
                "such as an autofocus failure): they were skipped"
            )

    def _assemble(
        self,
        root: Path,
        folder: Path,
        plate_name: str | None,
        data: MeasurementData,
        detail: MeasurementDetail | None,
        records: list[Record],
        planes: _Planes,
        warnings: list[str],
    ) -> PlateStructure:
        wells = build_wells(planes.images)
        first = wells[min(wells, key=lambda w: wells[w].position)].images[0]
        shape, dtype = tiff_page_info(root / first.source)
        setting = self._setting(folder, detail, warnings)
        layout = detail.layout if detail else None
        if layout is None:
            layout = infer_layout(list(wells))
            warnings.append(f"no usable plate layout in {MRF_NAME}: assumed {layout[0]} rows x {layout[1]} columns")
        metadata = self._metadata(root, folder, data, detail, records)
        if detail:
            _check_detail(detail, shape, warnings)
        return PlateStructure(
            name=plate_name or root.name,
            format=self.name,
            root=str(root),
            rows=layout[0],
            columns=layout[1],
            channels=_channels(records, detail, setting),
            wells=wells,
            image_shape=shape,
            dtype=dtype,
            pixel_size_um=_pixel_size_um(detail),
            z_step_um=_z_step_um(planes),
            warnings=warnings,
            metadata=metadata,
        )

    @staticmethod
    def _setting(folder: Path, detail: MeasurementDetail | None, warnings: list[str]) -> dict[int, dict[str, str]]:
        """The .mes channels, when the .mrf names a setting file that was copied along."""
        name = detail.plate.get("MeasurementSettingFileName") if detail else None
        path = _file_named(folder, name) if name else None
        if path is None:
            if name:
                warnings.append(f"measurement setting {name} (named in {MRF_NAME}) is missing: channel names guessed")
            return {}
        return read_setting_channels(path)

    @staticmethod
    def _metadata(
        root: Path, folder: Path, data: MeasurementData, detail: MeasurementDetail | None, records: list[Record]
    ) -> dict[str, Any]:
        listed = {Path(r.file).name for r in data.images}
        others = [e.name for e in _listing(folder) if e.is_file() and e.name.lower().endswith((".tif", ".tiff"))]
        unlisted = [name for name in others if name not in listed]
        channels = detail.channels if detail else {}
        shading = {
            str(ch): a["ShadingCorrectionSource"]
            for ch, a in sorted(channels.items())
            if a.get("ShadingCorrectionSource")
        }
        metadata: dict[str, Any] = {
            "measurement_folder": Path(os.path.relpath(folder, root)).as_posix(),
            "target_system": detail.plate.get("TargetSystem") if detail else None,
            "release": detail.plate.get("ReleaseNumber") if detail else None,
            "title": detail.plate.get("Title") if detail else None,
            "shading_correction_files": shading,
            "non_image_records": dict(data.other_types),
            "channel_sources": sorted({f"A{r.action:02d}C{r.ch:02d}" for r in records}),
        }
        if unlisted:
            metadata["tiffs_not_in_measurement_data"] = {"count": len(unlisted), "examples": unlisted[:_EXAMPLES]}
        return metadata


def _pixel_size_um(detail: MeasurementDetail | None) -> float | None:
    """HorizontalPixelDimension (um) of the lowest channel of the .mrf."""
    if not detail or not detail.channels:
        return None
    value = _float(detail.channels[min(detail.channels)], "HorizontalPixelDimension")
    return value if value and value > 0 else None


def _check_detail(detail: MeasurementDetail, shape: tuple[int, int], warnings: list[str]) -> None:
    """The .mrf's image size and pixel size per channel against the files: differences become warnings."""
    sizes = {_float(a, "HorizontalPixelDimension") for a in detail.channels.values()}
    if len(sizes) > 1:
        warnings.append(f"the channels of {MRF_NAME} have different pixel sizes {sorted(s for s in sizes if s)}")
    for ch, attributes in sorted(detail.channels.items()):
        width, height = _float(attributes, "HorizontalPixels"), _float(attributes, "VerticalPixels")
        if width and height and (int(height), int(width)) != shape:
            warnings.append(
                f"{MRF_NAME} declares {int(height)}x{int(width)} (rows x columns) images for channel {ch} but "
                f"the files are {shape[0]}x{shape[1]}: the files' size is used"
            )


def _z_step_um(planes: _Planes) -> float | None:
    """Mean spacing of the first stack with more than one plane, from the records' Z (um)."""
    stacks: dict[tuple[str, int, int, int], list[tuple[int, float | None]]] = {}
    for key, record in planes.first_record.items():
        stacks.setdefault((key.well, key.site, key.channel, key.t), []).append((key.z, record.z_um))
    for stack in stacks.values():
        heights = [z_um for _, z_um in sorted(stack)]
        if len(heights) > 1 and all(h is not None for h in heights):
            known = [h for h in heights if h is not None]
            steps = [abs(b - a) for a, b in zip(known, known[1:], strict=False)]
            return round(sum(steps) / len(steps), 4)
    return None
