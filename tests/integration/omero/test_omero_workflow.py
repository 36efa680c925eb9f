"""An OMERO plate through the same jobs as a disk plate: discover, illumination, process_well, assemble.

The same synthetic plate is run twice — from its folder, and imported into the (stand-in) server — and
the per-well results must agree; the OMERO run must also leave a complete derived plate with its tables.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from openhcs_rules.demo.synthetic import generate_imagexpress_plate
from openhcs_rules.formats.omero import OmeroFormatHandler
from openhcs_rules.formats.registry import read_plane, register_handler
from openhcs_rules.io.omero_local import publish_plate, publish_well
from openhcs_rules.jobs.assemble import assemble_plate
from openhcs_rules.jobs.discover import discover
from openhcs_rules.jobs.illumination import estimate_plate_illumination
from openhcs_rules.jobs.process_well import process_well
from openhcs_rules.omero.adapter import OmeroSession
from openhcs_rules.omero.annotations import NS_RESULTS
from openhcs_rules.omero.derived import ensure_derived_plate
from openhcs_rules.plate.model import PlateStructure
from openhcs_rules_testkit.paths import PIPELINE

pytest_plugins = ["openhcs_rules_testkit.omero_standin.fixtures"]

WELLS = ["B02", "C03"]


def _run(plate_json: Path, out: Path, omero: bool) -> list[dict[str, str]]:
    """What the workflow's rules do, in order (publishing only for OMERO plates)."""
    plate = PlateStructure.load_json(plate_json)
    estimate_plate_illumination(plate, out / "illumination.npz", 16)
    for well in plate.well_names:
        well_dir = out / "wells" / well
        process_well(plate_json, well, PIPELINE, well_dir, out / "illumination.npz", None, "numpy", "disk", 1)
        if omero:
            publish_well(plate_json, well_dir)
    assemble_plate(plate_json, out / "wells", out, backend="disk")
    if omero:
        publish_plate(plate_json, out)
    with open(out / "wells.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.workflow
def test_omero_plate_runs_through_the_same_jobs_as_a_disk_plate(omero_server, tmp_path: Path) -> None:
    register_handler(OmeroFormatHandler)  # the integrator's registry line
    made = generate_imagexpress_plate(
        tmp_path / "disk_plate", "demo", wells=WELLS, sites=2, channels=2, z_planes=2, shape=(128, 128)
    )
    disk_json = tmp_path / "disk" / "plate.json"
    disk_plate = discover("demo", made["plate_dir"], disk_json)

    # "import" the same pixels into OMERO: one image per field, (t, c, z, y, x)
    fields = {}
    for well in disk_plate.well_names:
        fields[well] = []
        for site in disk_plate.wells[well].sites:
            images = [i for i in disk_plate.wells[well].images if i.key.site == site]
            shape = (max(i.key.t for i in images), max(i.key.channel for i in images), max(i.key.z for i in images))
            stack = np.zeros((*shape, 128, 128), dtype=np.uint16)
            for image in images:
                k = image.key
                stack[k.t - 1, k.channel - 1, k.z - 1] = read_plane(disk_plate, image)
            fields[well].append(stack)
    names = [c.name for c in disk_plate.channels]
    imported = omero_server.import_plate("demo", 8, 12, fields, channel_names=names, pixel_size_um=0.65)

    omero_json = tmp_path / "omero" / "plate.json"
    url = omero_server.params.plate_url(imported.plate_id)
    omero_plate = discover("demo", url, omero_json, "omero")
    assert omero_plate.format == "omero" and omero_plate.well_names == disk_plate.well_names

    disk_rows = _run(disk_json, tmp_path / "disk", omero=False)
    omero_rows = _run(omero_json, tmp_path / "omero", omero=True)
    keys = ["Metadata_Well", "Metadata_Sites", "Nuclei_Count", "Nuclei_AreaShape_Area"]
    assert [{k: r[k] for k in keys} for r in omero_rows] == [{k: r[k] for k in keys} for r in disk_rows]
    assert all(int(r["Nuclei_Count"]) > 0 for r in omero_rows)

    with OmeroSession(omero_server.params) as session:
        derived = ensure_derived_plate(session, omero_plate)
        for well in WELLS:
            samples = session.well_samples(derived.wells[well])
            assert [s.image_name for s in samples] == [f"{well}_s001", f"{well}_s002"]
            files = {r.name for r in session.file_annotations("well", derived.wells[well], NS_RESULTS)}
            assert files == {"objects.csv", "summary.json"}
        plate_files = {r.name for r in session.file_annotations("plate", derived.plate_id, NS_RESULTS)}
        tables = {"objects.csv", "wells.csv", "images.csv", "flagged_images.csv", "assay_quality.csv"}
        assert plate_files == tables  # CSV, not Parquet, on OMERO
    # a rerun of everything changes nothing on the server
    if omero_server.kind == "standin":
        before = (
            omero_server.server.query("SELECT COUNT(*) FROM image"),
            omero_server.server.query("SELECT COUNT(*) FROM annotation"),
        )
        for well in WELLS:
            assert {s.action for s in publish_well(omero_json, tmp_path / "omero" / "wells" / well).sites} == {"reused"}
        publish_plate(omero_json, tmp_path / "omero")
        after = (
            omero_server.server.query("SELECT COUNT(*) FROM image"),
            omero_server.server.query("SELECT COUNT(*) FROM annotation"),
        )
        assert before == after
