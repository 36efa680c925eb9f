"""Write Yokogawa CellVoyager (CV7000/CV8000/CQ1) measurement folders for tests, faithful to real ones.

The structure reproduces faim-ipa's ``resources/CV8000/CV8000-Minimal-DataSet-2C-3W-4S-FP2-stack_20230918_135839``
(BSD-3-Clause, https://github.com/fmi-faim/faim-ipa): an outer ``<title>_<date>_<time>`` folder holding TRACE
logs and one measurement folder, which holds ``MeasurementDetail.mrf`` (plate layout, one
``bts:MeasurementChannel`` per channel with pixel size, image size and its ``ShadingCorrectionSource``),
``MeasurementData.mlf`` (one ``bts:MeasurementRecord`` per image, the file name as its text), the measurement
setting ``.mes`` (channel filters and lasers), the plate files ``.wpi``/``.wpp``, the images
``<title>_<well>_T0001F001L01A01Z01C01.tif`` and the shading-correction images ``SC_<filter>_<objective>_M01_CH01.tif``
the instrument copies next to them. Only the pixel counts are small (real images are 2000x2000); pixel values
encode the plane so a test can check which file was read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

BTS = "http://www.yokogawa.co.jp/BTS/BTSSchema/1.0"
#: (filter as in the .mes, laser line, emission centre) of the CV8000's four standard channels
FILTERS = [("BP445/45", 405), ("BP525/50", 488), ("BP600/37", 561), ("BP676/29", 640)]


@dataclass
class CellVoyagerPlate:
    """What to write; the defaults mirror the faim-ipa CV8000 minimal data set (3 wells, 4 fields, z stack)."""

    title: str = "CV8000-Minimal-DataSet-2C-3W-4S-FP2-stack"
    wells: list[tuple[int, int]] = field(default_factory=lambda: [(4, 8), (5, 3), (6, 8)])  # 1-based (row, col)
    fields: int = 4
    channels: int = 2
    z_planes: int = 4
    timepoints: int = 1
    height: int = 24
    width: int = 32
    rows: int = 8
    columns: int = 12
    target_system: str = "CV8000"
    shading_files: bool = True
    error_records: int = 0
    write_mes: bool = True


def image_name(plate: CellVoyagerPlate, row: int, col: int, t: int, f: int, z: int, ch: int) -> str:
    """``<title>_<well>_T0001F001L01A01Z01C01.tif``: timepoint, field, timeline, action, z, channel."""
    well = f"{chr(ord('A') + row - 1)}{col:02d}"
    return f"{plate.title}_{well}_T{t:04d}F{f:03d}L01A{ch:02d}Z{z:02d}C{ch:02d}.tif"


def shading_name(ch: int) -> str:
    """A shading-correction image as the CV8000 names it (real: ``SC_BP445-45_20x v2_M01_CH01.tif``)."""
    return f"SC_{FILTERS[ch - 1][0].replace('/', '-')}_40x_M10_CH{ch:02d}.tif"


def plane_value(row: int, col: int, t: int, f: int, z: int, ch: int) -> int:
    """The constant pixel value written into one plane (unique for rows <= 8, t <= 3, f, z, ch <= 4)."""
    return ((((row * 13 + col) * 4 + t) * 5 + f) * 5 + z) * 5 + ch


def _records(plate: CellVoyagerPlate) -> list[str]:
    lines = []
    for t in range(1, plate.timepoints + 1):
        for row, col in plate.wells:
            for f in range(1, plate.fields + 1):
                for ch in range(1, plate.channels + 1):
                    for z in range(1, plate.z_planes + 1):
                        lines.append(
                            f'<bts:MeasurementRecord bts:Type="IMG" bts:Time="2023-09-18T13:58:44.438+02:00" '
                            f'bts:Column="{col}" bts:Row="{row}" bts:TimePoint="{t}" bts:FieldIndex="{f}" '
                            f'bts:ZIndex="{z}" bts:TimelineIndex="1" bts:ActionIndex="{ch}" bts:Action="3D" '
                            f'bts:X="{-567.1 + 650 * ((f - 1) % 2):.1f}" bts:Y="{402.9 - 650 * ((f - 1) // 2):.1f}" '
                            f'bts:Z="{3.0 * (z - 1):.1f}" bts:Ch="{ch}">'
                            f"{image_name(plate, row, col, t, f, z, ch)}</bts:MeasurementRecord>"
                        )
    for _ in range(plate.error_records):  # an autofocus failure: no field, no file
        row, col = plate.wells[0]
        lines.append(f'<bts:MeasurementRecord bts:Type="ERR" bts:Column="{col}" bts:Row="{row}" />')
    return lines


def mlf_text(plate: CellVoyagerPlate) -> str:
    body = "\n".join(_records(plate))
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<bts:MeasurementData bts:Version="1.0" xmlns:bts="{BTS}">\n{body}\n</bts:MeasurementData>\n'
    )


def mrf_text(plate: CellVoyagerPlate) -> str:
    channels = "\n".join(
        f'  <bts:MeasurementChannel bts:Ch="{ch}" bts:HorizontalPixelDimension="0.325" '
        f'bts:VerticalPixelDimension="0.325" bts:CameraNumber="{3 + (ch - 1) // 2}" bts:InputBitDepth="16" '
        f'bts:InputLevel="10000" bts:HorizontalPixels="{plate.width}" bts:VerticalPixels="{plate.height}" '
        f'bts:FilterWheelPosition="6" bts:FilterPosition="{ch}" bts:ShadingCorrectionSource="{shading_name(ch)}" '
        f'bts:ObjectiveMagnificationRatio="1" bts:OriginalHorizontalPixels="{plate.width}" '
        f'bts:OriginalVerticalPixels="{plate.height}" />'
        for ch in range(1, plate.channels + 1)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<bts:MeasurementDetail bts:Version="1.0" bts:OperatorName="tester" bts:Title="{plate.title}" '
        'bts:Application="" bts:BeginTime="2023-09-18T13:58:39.4014935+02:00" '
        'bts:EndTime="2023-09-18T13:59:15.9664907+02:00" bts:MeasurementSettingFileName="protocol.mes" '
        f'bts:ColumnCount="{plate.columns}" bts:RowCount="{plate.rows}" bts:TimePointCount="{plate.timepoints}" '
        f'bts:FieldCount="{plate.fields}" bts:ZCount="{plate.z_planes}" bts:TargetSystem="{plate.target_system}" '
        f'bts:ReleaseNumber="R2.06.03" bts:Status="0" xmlns:bts="{BTS}">\n'
        f'  <bts:MeasurementSamplePlate bts:Name="{plate.title}" bts:WellPlateFileName="{plate.title}.wpi" '
        'bts:WellPlateProductFileName="1009680001_Cellvis_#P96-1.5H-N.wpp" />\n'
        f"{channels}\n</bts:MeasurementDetail>\n"
    )


def mes_text(plate: CellVoyagerPlate) -> str:
    channels = "\n".join(
        f'    <bts:Channel bts:Ch="{ch}" bts:Target="{FILTERS[ch - 1][1]}" bts:Objective="40x" '
        f'bts:Acquisition="{FILTERS[ch - 1][0]}" bts:ExposureTime="100" bts:Binning="1" bts:Fluorophore="">\n'
        f"      <bts:LightSourceName>{FILTERS[ch - 1][1]}nm</bts:LightSourceName>\n    </bts:Channel>"
        for ch in range(1, plate.channels + 1)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<bts:MeasurementSetting bts:Version="1.0" bts:Columns="{plate.columns}" bts:Rows="{plate.rows}" '
        f'xmlns:bts="{BTS}">\n  <bts:ChannelList>\n{channels}\n  </bts:ChannelList>\n</bts:MeasurementSetting>\n'
    )


def write_shading_files(folder: Path, channels: int, shape: tuple[int, int] = (24, 32)) -> list[Path]:
    """The calibration images a CV8000 keeps next to the measurement (float32 gain maps)."""
    paths = []
    for ch in range(1, channels + 1):
        path = folder / shading_name(ch)
        tifffile.imwrite(path, np.full(shape, 1.0, np.float32))
        paths.append(path)
    return paths


def write_cellvoyager_plate(root: Path, plate: CellVoyagerPlate | None = None) -> Path:
    """Write the plate under ``root`` as the instrument does; returns the measurement folder.

    ``root`` becomes the outer ``<title>_<date>_<time>`` folder (TRACE log + the measurement folder).
    """
    plate = plate or CellVoyagerPlate()
    folder = root / plate.title
    folder.mkdir(parents=True)
    (root / "TRACE2023-09-18.log").write_text("2023/09/18 13:58:39.401 measurement started\n")
    (folder / "MeasurementData.mlf").write_text(mlf_text(plate), encoding="utf-8")
    (folder / "MeasurementDetail.mrf").write_text(mrf_text(plate), encoding="utf-8")
    if plate.write_mes:
        (folder / "protocol.mes").write_text(mes_text(plate), encoding="utf-8")
    (folder / f"{plate.title}.wpi").write_text(
        f'<?xml version="1.0" encoding="utf-8"?>\n<bts:WellPlate bts:Name="{plate.title}" '
        f'bts:Columns="{plate.columns}" bts:Rows="{plate.rows}" xmlns:bts="{BTS}" />\n'
    )
    for t in range(1, plate.timepoints + 1):
        for row, col in plate.wells:
            for f in range(1, plate.fields + 1):
                for ch in range(1, plate.channels + 1):
                    for z in range(1, plate.z_planes + 1):
                        value = plane_value(row, col, t, f, z, ch)
                        data = np.full((plate.height, plate.width), value, np.uint16)
                        tifffile.imwrite(folder / image_name(plate, row, col, t, f, z, ch), data)
    if plate.shading_files:
        write_shading_files(folder, plate.channels, (plate.height, plate.width))
    return folder
