"""Discovery: OMERO plate -> PlateStructure in O(1) server calls, virtual paths, 1536-well rows, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from openhcs_rules.formats.omero import OmeroFormatHandler
from openhcs_rules.omero.errors import OmeroNotFoundError
from openhcs_rules.plate.naming import well_name
from openhcs_rules_testkit.omero_standin.data import STANDIN_PASSWORD, random_fields

pytest_plugins = ["openhcs_rules_testkit.omero_standin.fixtures"]


def _discover(handle, plate_id: int, name: str = "screen_plate"):
    return OmeroFormatHandler().parse(Path(handle.params.plate_url(plate_id)), name)


def test_structure_of_a_plate(omero_server) -> None:
    wells = random_fields(["A01", "B03"], sites=2, shape=(2, 3, 4, 16, 20))
    imported = omero_server.import_plate("P1", 8, 12, wells, channel_names=["DAPI", "GFP", "RFP"], empty_wells=["H12"])
    plate = _discover(omero_server, imported.plate_id)
    assert plate.format == "omero" and plate.root == f"/omero/plate_{imported.plate_id}"
    assert (plate.rows, plate.columns) == (8, 12)
    assert plate.well_names == ["A01", "B03"]
    assert plate.sites == [1, 2] and plate.channel_indices == [1, 2, 3]
    assert plate.z_planes == [1, 2, 3, 4] and plate.timepoints == [1, 2]
    assert [c.name for c in plate.channels] == ["DAPI", "GFP", "RFP"]
    assert plate.image_shape == (16, 20) and plate.dtype == "uint16"
    assert plate.pixel_size_um == pytest.approx(0.65)
    assert any("H12" in w for w in plate.warnings)
    assert len(plate.images()) == 2 * 2 * 2 * 3 * 4
    # OMERO's 0-based (t, c, z) travel with each 1-based key
    image = next(i for i in plate.wells["B03"].images if i.key.site == 2 and i.key.channel == 3 and i.key.z == 1)
    assert image.index == (0, 2, 0) and image.source == f"image/{imported.image_ids[('B03', 2)]}"


def test_plate_json_has_connection_but_no_password(omero_server, tmp_path: Path) -> None:
    imported = omero_server.import_plate("P2", 8, 12, random_fields(["C04"], sites=1))
    plate = _discover(omero_server, imported.plate_id)
    plate.save_json(tmp_path / "plate.json")
    text = (tmp_path / "plate.json").read_text()
    assert STANDIN_PASSWORD not in text and "password=" not in text
    meta = json.loads(text)["metadata"]["omero"]
    assert meta["plate_id"] == imported.plate_id and meta["url"].startswith("omero://")


def test_1536_well_layout_rows_beyond_z(omero_server) -> None:
    wells = ["A01", "Z48", "AA01", "AF48"]
    imported = omero_server.import_plate("P1536", 32, 48, random_fields(wells, sites=1, shape=(1, 1, 1, 8, 8)))
    plate = _discover(omero_server, imported.plate_id)
    assert (plate.rows, plate.columns) == (32, 48)
    assert plate.well_names == wells
    from openhcs_rules.io.omero_local import OmeroLocalBackend

    backend = OmeroLocalBackend(plate)
    files = backend.list_files(f"/omero/plate_{imported.plate_id}/AF48")
    assert files == [f"/omero/plate_{imported.plate_id}/AF48/AF48_s001_w1_z001_t001.tif"]
    np.testing.assert_array_equal(
        backend.load_image(files[0]), random_fields(wells, 1, (1, 1, 1, 8, 8))["AF48"][0][0, 0, 0]
    )


def test_discovery_costs_the_same_number_of_calls_for_96_and_1536_wells(omero_server) -> None:
    server = omero_server.server
    from openhcs_rules.omero.structure import clear_cache

    small = omero_server.import_plate("S", 8, 12, random_fields(["A01", "B02"], 1, (1, 1, 1, 4, 4)))
    every = [well_name(r, c) for r in range(32) for c in range(48)]
    big = omero_server.import_plate("B", 32, 48, random_fields(every, 1, (1, 1, 1, 4, 4)))
    costs = []
    for imported in (small, big):
        clear_cache()
        before = server.calls()
        plate = _discover(omero_server, imported.plate_id)
        costs.append(server.calls() - before)
    assert len(plate.wells) == 1536
    assert costs[0] == costs[1] <= 6  # login + plate + wells + channels + files (+ close)
    before = server.calls()
    _discover(omero_server, big.plate_id)  # cached in this process
    assert server.calls() == before


def test_missing_plate_id_is_a_clear_error(omero_server) -> None:
    with pytest.raises(OmeroNotFoundError, match="plate 987654 does not exist"):
        _discover(omero_server, 987654)


def test_detect_only_omero_urls(tmp_path: Path) -> None:
    assert OmeroFormatHandler.detect(Path("omero://root@host:4064/plate/3"))
    assert not OmeroFormatHandler.detect(tmp_path)
