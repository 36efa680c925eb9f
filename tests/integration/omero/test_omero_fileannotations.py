"""Small results as FileAnnotations on the plate, well or image they describe; reruns replace them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from openhcs_rules.formats.omero import OmeroFormatHandler
from openhcs_rules.io.omero_local import OmeroLocalBackend, publish_plate, publish_well
from openhcs_rules.omero.adapter import OmeroSession
from openhcs_rules.omero.annotations import NS_RESULTS
from openhcs_rules.omero.derived import ensure_derived_plate
from openhcs_rules.omero.errors import OmeroNotFoundError
from openhcs_rules.plate.naming import virtual_filename
from openhcs_rules_testkit.omero_standin.data import random_fields

pytest_plugins = ["openhcs_rules_testkit.omero_standin.fixtures"]

SHAPE = (1, 1, 1, 12, 16)


def _plate(handle, wells=("B03", "C04")):
    imported = handle.import_plate("fa", 8, 12, random_fields(list(wells), 1, SHAPE), ["DAPI"])
    return OmeroFormatHandler().parse(Path(handle.params.plate_url(imported.plate_id)), "fa")


def _well_outputs(folder: Path, well: str, count: int) -> Path:
    """What process_well leaves with the disk backend: TIFFs, objects.csv, summary.json."""
    import tifffile

    (folder / "images").mkdir(parents=True)
    tifffile.imwrite(folder / "images" / virtual_filename(well, 1, 1, 1, 1), np.full(SHAPE[3:], 2.5, np.float32))
    labels = np.zeros(SHAPE[3:], np.int32)
    labels[2:5, 2:5] = 1
    tifffile.imwrite(folder / "images" / virtual_filename(well, 1, 1, 1, 1).replace("_w1_", "_labels_"), labels)
    (folder / "objects.csv").write_text(f"plate,well,site,label\nfa,{well},1,1\n")
    (folder / "summary.json").write_text(json.dumps({"well": well, "n_objects": count}))
    return folder


def _annotations(session: OmeroSession, kind: str, object_id: int) -> dict[str, bytes]:
    return {
        r.name: session.download_file(r.file_id, r.size) for r in session.file_annotations(kind, object_id, NS_RESULTS)
    }


def test_well_and_plate_results_are_linked_where_they_belong(omero_server, tmp_path: Path) -> None:
    plate = _plate(omero_server)
    for well in ("B03", "C04"):
        publish_well(plate, _well_outputs(tmp_path / well, well, 7))
    (tmp_path / "wells.csv").write_text("well,n_objects\nB03,7\nC04,7\n")
    (tmp_path / "objects.csv").write_text("plate,well\n")
    (tmp_path / "plate.json").write_text("{}")
    (tmp_path / "heatmap.png").write_bytes(b"\x89PNG")
    report = publish_plate(plate, tmp_path)
    assert report.files == {"objects.csv": "created", "wells.csv": "created"}  # no png, no bookkeeping json
    with OmeroSession(omero_server.params) as session:
        derived = ensure_derived_plate(session, plate)
        assert set(_annotations(session, "plate", derived.plate_id)) == {"wells.csv", "objects.csv"}
        b03 = _annotations(session, "well", derived.wells["B03"])
        assert set(b03) == {"objects.csv", "summary.json"}
        assert json.loads(b03["summary.json"]) == {"well": "B03", "n_objects": 7}
        image_id = session.well_samples(derived.wells["B03"])[0].image_id
        assert _annotations(session, "image", image_id) == {}


def test_rerun_replaces_the_annotation_instead_of_adding_one(omero_server, tmp_path: Path) -> None:
    plate = _plate(omero_server, wells=("B03",))
    folder = _well_outputs(tmp_path / "B03", "B03", 7)
    publish_well(plate, folder)
    assert publish_well(plate, folder).files == {"objects.csv": "reused", "summary.json": "reused"}
    (folder / "summary.json").write_text(json.dumps({"well": "B03", "n_objects": 9}))
    assert publish_well(plate, folder).files["summary.json"] == "replaced"
    with OmeroSession(omero_server.params) as session:
        derived = ensure_derived_plate(session, plate)
        records = session.file_annotations("well", derived.wells["B03"], NS_RESULTS)
        assert sorted(r.name for r in records) == ["objects.csv", "summary.json"]  # one each
        assert json.loads(_annotations(session, "well", derived.wells["B03"])["summary.json"])["n_objects"] == 9
    if omero_server.kind == "standin":  # the old file is deleted with its annotation
        assert omero_server.server.query("SELECT COUNT(*) FROM original_file WHERE name = 'summary.json'") == [(1,)]


def test_backend_paths_name_plate_well_and_image(omero_server, tmp_path: Path) -> None:
    plate = _plate(omero_server, wells=("B03",))
    publish_well(plate, _well_outputs(tmp_path / "B03", "B03", 1))
    backend = OmeroLocalBackend(plate)
    root = plate.root
    backend.write_bytes(b"a\tb\n1\t2\n", f"{root}/B03/B03_s001_cells.tsv")
    backend.write_bytes(b"notes", f"{root}/run.txt")
    assert backend.read_bytes(f"{root}/B03/B03_s001_cells.tsv") == b"a\tb\n1\t2\n"
    assert backend.exists(f"{root}/run.txt") and not backend.exists(f"{root}/other.txt")
    with OmeroSession(omero_server.params) as session:
        derived = ensure_derived_plate(session, plate)
        image_id = session.well_samples(derived.wells["B03"])[0].image_id
        assert set(_annotations(session, "image", image_id)) == {"B03_s001_cells.tsv"}
        assert "run.txt" in _annotations(session, "plate", derived.plate_id)
    with pytest.raises(OmeroNotFoundError, match="does not exist"):
        backend.write_bytes(b"x", f"{root}/B03/B03_s009_cells.tsv")  # no such field
    with pytest.raises(ValueError, match="FileAnnotations"):
        backend.write_bytes(b"x", f"{root}/B03/picture.png")
    backend.close()
