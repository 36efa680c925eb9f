"""ImageXpress discovery and reading on real MetaXpress exports and a real direct transfer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from openhcs_rules.errors import FormatError, ImageReadError
from openhcs_rules.formats import imagexpress
from openhcs_rules.formats.base import read_tiff_plane
from openhcs_rules.formats.imagexpress import (
    HTDFile,
    ImageXpressHandler,
    find_image_root,
    parse_imagexpress_filename,
)
from openhcs_rules.plate.model import PlateStructure

HANDLER = ImageXpressHandler()
DIRECT = "imagexpress_direct_singlechannel"
ACQUISITION = "2023-02-21/1334"


def exported(fixtures_dir: Path, plate: str) -> Path:
    return fixtures_dir / "imagexpress_exported" / plate


def channels(plate: PlateStructure) -> list[tuple[int, str]]:
    return [(c.index, c.name) for c in plate.channels]


def assert_planes_match_tifffile(plate: PlateStructure) -> None:
    """Every plane reads back identical to tifffile's own reading of the file."""
    for image in plate.images():
        plane = HANDLER.read_plane(plate, image)
        direct = tifffile.imread(Path(plate.root) / image.source)
        assert plane.shape == plate.image_shape
        assert plane.dtype == np.dtype(plate.dtype)
        np.testing.assert_array_equal(plane, direct)


# -- file names ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "well", "site", "channel", "thumb"),
    [
        ("9987_B02.TIF", "B02", 1, 1, False),
        ("9987_B02_s2_w3.TIF", "B02", 2, 3, False),
        ("9987_B02_w2.tif", "B02", 1, 2, False),
        ("My_Plate_1_AF48_s9_w4.tiff", "AF48", 9, 4, False),
        ("Projection-Mix_E07_s1E94C24BD-45E4-450A-9919-257C714278F7.tif", "E07", 1, 1, False),
        ("Projection-Mix_E08_s117654C10-92F1-4DFD-98AA-6A01BBD77557.tif", "E08", 1, 1, False),
        ("Projection-Mix_E08_s2084F795E-D6CB-4229-8A96-B5540E18EC20.tif", "E08", 2, 1, False),
        ("MIP-2P-2sub_C05_s1_w146C9B2CD-0BB3-4B8A-9187-2805F4C90506.tif", "C05", 1, 1, False),
        ("MIP-2P-2sub_C05_s2_w2B90625C8-6EA7-4E54-8289-C539EB75263E.tif", "C05", 2, 2, False),
        ("Projection-Mix_E07_s1_thumb4BFD4018-E675-475E-B5AB-2E959E6B6DA1.tif", "E07", 1, 1, True),
        ("MIP_C05_s1_w1_thumb6EFE77C6-B96D-412A-9FD1-710DBDA32821.tif", "C05", 1, 1, True),
    ],
)
def test_filename_variants(name: str, well: str, site: int, channel: int, thumb: bool) -> None:
    parsed = parse_imagexpress_filename(name)
    assert parsed is not None
    assert (parsed.well, parsed.site, parsed.channel, parsed.thumbnail) == (well, site, channel, thumb)


@pytest.mark.parametrize("name", ["r01c01f01p01-ch1sk1fk1fl1.tiff", "9987_B02_s1_w1.png", "notes.txt", "B2_s1.tif"])
def test_non_imagexpress_names_are_rejected(name: str) -> None:
    assert parse_imagexpress_filename(name) is None


# -- the HTD file ---------------------------------------------------------------------------------------------
def test_htd_of_3434(fixtures_dir: Path) -> None:
    htd = HTDFile.read(exported(fixtures_dir, "9987_Plate_3434") / "9987.HTD")
    assert htd.layout == (8, 12)
    assert htd.wave_names == {1: "DAPI", 2: "FITC", 3: "Texas Red", 4: "Cy5"}
    assert htd.wavelengths == [1, 2, 3, 4]
    assert htd.selected_wells() == ["B02", "B03"]
    assert htd.site_count() == 2
    assert (htd.timepoints, htd.z_steps) == (1, 3)
    assert htd.ignored_lines == []


