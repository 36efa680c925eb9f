"""Opera Phenix / Operetta exports of every Harmony version (V5, V6, V7), written as Harmony writes them.

The exports are generated in tmp_path by ``openhcs_rules_testkit.instruments.harmony`` (structure taken from
real V5 and V7 index files, see that module). Each test names the fact a wrong reading got wrong: channel
names, wavelengths and pixel size living in ``Maps`` from V6 on, TimepointID being 0-based in V5 and 1-based
later, the plate's name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from openhcs_rules.cli import main
from openhcs_rules.errors import FormatError
from openhcs_rules.formats.opera_phenix import OperaPhenixHandler
from openhcs_rules.formats.registry import detect_format, discover_plate
from openhcs_rules.jobs.discover import discover
from openhcs_rules.jobs.illumination import estimate_plate_illumination
from openhcs_rules.jobs.process_well import process_well
from openhcs_rules_testkit.instruments.harmony import (
    CELL_PAINTING,
    PIXEL_SIZE_M,
    HarmonyChannel,
    HarmonyExport,
    index_xml,
    url,
    write_export,
)
from openhcs_rules_testkit.workflow import PIPELINE

HANDLER = OperaPhenixHandler()
NAMES = [c.name for c in CELL_PAINTING]
#: emission wavelengths as pe2loaddata's load_data_version7.csv lists them; brightfield's 0 means none
EMISSIONS = [522.0, 599.0, 706.0, 599.0, 706.0, 456.0, None]


def _export(tmp_path: Path, version: int, **options) -> Path:
    return write_export(tmp_path / "plate", HarmonyExport(version, options.pop("channels", CELL_PAINTING), **options))


@pytest.mark.parametrize("version", [5, 6, 7])
def test_every_version_gives_names_wavelengths_pixel_size_and_one_timepoint(tmp_path: Path, version: int) -> None:
    root = _export(tmp_path, version)
    assert detect_format(root).name == "opera_phenix"
    plate = discover_plate(root)
    assert [c.name for c in plate.channels] == NAMES
    assert [c.wavelength_nm for c in plate.channels] == EMISSIONS
    assert plate.pixel_size_um == pytest.approx(PIXEL_SIZE_M * 1e6, abs=1e-6)
    assert plate.timepoints == [1]
    assert (plate.rows, plate.columns) == (8, 12)
    assert (plate.image_shape, plate.dtype) == ((64, 64), "uint16")
    assert plate.warnings == []
    assert plate.metadata["harmony_version"] == version


@pytest.mark.parametrize("version", [5, 6, 7])
def test_timepoints_match_the_sk_number_of_the_file_names(tmp_path: Path, version: int) -> None:
    root = _export(tmp_path, version, timepoints=3, channels=CELL_PAINTING[:2])
    plate = HANDLER.parse(root)
    assert plate.timepoints == [1, 2, 3]
    for image in plate.images():
        assert re.search(r"sk(\d+)fk", image.source).group(1) == str(image.key.t)
    assert plate.warnings == []


def test_timepoint_without_sk_in_file_names_is_warned(tmp_path: Path) -> None:
    root = _export(tmp_path, 7, with_sk=False)
    plate = HANDLER.parse(root)
    assert plate.timepoints == [1]
    assert any("sk" in w and "TimepointID" in w and "Index.xml" in w for w in plate.warnings), plate.warnings


def test_timepoint_disagreeing_with_sk_is_warned(tmp_path: Path) -> None:
    root = _export(tmp_path, 7, channels=CELL_PAINTING[:2])
    index = root / "images" / "Index.xml"
    text = index.read_text(encoding="utf-8")
    index.write_text(text.replace("<TimepointID>1</TimepointID>", "<TimepointID>0</TimepointID>", 1), encoding="utf-8")
    plate = HANDLER.parse(root)
    assert any("TimepointID" in w and "sk" in w and str(index) in w for w in plate.warnings), plate.warnings


@pytest.mark.parametrize("layout", ["", "Images", "images"])
def test_plate_folder_as_exported(tmp_path: Path, layout: str) -> None:
    root = _export(tmp_path, 7, layout=layout, channels=CELL_PAINTING[:1])
    assert OperaPhenixHandler.detect(root)
    plate = HANDLER.parse(root)
    prefix = f"{layout}/" if layout else ""
    assert plate.images()[0].source == prefix + url(HarmonyExport(7, CELL_PAINTING[:1]), 1, 1, 1, 1, 1, 1)
    assert plate.metadata["index_file"] == f"{prefix}Index.xml"
    np.testing.assert_array_equal(
        HANDLER.read_plane(plate, plate.images()[0]), tifffile.imread(root / plate.images()[0].source)
    )


def test_plate_is_named_from_its_plate_id(tmp_path: Path) -> None:
    root = _export(tmp_path, 7, plate_id="BR00122249 / rep #1", channels=CELL_PAINTING[:1])
    plate = discover_plate(root)
    assert plate.name == "BR00122249_rep_1"
    assert plate.metadata["plate_id"] == "BR00122249 / rep #1"
    assert discover_plate(root, name="screen_a").name == "screen_a"  # the config's name stays the wildcard


def test_inspect_json_has_name_layout_pixel_size_and_plate_id(tmp_path: Path, capsys) -> None:
    root = _export(tmp_path, 6)
    assert main(["inspect", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["name"] == "240624_WES_Perturbs_n_densities_1.1"
    assert out["plate_id"] == "240624_WES_Perturbs_n_densities_1.1"
    assert out["layout"] == [8, 12]
    assert out["pixel_size_um"] == pytest.approx(0.2967, abs=1e-4)
    assert [c["name"] for c in out["channels"]] == NAMES
    assert out["timepoints"] == [1]


# -- malformed indexes: a warning or a FormatError naming the file and what was expected -------------------
def test_missing_channel_map_is_warned_not_guessed(tmp_path: Path) -> None:
    root = _export(tmp_path, 7, maps_channels=False, channels=CELL_PAINTING[:2])
    plate = HANDLER.parse(root)
    index = str(root / "images" / "Index.xml")
    assert [c.name for c in plate.channels] == ["ch1", "ch2"]
    assert plate.pixel_size_um is None
    assert any(index in w and "ChannelName" in w and 'Entry[@ChannelID="1"]' in w for w in plate.warnings)
    assert any(index in w and "ImageResolutionX" in w for w in plate.warnings)
    assert any(index in w and "ImageSizeX" in w for w in plate.warnings)


def test_non_numeric_resolution_is_warned(tmp_path: Path) -> None:
    channels = [HarmonyChannel("Alexa 488", resolution="n/a"), HarmonyChannel("Alexa 568", 561, 599, resolution="n/a")]
    root = _export(tmp_path, 6, channels=channels)
    plate = HANDLER.parse(root)
    assert plate.pixel_size_um is None
    assert any("ImageResolutionX" in w and "'n/a'" in w and "Index.xml" in w for w in plate.warnings), plate.warnings


def test_image_size_disagreeing_with_the_tiff_is_warned(tmp_path: Path) -> None:
    channels = [CELL_PAINTING[0], HarmonyChannel("Alexa 568", 561, 599, size=(128, 128))]
    root = _export(tmp_path, 7, channels=channels)
    plate = HANDLER.parse(root)
    assert plate.image_shape == (64, 64)
    assert any("128x128" in w and "64x64" in w and "ch2" in w for w in plate.warnings), plate.warnings


def test_channels_of_different_tiff_sizes_are_a_format_error(tmp_path: Path) -> None:
    root = _export(tmp_path, 7, channels=CELL_PAINTING[:2])
    odd = root / "images" / url(HarmonyExport(7, CELL_PAINTING[:2]), 1, 1, 1, 1, 2, 1)
    tifffile.imwrite(odd, np.zeros((32, 32), np.uint16), compression="lzw")
    with pytest.raises(FormatError, match=re.escape(odd.name)):
        HANDLER.parse(root)


def test_index_text_is_faithful_to_harmony_v7() -> None:
    """The generator's V7 layout: facts in the third Map, none in <Image>, TimepointID 1 for sk1."""
    text = index_xml(HarmonyExport(7, CELL_PAINTING[:1]))
    images = text.split("<Images>")[1]
    assert "<ChannelName>" not in images and "<TimepointID>1</TimepointID>" in images and "sk1fk1fl1" in images
    assert text.count("<Map>") == 3 and 'Version="2"' in text and "/HarmonyV7" in text


