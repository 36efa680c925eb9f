"""Strict format detection: a format claims a folder only when its files are consistent with it.

The case behind these tests: a Yokogawa CV8000 measurement folder was taken for ImageXpress because its
shading-correction images (``SC_BP445-45_40x_M10_CH01.tif``) fit the ImageXpress name pattern with a "well"
CH01 (row 86), and the calibration images would have been processed as wells.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from openhcs_rules.errors import FormatError
from openhcs_rules.formats.imagexpress import ImageXpressHandler, parse_imagexpress_filename
from openhcs_rules.formats.registry import detect_format, discover_plate
from openhcs_rules_testkit.instruments.cellvoyager import (
    CellVoyagerPlate,
    shading_name,
    write_cellvoyager_plate,
    write_shading_files,
)


def _tiff(path: Path, value: int = 1) -> Path:
    tifffile.imwrite(path, np.full((8, 8), value, np.uint16))
    return path


@pytest.mark.parametrize("name", ["SC_BP445-45_40x_M10_CH01.tif", "Plate_ZZ01_s1_w1.tif", "Plate_A49_s1.tif"])
def test_names_whose_well_cannot_be_on_a_plate_are_not_imagexpress(name: str) -> None:
    """Rows stop at AF (32) and columns at 48: CH01 or ZZ01 is a calibration file or noise, not a well."""
    assert parse_imagexpress_filename(name) is None


def test_last_well_of_a_1536_plate_still_parses() -> None:
    parsed = parse_imagexpress_filename("Plate_AF48_s1_w1.tif")
    assert parsed is not None and parsed.well == "AF48"


@pytest.mark.parametrize("outer", [True, False], ids=["outer-folder", "measurement-folder"])
def test_cv8000_folder_is_yokogawa_not_imagexpress(tmp_path: Path, outer: bool) -> None:
    measurement = write_cellvoyager_plate(tmp_path / "CV8000-Minimal_20230918_135839")
    root = measurement.parent if outer else measurement
    assert not ImageXpressHandler.detect(root)
    assert detect_format(root).name == "yokogawa"


def test_calibration_images_alone_are_refused(tmp_path: Path) -> None:
    """Shading-correction images without their measurement files: no format may claim the folder."""
    write_shading_files(tmp_path, 4)
    assert not ImageXpressHandler.detect(tmp_path)
    with pytest.raises(FormatError) as info:
        detect_format(tmp_path)
    message = str(info.value)
    assert "4 TIFF" in message
    assert shading_name(1) in message  # an example of what was found
    assert "32 rows x 48 columns" in message  # why the ImageXpress-looking names were not taken
    with pytest.raises(FormatError, match=r"SC_BP445-45_40x_M10_CH01\.tif"):
        ImageXpressHandler().parse(tmp_path)


def test_random_tiff_names_are_refused(tmp_path: Path) -> None:
    for name in ("overview.tif", "stitched_final.tif", "img_0001.tiff", "scan (2).tif"):
        _tiff(tmp_path / name)
    with pytest.raises(FormatError) as info:
        detect_format(tmp_path)
    message = str(info.value)
    assert "4 TIFF" in message and "overview.tif" in message


def test_one_imagexpress_name_among_many_foreign_ones_is_refused(tmp_path: Path) -> None:
    """A single file that happens to fit the pattern does not make a folder of 9 others a plate."""
    _tiff(tmp_path / "Scan_A01_s1_w1.tif")
    for index in range(9):
        _tiff(tmp_path / f"frame_{index:04d}.tif")
    assert not ImageXpressHandler.detect(tmp_path)
    with pytest.raises(FormatError, match=r"10 TIFF.*1 .*ImageXpress"):
        detect_format(tmp_path)


def test_calibration_images_next_to_an_imagexpress_plate_are_not_wells(fixtures_dir: Path, tmp_path: Path) -> None:
    source = fixtures_dir / "imagexpress_exported" / "9987_Plate_3435"
    root = Path(shutil.copytree(source, tmp_path / "plate"))
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    write_shading_files(root / "TimePoint_1", 2, (8, 8))
    plate = discover_plate(root)
    assert plate.format == "imagexpress"
    assert plate.well_names == ["B02", "B03"]
    assert any(shading_name(1) in w for w in plate.warnings)


def test_only_thumbnails_are_not_a_plate(tmp_path: Path) -> None:
    _tiff(tmp_path / "Scan_A01_s1_w1_thumb6EFE77C6-B96D-412A-9FD1-710DBDA32821.tif")
    assert not ImageXpressHandler.detect(tmp_path)


def test_cv8000_calibration_files_do_not_become_wells_when_imagexpress_is_forced(tmp_path: Path) -> None:
    measurement = write_cellvoyager_plate(tmp_path / "m", CellVoyagerPlate(wells=[(2, 2)], fields=1, z_planes=1))
    with pytest.raises(FormatError, match="not an ImageXpress plate folder"):
        ImageXpressHandler().parse(measurement)