def _write_htd_plate(fixtures_dir: Path, tmp_path: Path, edit) -> Path:
    """A one-image plate in tmp_path: the real 3420 TIFF plus an HTD changed by ``edit``."""
    source = exported(fixtures_dir, "9987_Plate_3420")
    (tmp_path / "TimePoint_1").mkdir()
    shutil.copy(source / "TimePoint_1" / "9987_B02.TIF", tmp_path / "TimePoint_1" / "9987_B02.TIF")
    text = (source / "9987.HTD").read_bytes().decode("latin-1")
    (tmp_path / "9987.HTD").write_bytes(edit(text).encode("latin-1"))
    return tmp_path


def test_htd_unparsable_lines_are_ignored_with_a_warning(fixtures_dir: Path, tmp_path: Path) -> None:
    """Decision: lines that are not '"Key", value' are skipped and reported, the plate still parses."""
    root = _write_htd_plate(
        fixtures_dir, tmp_path, lambda t: t.replace('"Sites", FALSE', 'garbage without quotes\r\n"Sites", FALSE')
    )
    plate = HANDLER.parse(root)
    assert plate.well_names == ["B02"]
    assert any("9987.HTD" in w and "ignored" in w for w in plate.warnings)


def test_htd_malformed_value_of_a_used_key_is_an_error(fixtures_dir: Path, tmp_path: Path) -> None:
    root = _write_htd_plate(fixtures_dir, tmp_path, lambda t: t.replace('"XWells", 12', '"XWells", twelve'))
    with pytest.raises(FormatError, match=r"9987\.HTD.*XWells.*integer"):
        HANDLER.parse(root)


def test_htd_selected_well_without_files_is_warned(fixtures_dir: Path, tmp_path: Path) -> None:
    selection = '"WellsSelection2", FALSE, TRUE, TRUE,'
    root = _write_htd_plate(fixtures_dir, tmp_path, lambda t: t.replace('"WellsSelection2", FALSE, TRUE,', selection))
    plate = HANDLER.parse(root)
    assert "HTD selects wells with no files: B03" in plate.warnings


# -- the real plates --------------------------------------------------------------------------------------
def test_plate_3420_single_image(fixtures_dir: Path) -> None:
    root = exported(fixtures_dir, "9987_Plate_3420")
    plate = HANDLER.parse(root)
    assert plate.name == "9987_Plate_3420"
    assert plate.root == str(root.absolute())
    assert (plate.well_names, plate.sites, plate.z_planes, plate.timepoints) == (["B02"], [1], [1], [1])
    assert channels(plate) == [(1, "DAPI")]
    assert plate.channels[0].wavelength_nm == 452.0
    assert (plate.rows, plate.columns) == (8, 12)
    assert (plate.image_shape, plate.dtype, plate.pixel_size_um) == ((256, 256), "uint16", 1.3672)
    assert plate.warnings == []
    (image,) = plate.images()
    assert image.source == "TimePoint_1/9987_B02.TIF"
    assert image.stage_position_um == (22985.0, 19885.0)
    plane = HANDLER.read_plane(plate, image)
    assert plane[100, 100] == tifffile.imread(root / image.source)[100, 100]
    assert_planes_match_tifffile(plate)


def test_plate_3434_zstacks_projections_and_missing_wavelength(fixtures_dir: Path) -> None:
    """ZStep_0 holds the MetaXpress projections (its DAPI files carry 'Z Projection Method: Maximum' while
    ZStep_1/2 carry 'Z Step' 1/2): it is skipped and the stack is ZStep_1, ZStep_2 -> z 1, 2."""
    root = exported(fixtures_dir, "9987_Plate_3434")
    plate = HANDLER.parse(root)
    assert plate.well_names == ["B02", "B03"]
    assert plate.sites == [1, 2]
    assert channels(plate) == [(1, "DAPI"), (2, "FITC"), (3, "Texas Red")]
    assert plate.z_planes == [1, 2]
    assert plate.timepoints == [1]
    assert plate.z_step_um == 3.0
    assert "HTD declares wavelength 4 (Cy5) but no files were found for it" in plate.warnings
    assert "HTD declares 3 z-steps but 2 were found in the folders" in plate.warnings
    assert plate.metadata["projections_skipped"]["count"] == 12
    assert plate.metadata["projections_skipped"]["folders"] == ["TimePoint_1/ZStep_0"]
    assert plate.metadata["projection_channels"] == {"2": "Maximum"}
    assert not any("ZStep_0" in image.source for image in plate.images())
    for well in plate.wells.values():
        assert len(well.images) == 2 * 3 * 2  # sites x channels x z
    by_key = {(i.key.well, i.key.site, i.key.channel, i.key.z): i for i in plate.images()}
    assert by_key[("B03", 2, 1, 2)].source == "TimePoint_1/ZStep_2/9987_B03_s2_w1.TIF"
    assert by_key[("B02", 1, 3, 1)].source == "TimePoint_1/ZStep_1/9987_B02_s1_w3.TIF"
    assert by_key[("B02", 2, 1, 1)].stage_position_um == (23300.0, 19885.0)
    assert plate.missing_sites() == {}
    assert_planes_match_tifffile(plate)