# -- repeated channel names ---------------------------------------------------------------------------------
def test_repeated_channel_names_are_made_unique_from_what_harmony_wrote(tmp_path: Path) -> None:
    channels = [
        HarmonyChannel("Alexa 488", 488, 522),
        HarmonyChannel("Alexa 488", 488, 706),
        HarmonyChannel("HOECHST 33342", 405, 456),
        HarmonyChannel("HOECHST_33342", 405, 456),
    ]
    plate = HANDLER.parse(_export(tmp_path, 7, channels=channels))
    assert [c.name for c in plate.channels] == [
        "Alexa 488 em522nm",
        "Alexa 488 em706nm",
        "HOECHST 33342 ch3",
        "HOECHST_33342 ch4",
    ]
    renamed = [w for w in plate.warnings if "renamed" in w]
    assert len(renamed) == 4, plate.warnings


def test_a_well_of_a_plate_with_repeated_names_processes(tmp_path: Path) -> None:
    channels = [HarmonyChannel("HOECHST 33342", 405, 456), HarmonyChannel("HOECHST 33342", 405, 456)]
    root = _export(tmp_path, 6, channels=channels, shape=(128, 128))
    out = tmp_path / "out"
    plate = discover("screen_plate", root, out / "plate.json")
    assert [c.name for c in plate.channels] == ["HOECHST 33342 ch1", "HOECHST 33342 ch2"]
    estimate_plate_illumination(plate, out / "illumination.npz", 8)
    summary = process_well(out / "plate.json", "A01", PIPELINE, out / "A01", out / "illumination.npz", gpu="numpy")
    assert summary["well"] == "A01" and summary["plate"] == "screen_plate"
    assert (out / "A01" / "summary.json").is_file()
