"""Per-image quality measures on raw planes, the plate's Image table, and its QC flags with their reasons."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile

from openhcs_rules.demo.synthetic import synthesize_site
from openhcs_rules.jobs.image_quality import (
    BACKGROUND,
    COUNT,
    FLAG,
    FOCUS,
    REASON,
    SATURATION,
    QCThresholds,
    background_level,
    flag_images,
    flagged_wells,
    focus_score,
    image_rows,
    measure_images,
    saturation_fraction,
    saturation_level,
)
from openhcs_rules.plate.model import ChannelInfo, ImageKey, ImageStructure, PlateStructure, WellStructure
from openhcs_rules_testkit.paths import TEST_DATA

REAL = TEST_DATA / "nuclei" / "dsb2018_stardist_img2d_image.tif"


def test_a_blurred_copy_of_a_real_image_scores_lower_focus():
    image = tifffile.imread(REAL)
    blurred = ndi.gaussian_filter(image.astype(np.float32), 2.0)
    assert focus_score(blurred) < 0.5 * focus_score(image)
    assert focus_score(np.full((64, 64), 7, np.uint16)) == 0.0  # nothing to be sharp


def test_focus_falls_with_defocus_and_not_with_how_many_nuclei_there_are():
    """The demo plate's density falls sixfold along its columns; a z step of defocus must weigh more."""
    dense = synthesize_site("B02", channels=1, z_planes=3, seed=1).images[0]
    sparse = synthesize_site("B11", channels=1, z_planes=3, seed=1).images[0]
    sharp_dense, sharp_sparse = focus_score(dense[1]), focus_score(sparse[1])
    assert 0.7 < sharp_sparse / sharp_dense < 1.4
    assert focus_score(dense[0]) < 0.5 * sharp_dense and focus_score(sparse[2]) < 0.5 * sharp_sparse


def test_large_planes_are_scored_on_block_means_and_still_rank_blur():
    rng = np.random.default_rng(0)
    image = ndi.zoom(tifffile.imread(REAL).astype(np.float32), 2, order=1) + rng.normal(0, 2, (1024, 1024))
    assert focus_score(ndi.gaussian_filter(image, 4.0)) < 0.5 * focus_score(image)


