"""Pixel reads: the direct (managed repository) and API paths give identical arrays; the API is batched."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from openhcs_rules.formats.omero import OmeroFormatHandler
from openhcs_rules.io.omero_local import OmeroLocalBackend
from openhcs_rules.omero.errors import OmeroUnavailableError
from openhcs_rules.omero.reader import PlaneReader
from openhcs_rules.omero.structure import image_info
from openhcs_rules_testkit.omero_standin.data import random_fields
from openhcs_rules_testkit.paths import REPO

pytest_plugins = ["openhcs_rules_testkit.omero_standin.fixtures"]

SHAPE = (2, 3, 4, 24, 32)  # t, c, z, y, x


def _plate(handle, storage: str = "ome-tiff", wells=("A01", "B02"), shape=SHAPE, dtype: str = "uint16"):
    data = random_fields(list(wells), sites=2, shape=shape, dtype=dtype)
    imported = handle.import_plate("px", 8, 12, data, storage=storage)
    plate = OmeroFormatHandler().parse(Path(handle.params.plate_url(imported.plate_id)), "px")
    return plate, data


def _read_all(plate, path: str, params) -> tuple[dict, PlaneReader]:
    _, plate_id = params, int(plate.metadata["omero"]["plate_id"])
    reader = PlaneReader(params, plate_id, path=path)
    out = {}
    for image in plate.images():
        t, c, z = image.index
        out[image.key] = reader.read(image_info(plate, image), z, c, t)
    return out, reader


def _expected(data, key):
    return data[key.well][key.site - 1][key.t - 1, key.channel - 1, key.z - 1]


@pytest.mark.parametrize("storage", ["ome-tiff", "ome-tiff-zlib"])
def test_direct_and_api_paths_return_identical_arrays(omero_server, storage: str) -> None:
    omero_server.require_standin("imported files in a readable managed repository")
    plate, data = _plate(omero_server, storage)
    direct, d_reader = _read_all(plate, "direct", omero_server.params)
    api, a_reader = _read_all(plate, "api", omero_server.params)
    assert d_reader.stats == {"direct": len(plate.images())} and a_reader.stats == {"api": len(plate.images())}
    for key, plane in direct.items():
        assert plane.dtype == np.uint16 and plane.dtype.isnative
        np.testing.assert_array_equal(plane, api[key])
        np.testing.assert_array_equal(plane, _expected(data, key))
    d_reader.close()
    a_reader.close()


def test_direct_path_memory_maps_uncompressed_files(omero_server) -> None:
    omero_server.require_standin("imported files")
    plate, _ = _plate(omero_server, "ome-tiff")
    _, reader = _read_all(plate, "direct", omero_server.params)
    handles = list(reader._direct._open.values())
    assert handles and all(h.mapped for h in handles)
    reader.close()


def test_mapped_planes_are_read_only_views_that_cannot_corrupt_later_reads(omero_server) -> None:
    omero_server.require_standin("imported files")
    plate, data = _plate(omero_server, "ome-tiff")
    reader = PlaneReader(omero_server.params, int(plate.metadata["omero"]["plate_id"]), path="direct")
    image = plate.images()[3]
    t, c, z = image.index
    plane = reader.read(image_info(plate, image), z, c, t)
    with pytest.raises(ValueError, match="read-only"):
        plane[:] = 0  # an in-place step must copy first
    mine = plane.copy()
    mine[:] = 0
    np.testing.assert_array_equal(reader.read(image_info(plate, image), z, c, t), _expected(data, image.key))
    reader.close()


def test_api_reads_are_batched_per_image(omero_server) -> None:
    server = omero_server.server
    plate, data = _plate(omero_server, "ome-tiff")
    t, c, z = SHAPE[:3]
    images = 4
    before = server.calls_by_method()
    planes, reader = _read_all(plate, "api", omero_server.params)
    after = server.calls_by_method()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    assert delta.get("getPlane", 0) == 0 and delta["getStack"] == images * c * t  # one stack per (c, t)
    assert delta["createRawPixelsStore"] == images and delta["setPixelsId"] == images  # one store per image
    assert sum(delta.values()) <= images * (c * t + 3) + 1
    assert sum(delta.values()) < len(planes)  # fewer round trips than planes
    reader.close()


def test_api_uses_tiles_for_planes_over_the_message_limit(omero_server) -> None:
    server = omero_server.server
    plate, data = _plate(omero_server, "ome-tiff", wells=("C03",), shape=(1, 1, 1, 64, 80))
    limit = 22 * 80 * 2  # 22 rows of uint16 per message: a 64-row plane needs 3 tiles
    server.set_limits(message_limit=limit, max_plane_pixels=64 * 80 // 2)
    reader = PlaneReader(omero_server.params, int(plate.metadata["omero"]["plate_id"]), path="api")
    reader.message_limit, reader.max_plane_pixels = limit, 64 * 80 // 2
    before = server.calls_by_method().get("getTile", 0)
    image = plate.images()[0]
    plane = reader.read(image_info(plate, image), 0, 0, 0)
    np.testing.assert_array_equal(plane, data["C03"][0][0, 0, 0])
    assert server.calls_by_method()["getTile"] - before == 3
    reader.close()


def test_non_tiff_originals_fall_back_to_the_api_and_say_so(omero_server, caplog) -> None:
    omero_server.require_standin("imported files")
    plate, data = _plate(omero_server, "raw")
    reader = PlaneReader(omero_server.params, int(plate.metadata["omero"]["plate_id"]))
    with caplog.at_level(logging.INFO, logger="openhcs_rules.omero.reader"):
        for image in plate.images()[:5]:
            t, c, z = image.index
            np.testing.assert_array_equal(reader.read(image_info(plate, image), z, c, t), _expected(data, image.key))
    assert reader.stats == {"api": 5}
    messages = [r.getMessage() for r in caplog.records]
    assert any("through the API" in m and "not a single TIFF" in m for m in messages)
    assert len([m for m in messages if "through the API" in m]) == 1  # logged once, not per plane
    reader.close()


def test_direct_path_is_logged(omero_server, caplog) -> None:
    omero_server.require_standin("imported files")
    plate, _ = _plate(omero_server)
    with caplog.at_level(logging.INFO, logger="openhcs_rules.omero.reader"):
        _, reader = _read_all(plate, "auto", omero_server.params)
    assert reader.stats == {"direct": len(plate.images())}
    assert any("directly from" in r.getMessage() for r in caplog.records)
    reader.close()


def test_unreadable_data_dir_uses_the_api(omero_server, tmp_path: Path) -> None:
    omero_server.require_standin("imported files")
    from dataclasses import replace

    plate, data = _plate(omero_server)
    params = replace(omero_server.params, data_dir=str(tmp_path / "not-mounted"))
    reader = PlaneReader(params, int(plate.metadata["omero"]["plate_id"]))
    image = plate.images()[7]
    t, c, z = image.index
    np.testing.assert_array_equal(reader.read(image_info(plate, image), z, c, t), _expected(data, image.key))
    assert reader.stats == {"api": 1}
    reader.close()


def test_expired_session_is_renewed_during_a_long_read(omero_server) -> None:
    server = omero_server.server
    plate, data = _plate(omero_server)
    reader = PlaneReader(omero_server.params, int(plate.metadata["omero"]["plate_id"]), path="api")
    for number, image in enumerate(plate.images()):
        if number in (5, 40):
            server.expire_sessions()  # OMERO's idle timeout struck between two planes
        t, c, z = image.index
        np.testing.assert_array_equal(reader.read(image_info(plate, image), z, c, t), _expected(data, image.key))
    assert reader.session.renewals == 2
    reader.close()


def test_server_gone_mid_read_is_a_clear_error(omero_server) -> None:
    server = omero_server.server
    plate, _ = _plate(omero_server)
    reader = PlaneReader(omero_server.params, int(plate.metadata["omero"]["plate_id"]), path="api")
    image = plate.images()[0]
    reader.read(image_info(plate, image), 0, 0, 0)
    server.stop()
    later = plate.images()[-1]
    t, c, z = later.index
    with pytest.raises(OmeroUnavailableError, match="went away"):
        reader.read(image_info(plate, later), z, c, t)
    reader.close()


def test_worker_process_reconnects_from_plate_json(omero_server, tmp_path: Path) -> None:
    """A well job only has plate.json and its own password source: no pickled connection, no password."""
    plate, data = _plate(omero_server)
    plate.save_json(tmp_path / "plate.json")
    backend_blob = pickle.dumps(OmeroLocalBackend(plate))
    assert os.environ["OMERO_PASSWORD"].encode() not in backend_blob
    (tmp_path / "backend.pkl").write_bytes(backend_blob)
    code = (
        "import pickle, sys, numpy as np\n"
        "from openhcs_rules.plate.model import PlateStructure\n"
        "from openhcs_rules.formats.omero import OmeroFormatHandler\n"
        "plate = PlateStructure.load_json(sys.argv[1])\n"
        "image = plate.wells['B02'].images[-1]\n"
        "a = OmeroFormatHandler().read_plane(plate, image)\n"
        "b = pickle.loads(open(sys.argv[2], 'rb').read()).load_image(sys.argv[3])\n"
        "np.save(sys.argv[4], np.stack([a, b]))\n"
    )
    last = plate.wells["B02"].images[-1].key
    path = f"{plate.root}/B02/{last.virtual_filename}"
    # the stand-in gateway (openhcs_rules_testkit) is imported from the repository root
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "planes.npy"
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "plate.json"), str(tmp_path / "backend.pkl"), path, str(out)],
        check=True,
        env=env,
        timeout=60,
    )
    a, b = np.load(out)
    np.testing.assert_array_equal(a, _expected(data, last))
    np.testing.assert_array_equal(b, _expected(data, last))