def test_plate_3435_timepoints(fixtures_dir: Path) -> None:
    root = exported(fixtures_dir, "9987_Plate_3435")
    plate = HANDLER.parse(root)
    assert plate.well_names == ["B02", "B03"]
    assert plate.sites == [1, 2]
    assert channels(plate) == [(1, "DAPI"), (2, "FITC")]
    assert plate.z_planes == [1]
    assert plate.timepoints == [1, 2]
    assert len(plate.images()) == 2 * 2 * 2 * 2
    t2 = [i for i in plate.images() if i.key.t == 2]
    assert all(i.source.startswith("TimePoint_2/") for i in t2)
    assert "HTD declares wavelength 3 (Texas Red) but no files were found for it" in plate.warnings
    assert "HTD declares wavelength 4 (Cy5) but no files were found for it" in plate.warnings
    assert "HTD declares 6 timepoints but 2 were found in the folders" in plate.warnings
    last = plate.images()[-1]
    assert last.key.well == "B03" and last.key.t == 2
    np.testing.assert_array_equal(HANDLER.read_plane(plate, last), tifffile.imread(root / last.source))


@pytest.mark.parametrize("below", ["", "2023-02-21", ACQUISITION])
def test_direct_transfer(fixtures_dir: Path, below: str) -> None:
    """The plate parses the same from the top folder, the date folder or the acquisition folder."""
    root = fixtures_dir / DIRECT / below if below else fixtures_dir / DIRECT
    assert ImageXpressHandler.detect(root)
    assert find_image_root(root) == fixtures_dir / DIRECT / ACQUISITION
    plate = HANDLER.parse(root)
    assert plate.name == root.name
    assert plate.well_names == ["E07", "E08"]
    assert plate.sites == [1, 2]
    assert channels(plate) == [(1, "FITC_05")]
    assert plate.z_planes == [1, 2]
    assert plate.timepoints == [1]
    assert (plate.image_shape, plate.dtype, plate.pixel_size_um) == ((512, 512), "uint16", 1.3668)
    assert (plate.rows, plate.columns) == (6, 8)  # smallest standard plate holding E07/E08
    assert plate.z_step_um == pytest.approx(4.94)
    assert all("_thumb" not in image.source for image in plate.images())
    assert plate.metadata["thumbnails_ignored"] == 12
    assert plate.metadata["projections_skipped"]["count"] == 4
    assert any("4 projection file(s) skipped" in w for w in plate.warnings)
    prefix = f"{ACQUISITION}/"[len(below) + 1 :] if below else f"{ACQUISITION}/"
    by_key = {(i.key.well, i.key.site, i.key.z): i.source for i in plate.images()}
    assert by_key[("E07", 1, 1)] == f"{prefix}ZStep_1/Projection-Mix_E07_s1E78EB128-BD0D-4D94-A6AD-3FF28BB1B105.tif"
    assert by_key[("E08", 1, 2)] == f"{prefix}ZStep_2/Projection-Mix_E08_s14864BA30-C5B9-45C7-B9F2-44179190F8AC.tif"
    assert_planes_match_tifffile(plate)


def test_plate_json_round_trip_reads_the_same(fixtures_dir: Path) -> None:
    """A worker only has plate.json: reading from the reloaded structure must give the same pixels."""
    plate = HANDLER.parse(exported(fixtures_dir, "9987_Plate_3434"))
    reloaded = PlateStructure.from_dict(json.loads(json.dumps(plate.to_dict())))
    assert reloaded.summary() == plate.summary()
    image = reloaded.images()[5]
    np.testing.assert_array_equal(HANDLER.read_plane(reloaded, image), HANDLER.read_plane(plate, image))


