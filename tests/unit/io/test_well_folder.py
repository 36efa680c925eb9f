"""The well output folder: its layout, the done-check, writing it and reading it back; the backend a plate gets."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from openhcs_rules.core.files import atomic_path
from openhcs_rules.errors import ConfigError
from openhcs_rules.io.registry import backend_for
from openhcs_rules.io.well_folder import Field, WellFolder, stack_fields
from openhcs_rules.pipeline.executor import LabelKey, PlaneKey, WellResult
from openhcs_rules.plate.model import PlateStructure
from openhcs_rules_testkit.paths import REPO

JOBS = REPO / "openhcs_rules" / "jobs"


def _result(seed: int = 0) -> WellResult:
    """Two sites, two channels, two z planes, one timepoint; labels on every (site, z, t)."""
    rng = np.random.default_rng(seed)
    keys = [PlaneKey(s, c, z, 1) for s in (1, 2) for c in (1, 2) for z in (1, 2)]
    images = {key: rng.random((8, 10), dtype=np.float32) for key in keys}
    labels = {LabelKey(s, z, 1): rng.integers(0, 5, (8, 10)).astype(np.int32) for s in (1, 2) for z in (1, 2)}
    return WellResult(images, labels)


def test_plane_keys_are_named_and_still_tuples() -> None:
    key = PlaneKey(2, 1, 3, 4)
    assert (key.site, key.channel, key.z, key.t) == (2, 1, 3, 4) == tuple(key)
    assert key._replace(z=1) == (2, 1, 1, 4)
    assert LabelKey(2, 3, 4) == (2, 3, 4)


def test_layout_names_every_output(tmp_path: Path) -> None:
    zarr_folder, disk_folder = WellFolder(tmp_path / "B02"), WellFolder(tmp_path / "out", "disk", "B02")
    assert zarr_folder.well == "B02" and disk_folder.well == "B02"
    assert zarr_folder.images == tmp_path / "B02" / "images.zarr"
    assert disk_folder.images == tmp_path / "out" / "images"
    assert zarr_folder.objects_csv.name == "objects.csv" and zarr_folder.summary_json.name == "summary.json"
    with pytest.raises(ValueError, match="unknown image layout"):
        WellFolder(tmp_path, "png")


def test_done_needs_the_same_run_key_and_the_images(tmp_path: Path) -> None:
    folder = WellFolder(tmp_path / "B02", "disk")
    assert not folder.is_done("k1")
    folder.path.mkdir()
    folder.write_summary({"run_key": "k1"})
    assert not folder.is_done("k1")  # no images yet
    folder.images.mkdir()
    assert folder.is_done("k1") and not folder.is_done("k2")
    folder.summary_json.write_text("{not json")
    assert not folder.is_done("k1")
    folder.mark_not_done()
    assert not folder.summary_json.exists()


def test_stacking_sorts_the_axes_and_keeps_only_matching_labels() -> None:
    planes = {PlaneKey(1, c, z, t): np.full((2, 3), c * 100 + z * 10 + t) for c in (2, 1) for z in (3, 1) for t in (1,)}
    field = stack_fields(planes, {LabelKey(1, z, 1): np.ones((2, 3)) for z in (1, 3)})[1]
    assert field.image.shape == (1, 2, 2, 2, 3)
    assert [field.image[0, c, z, 0, 0] for c in range(2) for z in range(2)] == [111, 131, 211, 231]
    assert field.labels is not None and field.labels.dtype == np.int32 and field.labels.shape == (1, 2, 2, 3)
    # segmented before a z projection: the labels have z planes the image no longer has
    projected = {PlaneKey(1, 1, 1, 1): np.zeros((2, 3))}
    assert stack_fields(projected, {LabelKey(1, z, 1): np.ones((2, 3)) for z in (1, 2)})[1].labels is None
    with pytest.raises(ValueError, match="differ in shape"):
        stack_fields({PlaneKey(1, 1, 1, 1): np.zeros((2, 3)), PlaneKey(1, 2, 1, 1): np.zeros((3, 3))})


@pytest.mark.parametrize("layout", ["zarr", "disk"])
def test_written_images_read_back_as_the_same_fields(tmp_path: Path, layout: str) -> None:
    folder = WellFolder(tmp_path / "C03", layout)
    result = _result()
    with folder.image_writer(pyramid_levels=2) as writer:
        writer.submit(result)
    assert folder.images.is_dir()
    expected = stack_fields(result.images, result.labels, np.float32)
    fields = folder.read_fields()
    assert sorted(fields) == [1, 2]
    for site, field in fields.items():
        assert isinstance(field, Field)
        np.testing.assert_array_equal(field.image, expected[site].image)
        assert field.labels is not None and expected[site].labels is not None
        np.testing.assert_array_equal(field.labels, expected[site].labels)


def test_tables_round_trip_and_a_killed_write_is_cleared(tmp_path: Path) -> None:
    folder = WellFolder(tmp_path / "B02")
    folder.path.mkdir()
    folder.write_objects([{"site": 1, "z": 1, "t": 1, "label": 1, "area_px": 4.0, "mean_intensity_DAPI": 2.0}], "p")
    header, row = folder.objects_csv.read_text().splitlines()
    assert header.split(",")[:3] == ["plate", "well", "site"] and header.endswith("mean_intensity_DAPI")
    assert row.startswith("p,B02,1,")
    folder.write_summary({"well": "B02", "n_objects": 1})
    assert folder.read_summary() == {"well": "B02", "n_objects": 1}
    assert [p.name for p in folder.result_files()] == ["objects.csv", "summary.json"]
    with pytest.raises(RuntimeError), atomic_path(folder.images) as tmp:  # a write that never finished
        tmp.mkdir()
        stale = tmp
        raise RuntimeError("killed")
    stale.mkdir()  # what SIGKILL leaves: the temp stays
    folder.clear_interrupted_writes()
    assert not stale.exists()
    with pytest.raises(FileNotFoundError, match="neither images.zarr nor images/"):
        folder.read_fields()
    assert json.loads(folder.summary_json.read_text())["n_objects"] == 1


def _plate(fmt: str, **metadata: object) -> PlateStructure:
    return PlateStructure("p", fmt, "/nowhere", 8, 12, [], {}, metadata=dict(metadata))


def test_a_plate_gets_a_backend_its_format_names() -> None:
    assert backend_for(_plate("imagexpress"), "zarr").name == "zarr"
    assert backend_for(_plate("imagexpress"), "disk").layout == "disk"
    with pytest.raises(ConfigError, match="cannot hold results"):
        backend_for(_plate("imagexpress"), "omero_local")
    omero = _plate("omero", omero={"url": "omero://user@localhost:4064/plate/42"})
    for requested in ("zarr", "disk"):  # whatever output.backend says: OMERO plates go through omero_local
        backend = backend_for(omero, requested)
        assert backend.name == "omero_local" and backend.layout == requested


def test_no_job_branches_on_the_plate_format() -> None:
    """Jobs take one path through the storage backend: no ``plate.format`` tests and no OMERO code in jobs."""
    offences = []
    for path in sorted(JOBS.glob("*.py")):
        text = path.read_text()
        if "omero" in text.lower():
            offences.append(f"{path.name}: mentions omero")
        for node in ast.walk(ast.parse(text)):
            tested = [node.left, *node.comparators] if isinstance(node, ast.Compare) else []
            tested += [node.subject] if isinstance(node, ast.Match) else []
            if any(isinstance(n, ast.Attribute) and n.attr == "format" for t in tested for n in ast.walk(t)):
                offences.append(f"{path.name}:{node.lineno}: branches on .format")
    assert offences == []
