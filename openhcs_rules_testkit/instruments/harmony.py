"""Write small Harmony exports (Opera Phenix / Operetta CLS) the way Harmony V5, V6 and V7 write them.

The element names, their order, the namespaces, the ``Unit`` attributes and the file names follow real
exports: Harmony V5 from pe2loaddata ``tests/data/Version5/images/Index.idx.xml`` (in ../shared/fixtures),
Harmony V7 from pe2loaddata ``tests/data/Version7/images/Index.xml`` (BSD-3, github.com/broadinstitute/
pe2loaddata). V6 uses the V6 namespace with the V7 layout: per-channel facts in ``Maps/Map/Entry``, not in
each ``<Image>`` (as the public V6 readers expect, e.g. ``findall(ns + "Maps")`` then ``Entry/ChannelName``).

What differs between versions, and what the tests exercise:

- V5: ``Index.idx.xml``, ``Version="1"``, ``TimepointID`` 0-based (``sk1`` in the file name is 0), every
  ``<Image>`` carries ChannelName, ImageResolutionX/Y, ImageSizeX/Y and the wavelengths.
- V6/V7: ``Index.xml``, V7 ``Version="2"``, ``TimepointID`` 1-based (``sk1`` is 1), ``<Image>`` carries only
  its address, positions and times; ChannelName etc. live in a third ``Map`` whose ``Entry`` elements are
  keyed by ``ChannelID`` (the first two Maps hold FlatfieldProfile and SkewcropParameters).

Pixels are small LZW-compressed uint16 TIFFs, as the instrument writes them (one plane per file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import tifffile

NAMESPACES = {
    5: "http://www.perkinelmer.com/PEHH/HarmonyV5",
    6: "http://www.perkinelmer.com/PEHH/HarmonyV6",
    7: "43B2A954-E3C3-47E1-B392-6635266B0DD3/HarmonyV7",
}
INDEX_NAMES = {5: "Index.idx.xml", 6: "Index.xml", 7: "Index.xml"}
ROOT_VERSION = {5: "1", 6: "1", 7: "2"}
PIXEL_SIZE_M = 2.96688132474701e-07


@dataclass
class HarmonyChannel:
    """One channel as Harmony describes it (None leaves the element out)."""

    name: str | None
    excitation_nm: int = 488
    emission_nm: int = 522
    channel_type: str = "Fluorescence"
    resolution: str | None = f"{PIXEL_SIZE_M!r}".replace("e-07", "E-07")
    size: tuple[int, int] | None = None  # (ImageSizeX, ImageSizeY); None: the TIFF's shape


@dataclass
class HarmonyExport:
    """What to write; ``layout`` is where the index and TIFFs go: '' (flat), 'Images' or 'images'."""

    version: int
    channels: list[HarmonyChannel]
    wells: list[tuple[int, int]] = field(default_factory=lambda: [(1, 1)])
    fields: int = 1
    planes: int = 1
    timepoints: int = 1
    shape: tuple[int, int] = (64, 64)
    plate_id: str = "240624_WES_Perturbs_n_densities_1.1"
    layout: str = "images"
    with_sk: bool = True  # False: file names without the 'sk' number (a renamed export)
    maps_channels: bool = True  # False: a V6/V7 index whose channel Map is missing
    seed: int = 0


def _timepoint_id(export: HarmonyExport, t: int) -> int:
    """The TimepointID Harmony writes for the 1-based timepoint ``t``."""
    return t - 1 if export.version <= 5 else t


def url(export: HarmonyExport, row: int, col: int, fld: int, plane: int, channel: int, t: int) -> str:
    sk = f"sk{t}" if export.with_sk else ""
    return f"r{row:02d}c{col:02d}f{fld:02d}p{plane:02d}-ch{channel}{sk}fk1fl1.tiff"


def _channel_facts(export: HarmonyExport, index: int, pad: str) -> tuple[list[str], list[str]]:
    """The per-channel elements, in the order Harmony writes them (V5 inside <Image>, V6+ in Maps)."""
    ch = export.channels[index - 1]
    size_x, size_y = ch.size or (export.shape[1], export.shape[0])
    lines = []
    if ch.name is not None:
        lines.append(f"<ChannelName>{escape(ch.name)}</ChannelName>")
    lines += [
        "<ImageType>Signal</ImageType>",
        "<AcquisitionType>NonConfocal</AcquisitionType>",
        "<IlluminationType>Epifluorescence</IlluminationType>",
        f"<ChannelType>{ch.channel_type}</ChannelType>",
    ]
    if ch.resolution is not None:
        lines += [
            f'<ImageResolutionX Unit="m">{ch.resolution}</ImageResolutionX>',
            f'<ImageResolutionY Unit="m">{ch.resolution}</ImageResolutionY>',
        ]
    lines += [
        f"<ImageSizeX>{size_x}</ImageSizeX>",
        f"<ImageSizeY>{size_y}</ImageSizeY>",
        "<BinningX>1</BinningX>",
        "<BinningY>1</BinningY>",
        "<MaxIntensity>65536</MaxIntensity>",
        "<CameraType>AndorZylaCam</CameraType>",
    ]
    waves = [
        f'<MainExcitationWavelength Unit="nm">{ch.excitation_nm}</MainExcitationWavelength>',
        f'<MainEmissionWavelength Unit="nm">{ch.emission_nm}</MainEmissionWavelength>',
        '<ObjectiveMagnification Unit="">20</ObjectiveMagnification>',
        '<ObjectiveNA Unit="">1</ObjectiveNA>',
        '<ExposureTime Unit="s">0.01</ExposureTime>',
    ]
    if export.version <= 5:
        return [pad + line for line in lines], [pad + line for line in waves]
    waves += ['<ExcitationPower Unit="Percent">20</ExcitationPower>']
    tail = [
        "<OrientationMatrix>[[0.994724,0,0,47.2],[0,-0.994724,0,-7.5],[0,0,1.00,5.597]]</OrientationMatrix>",
        f"<CropArea>[[0,0],[{size_x},{size_y}],[{size_x},{size_y}]]</CropArea>",
    ]
    return [pad + line for line in lines + waves + tail], []


def _image_xml(export: HarmonyExport, row: int, col: int, fld: int, plane: int, channel: int, t: int) -> list[str]:
    pad = "      "
    image_id = f"{row:02d}{col:02d}K{t}F{fld}P{plane}R{channel}"
    head = [
        '    <Image Version="1">',
        f"{pad}<id>{image_id}</id>",
        f"{pad}<State>Ok</State>",
        f"{pad}<URL>{url(export, row, col, fld, plane, channel, t)}</URL>",
        f"{pad}<Row>{row}</Row>",
        f"{pad}<Col>{col}</Col>",
        f"{pad}<FieldID>{fld}</FieldID>",
        f"{pad}<PlaneID>{plane}</PlaneID>",
        f"{pad}<TimepointID>{_timepoint_id(export, t)}</TimepointID>",
    ]
    if export.version >= 7:
        head += [f"{pad}<SequenceID>1</SequenceID>", f"{pad}<GroupID>1</GroupID>"]
    head += [f"{pad}<ChannelID>{channel}</ChannelID>", f"{pad}<FlimID>1</FlimID>"]
    x_m, y_m, z_m = (fld - 1) * 6.0e-4, 0.0, -5e-06 + (plane - 1) * 2e-06
    where = [
        f'{pad}<PositionX Unit="m">{x_m:g}</PositionX>',
        f'{pad}<PositionY Unit="m">{y_m:g}</PositionY>',
        f'{pad}<PositionZ Unit="m">{z_m:g}</PositionZ>',
        f'{pad}<AbsPositionZ Unit="m">{0.134650007 + z_m:.9f}</AbsPositionZ>',
        f'{pad}<MeasurementTimeOffset Unit="s">{(t - 1) * 600}</MeasurementTimeOffset>',
        f"{pad}<AbsTime>2024-06-24T11:48:55.515-04:00</AbsTime>",
    ]
    if export.version <= 5:
        facts, waves = _channel_facts(export, channel, pad)
        matrix = (
            f"{pad}<OrientationMatrix>[[0.985998,0,0,-14.5],[0,-0.985998,0,-30.8],[0,0,1.00,5.671]]</OrientationMatrix>"
        )
        return [*head, *facts, *where, *waves, matrix, "    </Image>"]
    return [*head, *where, "    </Image>"]


def _maps_xml(export: HarmonyExport) -> list[str]:
    count = len(export.channels)
    lines = ["  <Maps>", "    <Map>"]
    for index in range(1, count + 1):
        name = export.channels[index - 1].name or ""
        lines += [
            f'      <Entry ChannelID="{index}">',
            "        <FlatfieldProfile>{Background: {Character: Null, Profile: {Type: Identity}, Quality: 1}, "
            f"Channel: {index}, ChannelName: {escape(name)}, Version: Acapella:2013}}</FlatfieldProfile>",
            "      </Entry>",
        ]
    lines.append("    </Map>")
    if export.version >= 6:
        lines.append("    <Map>")
        for index in range(1, count + 1):
            lines += [
                f'      <Entry ChannelID="{index}">',
                "        <SkewcropParameters>H4sIAAAAAAAECu1WW4/aOhB+51dEeUVtcMhCkICehGt2FwUWdrm85eIEL0kcYudC\n"
                "</SkewcropParameters>",
                "      </Entry>",
            ]
        lines.append("    </Map>")
        if export.maps_channels:
            lines.append("    <Map>")
            for index in range(1, count + 1):
                facts, _ = _channel_facts(export, index, "        ")
                lines += [f'      <Entry ChannelID="{index}">', *facts, "      </Entry>"]
            lines.append("    </Map>")
    lines.append("  </Maps>")
    return lines


def _keys(export: HarmonyExport) -> list[tuple[int, int, int, int, int, int]]:
    return [
        (row, col, fld, plane, channel, t)
        for (row, col) in export.wells
        for t in range(1, export.timepoints + 1)
        for fld in range(1, export.fields + 1)
        for plane in range(1, export.planes + 1)
        for channel in range(1, len(export.channels) + 1)
    ]


def index_xml(export: HarmonyExport) -> str:
    """The whole index file, as Harmony writes it for ``export.version``."""
    ns = NAMESPACES[export.version]
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<EvaluationInputData xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'Version="{ROOT_VERSION[export.version]}" xmlns="{ns}">',
        "  <User>dboone</User>",
        "  <InstrumentType>Phenix</InstrumentType>",
        "  <Plates>",
        "    <Plate>",
        f"      <PlateID>{escape(export.plate_id)}</PlateID>",
        "      <MeasurementID>afe2b354-ccc6-4878-88e9-e695fa5cc9b1</MeasurementID>",
        "      <MeasurementStartTime>2024-06-24T11:48:44.5462111-04:00</MeasurementStartTime>",
        f"      <Name>{escape(export.plate_id)}</Name>",
        "      <PlateTypeName>96 PerkinElmer CellCarrier Ultra</PlateTypeName>",
        "      <PlateRows>8</PlateRows>",
        "      <PlateColumns>12</PlateColumns>",
        *[f'      <Well id="{r:02d}{c:02d}" />' for r, c in export.wells],
        "    </Plate>",
        "  </Plates>",
        "  <Wells>",
    ]
    keys = _keys(export)
    for row, col in export.wells:
        lines += [
            "    <Well>",
            f"      <id>{row:02d}{col:02d}</id>",
            f"      <Row>{row}</Row>",
            f"      <Col>{col}</Col>",
        ]
        lines += [
            f'      <Image id="{r:02d}{c:02d}K{t}F{f}P{p}R{ch}" />'
            for r, c, f, p, ch, t in keys
            if (r, c) == (row, col)
        ]
        lines.append("    </Well>")
    lines += ["  </Wells>", *_maps_xml(export), "  <Images>"]
    for key in keys:
        lines += _image_xml(export, *key)
    lines += ["  </Images>", "</EvaluationInputData>", ""]
    return "\r\n".join(lines) if export.version <= 5 else "\n".join(lines)


def write_export(root: Path, export: HarmonyExport) -> Path:
    """Write the index and every TIFF under ``root``; returns ``root`` (the plate folder as exported)."""
    folder = root / export.layout if export.layout else root
    folder.mkdir(parents=True, exist_ok=True)
    text = index_xml(export)
    bom = "\ufeff" if export.version <= 5 else ""  # V5 files start with a UTF-8 BOM
    (folder / INDEX_NAMES[export.version]).write_text(bom + text, encoding="utf-8", newline="")
    rng = np.random.default_rng(export.seed)
    for key in _keys(export):
        pixels = rng.integers(100, 4000, size=export.shape, dtype=np.uint16)
        tifffile.imwrite(folder / url(export, *key), pixels, compression="lzw", photometric="minisblack")
    return root


CELL_PAINTING = [
    HarmonyChannel("Alexa 488", 488, 522),
    HarmonyChannel("Alexa 568", 561, 599),
    HarmonyChannel("Alexa 488 Em 650", 488, 706),
    HarmonyChannel("405ex, 570-630-em)", 405, 599),
    HarmonyChannel("Alexa 647", 640, 706),
    HarmonyChannel("HOECHST 33342", 405, 456),
    HarmonyChannel("Brightfield", 740, 0, "Brightfield"),
]