@pytest.mark.parametrize("shape", [(2048, 2048), (1080, 1280), (1001, 777), (3, 2)])
def test_the_block_means_are_numpys_reshaped_float32_means_bit_for_bit(shape):
    """The focus score's 2x2 block means come from strided views; their values are the plain formulation's."""
    from openhcs_rules.jobs.image_quality import _block_mean_2

    plane = np.random.default_rng(1).random(shape).astype(np.float32) * 4000
    y, x = shape[0] // 2 * 2, shape[1] // 2 * 2
    plain = plane[:y, :x].reshape(y // 2, 2, x // 2, 2).mean(axis=(1, 3), dtype=np.float32)
    assert np.array_equal(_block_mean_2(plane), plain)


def test_a_12_bit_camera_in_a_16_bit_file_saturates_at_4095():
    rng = np.random.default_rng(1)
    raw = rng.normal(2000, 600, (100, 100))
    clipped = np.clip(raw, 0, 4095).astype(np.uint16)
    expected = np.mean(raw >= 4095)
    assert 0.0 < expected < 0.05
    level = saturation_level(float(clipped.max()), clipped.dtype)
    assert level == 4095.0
    assert saturation_fraction(clipped, level) == pytest.approx(expected)
    unsaturated = np.clip(raw * 0.5, 0, 4095).astype(np.uint16)  # max ~1700: no pixel at full scale
    assert saturation_fraction(unsaturated, saturation_level(float(unsaturated.max()), np.uint16)) == 0.0
    # other cameras: 14-bit, 16-bit, 8-bit, and floats (no full scale: the image's own maximum)
    assert saturation_level(9000, np.uint16) == 16383 and saturation_level(20000, np.uint16) == 65535
    assert saturation_level(200, np.uint8) == 255 and saturation_level(12.5, np.float32) == 12.5
    assert saturation_fraction(np.zeros((4, 4), np.float32), 0.0) == 0.0  # a flat plane is not clipped


def test_background_is_a_low_percentile_whatever_the_density():
    rng = np.random.default_rng(2)
    image = rng.normal(110, 3, (300, 300))
    image[:150] += 900  # a field half covered by cells: the median would be the cells' level
    assert background_level(image) == pytest.approx(110 - 1.645 * 3, abs=1.5)
    large = np.full((3000, 3000), 50.0)
    assert background_level(large) == 50.0  # subsampled, same answer


def test_a_stack_is_described_by_its_sharpest_plane_and_its_most_saturated_one():
    site = synthesize_site("C03", channels=2, z_planes=3, shape=(128, 128), seed=4)
    planes = {(1, c + 1, z + 1, 1): site.images[c, z] for c in range(2) for z in range(3)}
    planes[(1, 2, 3, 1)] = np.full((128, 128), 4095, np.uint16)
    planes[(1, 2, 3, 1)][0, 0] = 0  # a defocused plane that is clipped almost everywhere
    entries = measure_images(planes, {1: "DAPI", 2: "FITC"})
    assert [(e["site"], e["channel"], e["t"], e["channel_name"]) for e in entries] == [
        (1, 1, 1, "DAPI"),
        (1, 2, 1, "FITC"),
    ]
    dapi, fitc = entries
    assert dapi["z"] == 2 and dapi["SaturationFraction"] == 0.0 and dapi["SaturationLevel"] == 4095.0
    assert fitc["SaturationFraction"] > 0.99 and fitc["MaxIntensity"] == 4095.0
    assert dapi["Background"] == pytest.approx(background_level(site.images[0, 1]))
    assert all(isinstance(v, int | float | str) for entry in entries for v in entry.values())  # JSON-ready


# -- the plate: Image table and flags ---------------------------------------------------------------------------
WELLS = ["B02", "B03", "B04", "C02", "C03", "C04"]
SITES = [1, 2]


def _plate(wells=WELLS, sites=SITES, timepoints=(1,)) -> PlateStructure:
    structures = {
        w: WellStructure(w, [ImageStructure(ImageKey(w, s, 1, 1, t), "") for s in sites for t in timepoints])
        for w in wells
    }
    return PlateStructure("qc", "imagexpress", "/x", 8, 12, [ChannelInfo(1, "DAPI")], structures)


def _summary(entries_by_site: dict[int, tuple[np.ndarray, int]], with_images: bool = True) -> dict:
    """A well's summary.json as the well job writes it (only the keys the Image table reads)."""
    counts = {str(s): n for s, (_, n) in entries_by_site.items()}
    summary: dict = {"timepoints": [{"t": 1, "objects_per_site": counts}], "objects_per_site": counts}
    if with_images:
        planes = {(s, 1, 1, 1): image for s, (image, _) in entries_by_site.items()}
        summary["images"] = measure_images(planes, {1: "DAPI"})
    return summary


def _good(well: str, site: int) -> tuple[np.ndarray, int]:
    data = synthesize_site(well, site, channels=1, z_planes=1, shape=(192, 192), seed=7)
    return data.images[0, 0], data.count


@pytest.fixture(scope="module")
def good_sites():
    return {(w, s): _good(w, s) for w in WELLS for s in SITES}


def _rows(sites: dict, plate: PlateStructure | None = None) -> list[dict]:
    summaries = {w: _summary({s: sites[(w, s)] for s in SITES}) for w in WELLS}
    return image_rows(plate or _plate(), summaries)


def test_image_rows_are_cellprofilers_image_table(good_sites):
    rows = _rows(good_sites)
    assert len(rows) == len(WELLS) * len(SITES)
    first = rows[0]
    assert list(first)[:5] == ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Timepoint", COUNT]
    assert {FOCUS + "DAPI", SATURATION + "DAPI", BACKGROUND + "DAPI"} <= set(first)
    assert (first["Metadata_Plate"], first["Metadata_Well"], first["Metadata_Site"]) == ("qc", "B02", 1)
    assert first[COUNT] == good_sites[("B02", 1)][1]


def test_a_plate_of_good_images_has_no_flag(good_sites):
    flagged = flag_images(_rows(good_sites))
    assert [row[REASON] for row in flagged if row[FLAG]] == []
    assert all(row[FLAG] is False and row[REASON] == "" for row in flagged)


def test_a_plate_of_identical_images_has_no_flag(good_sites):
    """No spread at all (MAD 0): the fraction-of-median condition keeps everything unflagged."""
    same = {key: good_sites[("B02", 1)] for key in good_sites}
    assert not any(row[FLAG] for row in flag_images(_rows(same)))


def test_one_blurred_one_saturated_one_empty_image_are_flagged_with_their_reasons(good_sites):
    sites = dict(good_sites)
    image, count = sites[("B03", 2)]
    sites[("B03", 2)] = (ndi.gaussian_filter(image.astype(np.float32), 3.0).astype(np.uint16), count)
    image, count = sites[("C02", 1)]
    sites[("C02", 1)] = (np.clip(image.astype(np.float32) * 4, 0, 4095).astype(np.uint16), count)  # 12-bit camera
    image, _ = sites[("C04", 2)]
    background = np.full_like(image, int(np.percentile(image, 5))) + np.random.default_rng(3).integers(
        0, 9, image.shape
    )
    sites[("C04", 2)] = (background.astype(np.uint16), 0)
    flagged = {(row["Metadata_Well"], row["Metadata_Site"]): row for row in flag_images(_rows(sites))}
    reasons = {key: row[REASON] for key, row in flagged.items() if row[FLAG]}
    assert set(reasons) == {("B03", 2), ("C02", 1), ("C04", 2)}, reasons
    assert reasons[("B03", 2)].startswith("out of focus: DAPI (focus score ")
    assert reasons[("C02", 1)].startswith("saturated: DAPI (") and "full scale" in reasons[("C02", 1)]
    assert reasons[("C04", 2)].startswith("empty field: no nuclei")
    assert "out of focus" not in reasons[("C04", 2)]  # noise is sharp: an empty field is empty, not blurred
    assert flagged_wells(flagged.values()) == {
        "B03": [f"s2 t1: {reasons[('B03', 2)]}"],
        "C02": [f"s1 t1: {reasons[('C02', 1)]}"],
        "C04": [f"s2 t1: {reasons[('C04', 2)]}"],
    }


def test_a_bright_background_is_flagged(good_sites):
    sites = dict(good_sites)
    image, count = sites[("B04", 1)]
    sites[("B04", 1)] = (image + np.uint16(300), count)
    flagged = [row for row in flag_images(_rows(sites)) if row[FLAG]]
    assert [(row["Metadata_Well"], row["Metadata_Site"]) for row in flagged] == [("B04", 1)]
    assert flagged[0][REASON].startswith("bright background: DAPI (background ")


def test_wells_of_earlier_versions_give_rows_with_the_count_only_and_can_still_be_flagged_empty(good_sites):
    plate = _plate()
    summaries = {w: _summary({s: good_sites[(w, s)] for s in SITES}, with_images=False) for w in WELLS}
    summaries["C04"]["timepoints"][0]["objects_per_site"]["2"] = 0
    rows = image_rows(plate, summaries)
    assert set(rows[0]) == {"Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Timepoint", COUNT}
    flagged = [row for row in flag_images(rows) if row[FLAG]]
    assert [(row["Metadata_Well"], row["Metadata_Site"]) for row in flagged] == [("C04", 2)]
    # mixed: measured wells and older ones in one table, same columns, None where not measured
    summaries["B02"] = _summary({s: good_sites[("B02", s)] for s in SITES})
    mixed = image_rows(plate, summaries)
    assert all(set(row) == set(mixed[0]) for row in mixed) and FOCUS + "DAPI" in mixed[0]
    assert mixed[-1][FOCUS + "DAPI"] is None
    flag_images(mixed)  # no crash on None
    oldest = {"B02": {"objects_per_site": {"1": 3, "2": 4}}}  # before per-timepoint figures
    assert [row[COUNT] for row in image_rows(_plate(["B02"]), oldest)] == [3, 4]


def test_time_lapse_rows_are_per_site_and_timepoint():
    plate = _plate(["B02"], [1, 2], (1, 2))
    summary = {
        "timepoints": [{"t": 1, "objects_per_site": {"1": 5, "2": 6}}, {"t": 2, "objects_per_site": {"1": 7, "2": 8}}]
    }
    rows = image_rows(plate, {"B02": summary})
    assert [(r["Metadata_Site"], r["Metadata_Timepoint"], r[COUNT]) for r in rows] == [
        (1, 1, 5),
        (2, 1, 6),
        (1, 2, 7),
        (2, 2, 8),
    ]


def test_too_few_images_give_no_distribution_to_flag_against():
    rows = [
        {"Metadata_Well": "B02", "Metadata_Site": s, "Metadata_Timepoint": 1, COUNT: n, FOCUS + "DAPI": f}
        for s, (n, f) in enumerate([(40, 0.01), (0, 0.0001), (38, 0.011)], start=1)
    ]
    assert not any(row[FLAG] for row in flag_images(rows))
    assert any(row[FLAG] for row in flag_images(rows, QCThresholds(min_images=3)))