def test_stage_positions_of_first_well_only_on_big_plates(fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond STAGE_POSITION_SITE_LIMIT (well, site) pairs only the first well's files are opened."""
    monkeypatch.setattr(imagexpress, "STAGE_POSITION_SITE_LIMIT", 2)
    plate = HANDLER.parse(exported(fixtures_dir, "9987_Plate_3434"))
    assert plate.metadata["stage_positions"].startswith("first well only (B02)")
    assert {i.stage_position_um for i in plate.wells["B02"].images} == {(22985.0, 19885.0), (23300.0, 19885.0)}
    assert {i.stage_position_um for i in plate.wells["B03"].images} == {None}


# -- folder variants built in tmp_path from real TIFFs ----------------------------------------------------
def _direct_tiffs(fixtures_dir: Path) -> list[Path]:
    return sorted((fixtures_dir / DIRECT / ACQUISITION / "ZStep_1").glob("*_s[12][0-9A-F]*.tif"))


def test_zstep_numbering_from_zero_without_projection_tags(fixtures_dir: Path, tmp_path: Path) -> None:
    """Plain planes in ZStep_0 and ZStep_1 (no projection tag) map to z 1 and 2 in sorted order."""
    tiff = _direct_tiffs(fixtures_dir)[0]
    for number in (0, 1):
        (tmp_path / f"ZStep_{number}").mkdir()
        shutil.copy(tiff, tmp_path / f"ZStep_{number}" / "Scan_A01_s1_w1.tif")
    plate = HANDLER.parse(tmp_path)
    assert plate.z_planes == [1, 2]
    assert [i.source for i in plate.images()] == ["ZStep_0/Scan_A01_s1_w1.tif", "ZStep_1/Scan_A01_s1_w1.tif"]
    assert "projections_skipped" not in plate.metadata


def test_projection_only_channel_is_kept_as_z1(fixtures_dir: Path, tmp_path: Path) -> None:
    tiff = _direct_tiffs(fixtures_dir)[0]
    for number in (1, 2):
        (tmp_path / f"ZStep_{number}").mkdir()
        shutil.copy(tiff, tmp_path / f"ZStep_{number}" / "Scan_A01_s1_w1.tif")
    shutil.copy(tiff, tmp_path / "Scan_A01_s1_w1.tif")  # projection of w1: skipped
    shutil.copy(tiff, tmp_path / "Scan_A01_s1_w2.tif")  # w2 exists only as a projection: kept
    plate = HANDLER.parse(tmp_path)
    assert plate.channel_indices == [1, 2]
    w2 = [i for i in plate.images() if i.key.channel == 2]
    assert [(i.key.z, i.source) for i in w2] == [(1, "Scan_A01_s1_w2.tif")]
    assert plate.metadata["projections_skipped"]["examples"] == ["Scan_A01_s1_w1.tif"]
    assert any("channel w2 has no files in any ZStep folder" in w for w in plate.warnings)


def test_two_plates_in_one_folder_is_an_error(fixtures_dir: Path, tmp_path: Path) -> None:
    tiff = _direct_tiffs(fixtures_dir)[0]
    shutil.copy(tiff, tmp_path / "PlateA_A01_s1_w1.tif")
    shutil.copy(tiff, tmp_path / "PlateB_A01_s1_w1.tif")
    with pytest.raises(FormatError, match=r"two files claim well A01.*PlateA_A01.*PlateB_A01"):
        HANDLER.parse(tmp_path)


def test_two_acquisitions_are_not_guessed(fixtures_dir: Path, tmp_path: Path) -> None:
    tiff = _direct_tiffs(fixtures_dir)[0]
    for acquisition in ("1334", "1335"):
        (tmp_path / "2023-02-21" / acquisition).mkdir(parents=True)
        shutil.copy(tiff, tmp_path / "2023-02-21" / acquisition / "Scan_A01_s1_w1.tif")
    assert not ImageXpressHandler.detect(tmp_path)
    assert ImageXpressHandler.detect(tmp_path / "2023-02-21" / "1335")
    with pytest.raises(FormatError, match=str(tmp_path)):
        HANDLER.parse(tmp_path)


def test_unrecognised_tiffs_are_reported(fixtures_dir: Path, tmp_path: Path) -> None:
    tiff = _direct_tiffs(fixtures_dir)[0]
    shutil.copy(tiff, tmp_path / "Scan_A01_s1_w1.tif")
    shutil.copy(tiff, tmp_path / "overview.tif")
    plate = HANDLER.parse(tmp_path)
    assert plate.metadata["unrecognised_files"] == ["overview.tif"]
    assert any("overview.tif" in w for w in plate.warnings)


# -- broken files ------------------------------------------------------------------------------------------
def _truncated_copy(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def test_truncated_tiff_read_names_the_file(fixtures_dir: Path, tmp_path: Path) -> None:
    source = exported(fixtures_dir, "9987_Plate_3420") / "TimePoint_1" / "9987_B02.TIF"
    broken = _truncated_copy(source, tmp_path / "9987_B02.TIF")
    with pytest.raises(ImageReadError, match=r"9987_B02\.TIF.*(truncated|corrupt)"):
        read_tiff_plane(broken)


def test_truncated_deflate_tiff_read_names_the_file(fixtures_dir: Path, tmp_path: Path) -> None:
    broken = _truncated_copy(_direct_tiffs(fixtures_dir)[0], tmp_path / "cut.tif")
    with pytest.raises(ImageReadError, match=r"cut\.tif.*(truncated|corrupt)"):
        read_tiff_plane(broken)


def _writable_copy(source: Path, target: Path) -> Path:
    """copytree keeps the fixtures' read-only modes (even on folders); make the copy writable."""
    shutil.copytree(source, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def test_truncated_file_in_a_plate_fails_discovery_naming_it(fixtures_dir: Path, tmp_path: Path) -> None:
    root = _writable_copy(exported(fixtures_dir, "9987_Plate_3420"), tmp_path / "plate")
    target = root / "TimePoint_1" / "9987_B02.TIF"
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"9987_B02\.TIF"):
        HANDLER.parse(root)


def test_file_removed_after_discovery(fixtures_dir: Path, tmp_path: Path) -> None:
    root = _writable_copy(exported(fixtures_dir, "9987_Plate_3420"), tmp_path / "plate")
    plate = HANDLER.parse(root)
    (root / "TimePoint_1" / "9987_B02.TIF").unlink()
    with pytest.raises(ImageReadError, match=r"9987_B02\.TIF does not exist"):
        HANDLER.read_plane(plate, plate.images()[0])


def test_shape_mismatch_names_the_file(fixtures_dir: Path) -> None:
    path = exported(fixtures_dir, "9987_Plate_3420") / "TimePoint_1" / "9987_B02.TIF"
    with pytest.raises(ImageReadError, match=r"9987_B02\.TIF is 256x256 pixels but the plate's images are 512x512"):
        read_tiff_plane(path, expected_shape=(512, 512))


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    assert not ImageXpressHandler.detect(tmp_path)
    with pytest.raises(FormatError, match=str(tmp_path)):
        HANDLER.parse(tmp_path)


# -- channels that share one illumination-setting name (a MetaXpress direct transfer) --------------------
def test_repeated_illumination_names_become_unique_at_discovery(tmp_path: Path) -> None:
    """Four channels all called FITC_05, the fourth projection-only: named apart from what MetaXpress wrote
    (its 'Z Projection Method' tag, else the wavelength index), each with a warning."""
    from openhcs_rules_testkit.instruments.metaxpress import write_direct_transfer

    plate = HANDLER.parse(write_direct_transfer(tmp_path / "plate"))
    assert channels(plate) == [
        (1, "FITC_05 w1"),
        (2, "FITC_05 w2"),
        (3, "FITC_05 w3"),
        (4, "FITC_05 Maximum projection"),
    ]
    renamed = [w for w in plate.warnings if "renamed" in w]
    assert len(renamed) == 4 and all("'FITC_05'" in w for w in renamed)
    assert "Z Projection Method" in renamed[3] or "Maximum" in renamed[3]


def test_a_well_of_a_plate_with_repeated_illumination_names_processes(tmp_path: Path) -> None:
    from openhcs_rules.jobs.discover import discover
    from openhcs_rules.jobs.illumination import estimate_plate_illumination
    from openhcs_rules.jobs.process_well import process_well
    from openhcs_rules_testkit.instruments.metaxpress import write_direct_transfer
    from openhcs_rules_testkit.workflow import PIPELINE

    out = tmp_path / "out"
    plate = discover("direct", write_direct_transfer(tmp_path / "plate"), out / "plate.json")
    estimate_plate_illumination(plate, out / "illumination.npz", 8)
    summary = process_well(out / "plate.json", "E07", PIPELINE, out / "E07", out / "illumination.npz", gpu="numpy")
    assert summary["n_objects"] > 0
    assert {"mean_intensity_FITC_05_w1", "mean_intensity_FITC_05_Maximum_projection"} <= set(summary)
