"""Derived plates: real data on first write (no black wells), reruns reuse or replace, concurrent jobs safe."""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from openhcs_rules.formats.omero import OmeroFormatHandler
from openhcs_rules.io.omero_local import OmeroLocalBackend, publish_fields, publish_plate
from openhcs_rules.io.well_folder import Field
from openhcs_rules.omero.adapter import OmeroSession
from openhcs_rules.omero.derived import ensure_derived_plate, image_name
from openhcs_rules.omero.errors import OmeroUnavailableError, OmeroWriteError
from openhcs_rules.omero.records import PixelsRecord
from openhcs_rules.plate.model import ImageKey
from openhcs_rules_testkit.omero_standin.data import random_fields
from openhcs_rules_testkit.paths import REPO

pytest_plugins = ["openhcs_rules_testkit.omero_standin.fixtures"]

WELLS = ["A01", "A02", "B01", "H12"]
SHAPE = (1, 2, 2, 16, 24)


def _source(handle, wells=WELLS, empty=("C03",)):
    imported = handle.import_plate("src", 8, 12, random_fields(wells, 2, SHAPE), ["DAPI", "GFP"], list(empty))
    return OmeroFormatHandler().parse(Path(handle.params.plate_url(imported.plate_id)), "src")


def _results(well: str, seed: int = 1) -> dict[int, Field]:
    """Processed fields as process_well leaves them: float32 images and int32 labels, never all zero."""
    rng = np.random.default_rng(abs(hash((well, seed))) % 2**32)
    fields = {}
    for site in (1, 2):
        image = rng.random(SHAPE, dtype=np.float32) + 0.5
        labels = rng.integers(1, 50, (SHAPE[0], SHAPE[2], SHAPE[3], SHAPE[4]), dtype=np.int32)
        fields[site] = Field(image, labels)
    return fields


def _read_image(session: OmeroSession, image_id: int) -> np.ndarray:
    """Read a derived image back through the API, whole (t, c, z, y, x)."""
    from openhcs_rules.omero import queries

    pixels_id = session._project("test", queries.IMAGE_PIXELS, iid=image_id)[0][0]
    pix = session._find_one("test", queries.PIXELS_CHANNELS, pxid=int(pixels_id))
    names = [c.getLogicalChannel().getName().getValue() for c in pix.copyChannels()]
    size_c = len(names)
    record = PixelsRecord(int(pixels_id), SHAPE[4], SHAPE[3], SHAPE[2], size_c, SHAPE[0], "float")
    store = session.open_pixels(record)
    data = np.stack(
        [
            np.stack([np.stack([store.read_plane(z, c, t) for z in range(SHAPE[2])]) for c in range(size_c)])
            for t in range(SHAPE[0])
        ]
    )
    store.close()
    return data, names


def _derived_state(session: OmeroSession, plate) -> dict[str, list]:
    derived = ensure_derived_plate(session, plate)
    return {w: session.well_samples(wid) for w, wid in sorted(derived.wells.items())}


def test_every_well_of_the_derived_plate_has_its_data(omero_server) -> None:
    """The black-well bug: each image must hold the written pixels, never a zero placeholder."""
    plate = _source(omero_server)
    with OmeroSession(omero_server.params) as session:
        expected = {}
        for well in WELLS:
            fields = _results(well)
            expected[well] = fields
            report = publish_fields(session, plate, well, fields)
            assert [s.action for s in report.sites] == ["created", "created"]
        state = _derived_state(session, plate)
        assert set(state) == {*WELLS, "C03"}  # same layout as the source, empty well included
        assert state["C03"] == []
        for well in WELLS:
            samples = state[well]
            assert [s.image_name for s in samples] == [image_name(well, 1), image_name(well, 2)]
            for site, sample in enumerate(samples, start=1):
                data, names = _read_image(session, sample.image_id)
                assert names == ["DAPI", "GFP", "labels"]
                assert np.all(data[:, :2] > 0), f"{well} field {site} is (partly) black"
                np.testing.assert_array_equal(data[:, :2], expected[well][site].image)
                np.testing.assert_array_equal(data[:, 2], expected[well][site].labels.astype(np.float32))


def test_rerun_reuses_identical_and_replaces_changed_results(omero_server) -> None:
    plate = _source(omero_server, wells=["A01"], empty=())
    with OmeroSession(omero_server.params) as session:
        first = publish_fields(session, plate, "A01", _results("A01"))
        again = publish_fields(session, plate, "A01", _results("A01"))
        assert [s.action for s in again.sites] == ["reused", "reused"]
        assert [s.image_id for s in again.sites] == [s.image_id for s in first.sites]
        changed = publish_fields(session, plate, "A01", _results("A01", seed=2))
        assert [s.action for s in changed.sites] == ["replaced", "replaced"]
        samples = _derived_state(session, plate)["A01"]
        assert [s.image_id for s in samples] == [s.image_id for s in changed.sites]  # one image per field
        data, _ = _read_image(session, samples[0].image_id)
        np.testing.assert_array_equal(data[:, :2], _results("A01", seed=2)[1].image)
    if omero_server.kind == "standin":  # the replaced images are gone, not orphaned
        ids = {row[0] for row in omero_server.server.query("SELECT id FROM image")}
        assert not {s.image_id for s in first.sites} & ids


