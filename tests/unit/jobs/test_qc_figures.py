"""QC pictures: the plate montage (thumbnails in plate layout, outlines, flagged wells) and the flat-field profiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from openhcs_rules.io.well_folder import WellFolder
from openhcs_rules.jobs.qc_figures import (
    FLAG_RGB,
    NO_IMAGE_RGB,
    NOT_IMAGED_RGB,
    OUTLINE_RGB,
    channel_position,
    flatfield_figure,
    montage_layout,
    outlines,
    plate_montage,
    profile_ratio,
)
from openhcs_rules.pipeline.executor import LabelKey, PlaneKey, WellResult
from openhcs_rules.plate.model import ChannelInfo, ImageKey, ImageStructure, PlateStructure, WellStructure

SIZE = 256
#: the one object of every written field: a square, at full resolution
TOP, SIDE = 100, 60


def _plate(rows: int = 8, columns: int = 12, wells: tuple[str, ...] = ("B02", "C03", "D04")) -> PlateStructure:
    structures = {w: WellStructure(w, [ImageStructure(ImageKey(w, s, c, 1, 1), "") for s in (1, 2) for c in (1, 2)])
                  for w in wells}  # fmt: skip
    return PlateStructure("qc", "imagexpress", "/x", rows, columns, [ChannelInfo(1, "DAPI"), ChannelInfo(2, "FITC")],
                          structures)  # fmt: skip


def _write_well(folder: WellFolder, brightness: int) -> None:
    """Two sites, two channels, uint16 (raw) with a bright square labelled 1 on a dim background."""
    image = np.full((SIZE, SIZE), 100, np.uint16)
    image[TOP : TOP + SIDE, TOP : TOP + SIDE] = brightness
    labels = np.zeros((SIZE, SIZE), np.int32)
    labels[TOP : TOP + SIDE, TOP : TOP + SIDE] = 1
    raw = {PlaneKey(s, c, 1, 1): image for s in (1, 2) for c in (1, 2)}
    result = WellResult({k: v.astype(np.float32) for k, v in raw.items()}, {LabelKey(s, 1, 1): labels for s in (1, 2)})
    result.raw = raw
    with folder.image_writer(pyramid_levels=2, images="raw") as writer:
        writer.submit(result)


def _png(path: Path) -> np.ndarray:
    return (imread(path)[..., :3] * 255 + 0.5).astype(np.uint8)


def _is(pixels: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return (pixels == np.asarray(colour, np.uint8)).all(axis=-1)


@pytest.mark.parametrize("layout", ["zarr", "disk"])
def test_montage_has_the_plate_layout_outlines_and_flagged_wells(tmp_path, layout):
    plate = _plate()
    folders = {w: WellFolder(tmp_path / "wells" / w, layout) for w in ("B02", "C03")}  # D04: no images
    for brightness, folder in zip((3000, 1500), folders.values(), strict=True):
        _write_well(folder, brightness)
    path = plate_montage(plate, folders, tmp_path / "montage.png", flagged=["C03"])
    pixels = _png(path)
    grid = montage_layout(plate)
    assert grid.thumbnail == 128 and pixels.shape[:2] == grid.size  # 8 x 12 thumbnails and the margins
    y, x = grid.origin("B02")
    tile = pixels[y : y + grid.thumbnail, x : x + grid.thumbnail]
    # 256 px read at the 128 px pyramid level (zarr) or block-averaged from the TIFF (disk): half size
    top, side = TOP // 2, SIDE // 2
    border = tile[top - 2 : top + side + 2, top - 2 : top + side + 2]
    assert _is(border, OUTLINE_RGB).sum() >= 4 * (side - 2)  # the square's outline, all round
    assert not _is(tile[: top - 3], OUTLINE_RGB).any()  # and nothing elsewhere
    inside = tile[top + side // 2, top + side // 2]
    assert inside[0] == inside[1] == inside[2] > 200  # the object, bright grey under its outline
    assert not _is(tile, FLAG_RGB).any()
    y, x = grid.origin("C03")
    flagged = pixels[y : y + grid.thumbnail, x : x + grid.thumbnail]
    assert _is(flagged[:3], FLAG_RGB).all() and _is(flagged[:, -3:], FLAG_RGB).all()  # a red frame
    y, x = grid.origin("D04")
    assert _is(pixels[y + 30 : y + 90, x + 30 : x + 90], NO_IMAGE_RGB).all()  # in the plate, nothing to read
    y, x = grid.origin("H12")
    assert _is(pixels[y + 30 : y + 90, x + 30 : x + 90], NOT_IMAGED_RGB).all()  # not a well of this screen


def test_the_montage_of_a_384_well_plate_stays_bounded(tmp_path):
    plate = _plate(16, 24, ("A01", "P24"))
    folder = WellFolder(tmp_path / "A01")
    _write_well(folder, 2000)
    grid = montage_layout(plate)
    assert 90 <= grid.thumbnail <= 100
    path = plate_montage(plate, {"A01": folder}, tmp_path / "m.png")
    assert _png(path).shape[:2] == grid.size and grid.size[1] <= 2500 and grid.size[0] <= 1700
    assert montage_layout(_plate(32, 48)).thumbnail == 48  # 1536 wells


def test_outlines_are_object_borders_only():
    labels = np.zeros((6, 6), np.int32)
    labels[1:5, 1:3], labels[1:5, 3:5] = 1, 2  # two touching objects
    edge = outlines(labels)
    assert edge[1, 1] and edge[2, 2] and edge[2, 3] and not edge[0, 0] and not edge[0, 2]
    assert not outlines(np.zeros((4, 4), np.int32)).any()


def test_the_channel_is_chosen_by_index_or_name():
    plate = _plate()
    assert channel_position(plate, None) == (0, "DAPI")
    assert channel_position(plate, "fitc") == (1, "FITC") == channel_position(plate, 2) == channel_position(plate, "2")
    with pytest.raises(ValueError, match="channels: 1 \\(DAPI\\)"):
        channel_position(plate, "Cy5")


def test_flatfield_figure_shows_each_channels_profile(tmp_path):
    yy, xx = np.mgrid[-1:1:128j, -1:1:160j]
    vignetting = (1.0 - 0.4 * (yy**2 + xx**2) / 2).astype(np.float32)
    vignetting /= vignetting.mean()
    np.savez(tmp_path / "illumination.npz", channel_1=vignetting, channel_2=np.ones((128, 160), np.float32))
    path = flatfield_figure(tmp_path / "illumination.npz", ["DAPI", "FITC"], tmp_path / "flatfield.png")
    pixels = _png(path)
    assert pixels.shape[1] > pixels.shape[0] > 200  # two panels side by side
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # a picture, not a blank page
    assert profile_ratio(vignetting) == pytest.approx(0.6, abs=0.01) and profile_ratio(np.ones((2, 2))) == 1.0
    single = flatfield_figure(tmp_path / "illumination.npz", {1: "DAPI", 2: "FITC"}, tmp_path / "again.png")
    assert single.is_file()
