"""``output.images``: raw (the instrument's planes, default), processed (the pipeline's output) or both.

The chain the rules run, without Snakemake: a synthetic ImageXpress plate (uint16, a z-stack, two channels),
its well jobs (``run_well``) and the plate's image assembly (``backend.assemble_images``), for each value.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from openhcs_rules.demo.synthetic import generate_imagexpress_plate
from openhcs_rules.formats.registry import read_plane
from openhcs_rules.io.registry import backend_for
from openhcs_rules.io.well_folder import PROCESSED, WellFolder, stack_fields
from openhcs_rules.jobs.discover import discover
from openhcs_rules.jobs.illumination import estimate_plate_illumination
from openhcs_rules.jobs.options import WellJobOptions
from openhcs_rules.jobs.process_well import WellJobInputs, run_well
from openhcs_rules.pipeline.executor import LabelKey, PlaneKey, WellResult
from openhcs_rules.plate.model import PlateStructure
from openhcs_rules_testkit.ngff import assert_valid_ngff_plate
from openhcs_rules_testkit.paths import PIPELINE

WELLS = ["B02", "C03"]
SITES, CHANNELS, Z_PLANES, SIZE = 2, 2, 3, 96


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("raw")
    folder = tmp / "plate"
    generate_imagexpress_plate(
        folder, "p", wells=WELLS, sites=SITES, channels=CHANNELS, z_planes=Z_PLANES, shape=(SIZE, SIZE), seed=2
    )
    plate_json = tmp / "plate.json"
    structure = discover("p", folder, plate_json)
    estimate_plate_illumination(structure, tmp / "illumination.npz", 8, min_images=2)
    return plate_json, tmp


def _run(plate, out: Path, images: str, backend: str = "zarr") -> tuple[PlateStructure, dict[str, WellFolder]]:
    """Every well through run_well, then the plate's images assembled under ``out``."""
    plate_json, files = plate
    options = WellJobOptions(illumination=str(files / "illumination.npz"), gpu="numpy", backend=backend, images=images)
    inputs = WellJobInputs.load(plate_json, PIPELINE, options)
    try:
        for well in WELLS:
            run_well(inputs, well, out / "wells" / well)
    finally:
        inputs.close()
    storage = backend_for(inputs.plate, backend)
    folders = {w: storage.well_folder(out / "wells" / w) for w in WELLS}
    storage.assemble_images(inputs.plate, folders, out)
    return inputs.plate, folders


@pytest.fixture(scope="module")
def runs(plate, tmp_path_factory):
    """The results folder of one run per value of output.images (zarr layout), and the plate's structure."""
    outs = {images: tmp_path_factory.mktemp(images) for images in ("raw", "processed", "both")}
    structures = {images: _run(plate, out, images)[0] for images, out in outs.items()}
    return outs, structures["raw"]


def _array(path: Path) -> np.ndarray:
    return np.asarray(zarr.open_array(str(path), mode="r")[:])


def test_raw_is_the_default():
    assert WellJobOptions().images == "raw"


def test_raw_plate_holds_the_planes_read_from_the_instrument_plate_with_labels(runs):
    outs, structure = runs
    path = outs["raw"] / "plate.ome.zarr"
    assert assert_valid_ngff_plate(path) == {"wells": 2, "images": 4, "labels": 4}  # strict NGFF 0.5
    for image in structure.images():
        k = image.key
        row, column = k.well[0], str(int(k.well[1:]))
        stored = zarr.open_array(str(path / row / column / str(k.site - 1) / "0"), mode="r")
        assert stored.dtype == np.uint16 and stored.shape == (1, CHANNELS, Z_PLANES, SIZE, SIZE)
        np.testing.assert_array_equal(stored[k.t - 1, k.channel - 1, k.z - 1], read_plane(structure, image))
    field = path / "B" / "2" / "0"
    assert _array(field / "1").dtype == np.uint16  # every pyramid level stays uint16
    labels = _array(field / "labels" / "nuclei" / "0")
    assert labels.shape == (1, 1, Z_PLANES, SIZE, SIZE) and labels.max() > 0  # the image's shape, c of 1
    assert all((labels[:, :, z] == labels[:, :, 0]).all() for z in range(Z_PLANES))  # one 2D segmentation


def test_processed_is_unchanged_float32_best_focus_planes(runs):
    out = runs[0]["processed"]
    path = out / "plate.ome.zarr"
    assert assert_valid_ngff_plate(path) == {"wells": 2, "images": 4, "labels": 4}
    image = _array(path / "C" / "3" / "1" / "0")
    assert image.dtype == np.float32 and image.shape == (1, CHANNELS, 1, SIZE, SIZE)  # z projected away
    assert _array(path / "C" / "3" / "1" / "labels" / "nuclei" / "0").shape == (1, 1, 1, SIZE, SIZE)
    assert not (out / "processed.ome.zarr").exists()


def test_both_keeps_raw_in_the_plate_and_processed_in_a_sibling_plate(runs):
    out, raw_out, processed_out = (runs[0][images] for images in ("both", "raw", "processed"))
    assert assert_valid_ngff_plate(out / "plate.ome.zarr") == {"wells": 2, "images": 4, "labels": 4}
    assert assert_valid_ngff_plate(out / "processed.ome.zarr") == {"wells": 2, "images": 4, "labels": 4}
    for level in ("0", "labels/nuclei/0"):
        field = "B/2/1/" + level
        np.testing.assert_array_equal(
            _array(out / "plate.ome.zarr" / field), _array(raw_out / "plate.ome.zarr" / field)
        )
        np.testing.assert_array_equal(
            _array(out / "processed.ome.zarr" / field), _array(processed_out / "plate.ome.zarr" / field)
        )
    assert (out / "wells" / "B02" / "images.zarr" / PROCESSED / "0").is_dir()