def _publish_job(args: tuple[str, dict[str, str], str, str, int]) -> list[int]:
    plate_json, env, well, repo, seed = args
    os.environ.update(env)
    sys.path.insert(0, repo)  # the stand-in gateway (openhcs_rules_testkit) is imported from the repository root
    from openhcs_rules.plate.model import PlateStructure

    plate = PlateStructure.load_json(plate_json)
    with OmeroSession(__import__("openhcs_rules.omero.structure", fromlist=["x"]).plate_params(plate)[0]) as session:
        report = publish_fields(session, plate, well, _results(well, seed))
    return [s.image_id for s in report.sites]


def test_concurrent_well_jobs_share_one_derived_plate_without_duplicates(omero_server, tmp_path: Path) -> None:
    plate = _source(omero_server)
    plate.save_json(tmp_path / "plate.json")
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENHCS_RULES_", "OMERO_"))}
    jobs = [(str(tmp_path / "plate.json"), env, w, str(REPO), 1) for w in WELLS]
    jobs += [(str(tmp_path / "plate.json"), env, "A01", str(REPO), 1)]  # a duplicate job
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        pool.map(_publish_job, jobs)
    with OmeroSession(omero_server.params) as session:
        state = _derived_state(session, plate)
        for well in WELLS:
            assert [s.image_name for s in state[well]] == [image_name(well, 1), image_name(well, 2)], well
    if omero_server.kind == "standin":
        derived = omero_server.server.query("SELECT COUNT(*) FROM plate WHERE name LIKE 'src [%'")
        assert derived == [(1,)]
        linked = omero_server.server.query("SELECT COUNT(*) FROM image WHERE name LIKE '%_s00_'")
        assert linked == [(2 * len(WELLS),)]  # no orphaned duplicate left behind


def test_server_gone_mid_write_leaves_nothing_half_written(omero_server) -> None:
    server = omero_server.server
    plate = _source(omero_server, wells=["A01", "A02"], empty=())
    with OmeroSession(omero_server.params) as session:
        publish_fields(session, plate, "A01", _results("A01"))
    server.stop_after(12)  # dies while the next well's first image is being filled
    with pytest.raises(OmeroUnavailableError, match="during"), OmeroSession(omero_server.params) as session:
        publish_fields(session, plate, "A02", _results("A02"))
    server.start()
    with OmeroSession(omero_server.params) as session:
        assert _derived_state(session, plate)["A02"] == []  # nothing linked: no black well
        report = publish_fields(session, plate, "A02", _results("A02"))  # the rerun completes it
        assert [s.action for s in report.sites] == ["created", "created"]
        state = _derived_state(session, plate)
        assert len(state["A01"]) == 2 and len(state["A02"]) == 2
        data, _ = _read_image(session, state["A02"][0].image_id)
        np.testing.assert_array_equal(data[:, :2], _results("A02")[1].image)


def test_backend_writes_a_field_only_when_all_its_planes_are_there(omero_server) -> None:
    plate = _source(omero_server, wells=["B01"], empty=())
    backend = OmeroLocalBackend(plate)
    keys = [i.key for i in plate.wells["B01"].images if i.key.site == 1]
    planes = {k: np.full(SHAPE[3:], k.channel * 10 + k.z, dtype=np.float32) for k in keys}
    for key in keys[:-1]:
        backend.save_image(planes[key], backend.generate_filename(key))
    assert _derived_state(backend.session, plate)["B01"] == []  # not written yet: no placeholder
    with pytest.raises(ValueError, match="incomplete fields were not written"):
        backend.flush()
    backend.save_image(planes[keys[-1]], backend.generate_filename(keys[-1]))
    backend.flush()
    samples = _derived_state(backend.session, plate)["B01"]
    assert [s.image_name for s in samples] == ["B01_s001"]
    with pytest.raises(ValueError, match="not a plane"):
        backend.write_plane(ImageKey("B01", 1, 9, 1, 1), planes[keys[0]])
    backend.close()


def test_publish_plate_refuses_black_wells(omero_server, tmp_path: Path) -> None:
    plate = _source(omero_server, wells=["A01", "A02"], empty=())
    (tmp_path / "wells.csv").write_text("well,n\nA01,3\n")
    with OmeroSession(omero_server.params) as session:
        publish_fields(session, plate, "A01", _results("A01"))
        with pytest.raises(OmeroWriteError, match="no images for well.*A02"):
            publish_plate(plate, tmp_path, session=session)
