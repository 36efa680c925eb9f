"""Opera Phenix discovery and reading on a real Harmony V5 export (Index.idx.xml + LZW TIFFs)."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from openhcs_rules.errors import FormatError, ImageReadError
from openhcs_rules.formats.base import read_tiff_plane
from openhcs_rules.formats.opera_phenix import OperaPhenixHandler, find_index_file, read_harmony_index
from openhcs_rules.plate.model import PlateStructure

HANDLER = OperaPhenixHandler()
CHANNELS = [
    (1, "Digital Phase Contrast"),
    (2, "Brightfield high"),
    (3, "488 650"),
    (4, "Alexa 488"),
    (5, "Alexa 568"),
    (6, "Alexa 647"),
]


@pytest.fixture
def phenix(fixtures_dir: Path) -> Path:
    return fixtures_dir / "opera_phenix_v5"


@pytest.fixture
def plate(phenix: Path) -> PlateStructure:
    return HANDLER.parse(phenix)


def _tiffs(phenix: Path) -> list[Path]:
    return sorted(phenix.glob("*.tiff"))


def test_structure(phenix: Path, plate: PlateStructure) -> None:
    assert OperaPhenixHandler.detect(phenix)
    assert plate.name == "BR00122249"  # its PlateID: Harmony's name for the plate, not the folder's
    assert plate.metadata["plate_id"] == "BR00122249" and plate.metadata["harmony_version"] == 5
    assert plate.root == str(phenix.absolute())
    assert plate.well_names == ["A01"]
    assert plate.sites == [1]
    assert [(c.index, c.name) for c in plate.channels] == CHANNELS
    assert plate.z_planes == [1]
    assert plate.timepoints == [1]
    assert (plate.rows, plate.columns) == (16, 24)
    assert (plate.image_shape, plate.dtype) == ((1080, 1080), "uint16")
    assert plate.pixel_size_um == pytest.approx(0.598, abs=1e-3)
    assert plate.channel(4).wavelength_nm == 522.0
    assert plate.channel(2).wavelength_nm is None  # brightfield: emission 0 in the XML
    assert plate.warnings == []
    assert plate.metadata["instrument_plate_name"] == "BR00122249"
    assert plate.metadata["index_file"] == "Index.idx.xml"
    assert sorted(plate.metadata["flatfield_profiles"]) == ["1", "2", "3", "4", "5", "6"]
    assert "ChannelName: Alexa 488" in plate.metadata["flatfield_profiles"]["4"]
    image = plate.images()[0]
    assert image.source == "r01c01f01p01-ch1sk1fk1fl1.tiff"
    assert image.stage_position_um == pytest.approx((-322.907, -322.907))


def test_channels_agree_with_pe2loaddata_table(phenix: Path, plate: PlateStructure) -> None:
    """For every Orig<Name> group of load_data_version5.csv, our channel index/name for that file match."""
    with open(phenix / "load_data_version5.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_source = {image.source: image for image in plate.images()}
    groups = [column.removeprefix("FileName_Orig") for column in rows[0] if column.startswith("FileName_Orig")]
    assert len(groups) == 6
    for row in rows:
        for group in groups:
            image = by_source[row[f"FileName_Orig{group}"]]
            assert image.key.channel == int(row[f"Metadata_ChannelID_Orig{group}"]), group
            assert plate.channel(image.key.channel).name == row[f"Metadata_ChannelName_Orig{group}"], group
            assert image.key.well == row["Metadata_Well"]
            assert image.key.site == int(row["Metadata_Site"])


def test_planes_read_like_tifffile(phenix: Path, plate: PlateStructure) -> None:
    for image in plate.images():
        plane = HANDLER.read_plane(plate, image)
        direct = tifffile.imread(phenix / image.source)
        assert plane.shape == (1080, 1080) and plane.dtype == np.uint16
        assert plane[540, 540] == direct[540, 540]
        np.testing.assert_array_equal(plane, direct)


def _export_with_images_folder(phenix: Path, target: Path, xml_text: str | None = None, skip: int = 0) -> Path:
    """target/Index.idx.xml + target/Images/<links to the real TIFFs> (``skip`` leaves out the last ones)."""
    (target / "Images").mkdir(parents=True)
    text = xml_text if xml_text is not None else (phenix / "Index.idx.xml").read_text(encoding="utf-8-sig")
    (target / "Index.idx.xml").write_text(text, encoding="utf-8")
    tiffs = _tiffs(phenix)
    for tiff in tiffs[: len(tiffs) - skip]:
        os.symlink(tiff, target / "Images" / tiff.name)
    return target


def test_images_in_images_subfolder(phenix: Path, tmp_path: Path) -> None:
    root = _export_with_images_folder(phenix, tmp_path / "export")
    plate = HANDLER.parse(root)
    assert [i.source for i in plate.images()] == [f"Images/{p.name}" for p in _tiffs(phenix)]
    image = plate.images()[2]
    np.testing.assert_array_equal(HANDLER.read_plane(plate, image), tifffile.imread(phenix / image.source[7:]))


def test_index_inside_images_folder(phenix: Path, tmp_path: Path) -> None:
    root = tmp_path / "export"
    (root / "Images").mkdir(parents=True)
    shutil.copy(phenix / "Index.idx.xml", root / "Images" / "Index.idx.xml")
    for tiff in _tiffs(phenix):
        os.symlink(tiff, root / "Images" / tiff.name)
    assert find_index_file(root) == root / "Images" / "Index.idx.xml"
    plate = HANDLER.parse(root)
    assert plate.metadata["index_file"] == "Images/Index.idx.xml"
    assert len(plate.images()) == 6


def test_older_index_xml_with_other_namespace(phenix: Path, tmp_path: Path) -> None:
    """Index.xml of other Harmony versions: same elements, another namespace URI."""
    text = (phenix / "Index.idx.xml").read_text(encoding="utf-8-sig").replace("HarmonyV5", "HarmonyV6")
    root = tmp_path / "export"
    _export_with_images_folder(phenix, root, text)
    (root / "Index.idx.xml").rename(root / "Index.xml")
    plate = HANDLER.parse(root)
    assert [(c.index, c.name) for c in plate.channels] == CHANNELS
    assert plate.pixel_size_um == pytest.approx(0.598, abs=1e-3)


def test_missing_image_file_is_warned_and_left_out(phenix: Path, tmp_path: Path) -> None:
    root = _export_with_images_folder(phenix, tmp_path / "export", skip=1)
    plate = HANDLER.parse(root)
    assert plate.channel_indices == [1, 2, 3, 4, 5]
    assert any("r01c01f01p01-ch6sk1fk1fl1.tiff" in w and "no file" in w for w in plate.warnings)


def test_index_reading_keeps_records(phenix: Path) -> None:
    index = read_harmony_index(phenix / "Index.idx.xml")
    assert len(index.images) == 6
    assert index.plate["PlateRows"] == "16"
    assert index.images[0]["ImageResolutionX"] == ("5.979760809567617E-07", "m")


def test_truncated_index_is_a_format_error(phenix: Path, tmp_path: Path) -> None:
    text = (phenix / "Index.idx.xml").read_text(encoding="utf-8-sig")
    root = _export_with_images_folder(phenix, tmp_path / "export", text[: len(text) // 2])
    with pytest.raises(FormatError, match=r"Index\.idx\.xml is not valid XML"):
        HANDLER.parse(root)


def test_truncated_lzw_tiff_names_the_file(phenix: Path, tmp_path: Path) -> None:
    data = (phenix / "r01c01f01p01-ch3sk1fk1fl1.tiff").read_bytes()
    broken = tmp_path / "r01c01f01p01-ch3sk1fk1fl1.tiff"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"r01c01f01p01-ch3sk1fk1fl1\.tiff.*truncated"):
        read_tiff_plane(broken)


def test_folder_without_index(tmp_path: Path) -> None:
    assert not OperaPhenixHandler.detect(tmp_path)
    with pytest.raises(FormatError, match=rf"{tmp_path}.*Index\.idx\.xml"):
        HANDLER.parse(tmp_path)


def test_lowercase_images_folder(phenix: Path, tmp_path: Path) -> None:
    """Some Harmony exports name the subfolder ``images`` (pe2loaddata's Version5/Version7 data do)."""
    root = tmp_path / "export"
    (root / "images").mkdir(parents=True)
    shutil.copy(phenix / "Index.idx.xml", root / "images" / "Index.idx.xml")
    for tiff in _tiffs(phenix):
        os.symlink(tiff, root / "images" / tiff.name)
    assert OperaPhenixHandler.detect(root)
    plate = HANDLER.parse(root)
    assert plate.metadata["index_file"] == "images/Index.idx.xml"
    assert [(c.index, c.name) for c in plate.channels] == CHANNELS


def test_two_channels_with_one_name_are_renamed_with_their_emission(phenix: Path, tmp_path: Path) -> None:
    text = (phenix / "Index.idx.xml").read_text(encoding="utf-8-sig")
    text = text.replace("<ChannelName>Alexa 568</ChannelName>", "<ChannelName>Alexa 488</ChannelName>")
    root = _export_with_images_folder(phenix, tmp_path / "export", text)
    plate = HANDLER.parse(root)
    names = [c.name for c in plate.channels]
    assert names[3:5] == ["Alexa 488 em522nm", "Alexa 488 em599nm"]
    assert len({n.replace(" ", "_").lower() for n in names}) == 6
    renamed = [w for w in plate.warnings if "renamed" in w]
    assert len(renamed) == 2 and "channel 4 is named 'Alexa 488' like channel(s) 5" in renamed[0]