def test_the_summary_carries_per_image_quality_of_the_raw_planes(runs):
    out = runs[0]["raw"]
    summary = json.loads((out / "wells" / "B02" / "summary.json").read_text())
    keys = [(e["site"], e["channel"], e["t"]) for e in summary["images"]]
    assert keys == [(s, c, 1) for s in range(1, SITES + 1) for c in range(1, CHANNELS + 1)]
    first = summary["images"][0]
    assert first["channel_name"] and first["z"] == Z_PLANES // 2 + 1  # the synthetic stack is sharp in the middle
    assert first["FocusScore"] > 0 and first["SaturationFraction"] == 0.0 and first["Background"] > 0
    assert first["SaturationLevel"] == 4095.0  # a uint16 plate whose values stay below 4095


def test_a_switch_of_images_redoes_wells_and_processed_keeps_earlier_run_keys():
    raw, processed = WellJobOptions(images="raw"), WellJobOptions(images="processed")
    assert raw.key_values()["images"] == "raw"
    assert "images" not in processed.key_values()  # wells written before the option existed were processed


@pytest.mark.parametrize("images", ["raw", "both"])
def test_disk_layout_follows_the_option(plate, tmp_path, images):
    structure, folders = _run(plate, tmp_path, images, backend="disk")
    well_images = tmp_path / "images" / "B02"
    names = sorted(p.name for p in well_images.glob("*.tif"))
    assert len([n for n in names if "_labels_" not in n]) == SITES * CHANNELS * Z_PLANES  # every raw plane
    assert len([n for n in names if "_labels_" in n]) == SITES  # one 2D segmentation per site
    fields = folders["B02"].read_fields()
    assert fields[1].image.dtype == np.uint16 and fields[1].image.shape == (1, CHANNELS, Z_PLANES, SIZE, SIZE)
    assert fields[1].labels is not None and fields[1].labels.shape == (1, Z_PLANES, SIZE, SIZE)
    image = next(i for i in structure.images() if i.key.well == "B02" and i.key.site == 2 and i.key.z == 3)
    np.testing.assert_array_equal(fields[2].image[0, image.key.channel - 1, 2], read_plane(structure, image))
    processed = sorted(p.name for p in (well_images / PROCESSED).glob("*.tif")) if images == "both" else []
    assert len(processed) == (SITES * CHANNELS + SITES if images == "both" else 0)


def _result() -> WellResult:
    rng = np.random.default_rng(0)
    raw = {PlaneKey(1, c, z, 1): rng.integers(0, 4096, (8, 10)).astype(np.uint16) for c in (1, 2) for z in (1, 2, 3)}
    processed = {PlaneKey(1, c, 1, 1): rng.random((8, 10), dtype=np.float32) for c in (1, 2)}
    labels = {LabelKey(1, 1, 1): rng.integers(0, 5, (8, 10)).astype(np.int32)}
    return WellResult(processed, labels, raw=raw)


@pytest.mark.parametrize("layout", ["zarr", "disk"])
def test_the_writer_keeps_what_the_option_says(tmp_path, layout):
    result = _result()
    for images, dtype, z in (("raw", np.uint16, 3), ("processed", np.float32, 1), ("both", np.uint16, 3)):
        folder = WellFolder(tmp_path / images / "B02", layout)
        with folder.image_writer(pyramid_levels=2, images=images) as writer:
            writer.submit(result)
        field = folder.read_fields()[1]
        assert field.image.dtype == dtype and field.image.shape == (1, 2, z, 8, 10)
        assert field.labels is not None and field.labels.shape == (1, z, 8, 10)
        assert folder.has_processed_images() == (images == "both")
    expected = stack_fields(result.raw, result.labels)[1]
    np.testing.assert_array_equal(WellFolder(tmp_path / "raw" / "B02", layout).read_fields()[1].image, expected.image)


def test_raw_without_the_planes_as_read_says_so(tmp_path):
    folder = WellFolder(tmp_path / "B02")
    with pytest.raises(ValueError, match="planes as read"), folder.image_writer(images="raw") as writer:
        writer.submit(WellResult({PlaneKey(1, 1, 1, 1): np.zeros((4, 4), np.float32)}))
    assert not folder.images.exists()  # nothing that looks complete
    with pytest.raises(ValueError, match="unknown images"):
        folder.image_writer(images="jpeg")


def test_single_plane_labels_stand_for_every_z_plane_and_mismatched_ones_are_left_out():
    planes = {PlaneKey(1, 1, z, 1): np.full((2, 3), z, np.uint16) for z in (1, 2, 3)}
    one = {LabelKey(1, 1, 1): np.arange(6).reshape(2, 3)}
    field = stack_fields(planes, one)[1]
    assert field.image.dtype == np.uint16
    assert (
        field.labels is not None and field.labels.shape == (1, 3, 2, 3) and (field.labels[0, 2] == one[(1, 1, 1)]).all()
    )
    assert stack_fields(planes, {LabelKey(1, 1, 1): np.ones((4, 4))})[1].labels is None  # another plane size
    assert stack_fields(planes, {LabelKey(1, z, 1): np.ones((2, 3)) for z in (1, 2)})[1].labels is None
