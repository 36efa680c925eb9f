"""A `source: omero` plate through the real Snakemake CLI and the same rules as a disk plate.

The OMERO side is the stand-in server (or a live one with -m omero_live); the well jobs are separate
processes that reconnect from plate.json and read the password from the environment.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from openhcs_rules_testkit.workflow import snakemake, write_config

pytest_plugins = ["openhcs_rules_testkit.omero_standin.fixtures"]
pytestmark = pytest.mark.workflow


def test_omero_plate_runs_end_to_end_and_writes_back(omero_server, tmp_path):
    from openhcs_rules.omero.adapter import OmeroSession
    from openhcs_rules.omero.annotations import NS_RESULTS

    rng = np.random.default_rng(0)
    fields: dict[str, list[np.ndarray]] = {}
    for well in ("B02", "C03"):  # dim noise with 6 bright nuclei-sized blobs per field on the first channel
        fields[well] = []
        for _ in range(2):
            stack = rng.integers(90, 110, (1, 2, 1, 96, 96)).astype(np.uint16)
            for y, x in ((15, 15), (15, 60), (45, 30), (45, 80), (78, 20), (78, 70)):
                stack[0, 0, 0, y - 5 : y + 5, x - 5 : x + 5] = 4000
            fields[well].append(stack)
    imported = omero_server.import_plate("screen", 8, 12, fields, channel_names=["DAPI", "GFP"], pixel_size_um=0.65)
    params = omero_server.params
    config = write_config(
        tmp_path,
        {
            "plates": {"screen": {"source": "omero", "plate_id": imported.plate_id}},
            "omero": {
                "host": params.host,
                "port": params.port,
                "user": params.user,
                "password_env": "OMERO_PASSWORD",
                "data_dir": params.data_dir,
            },
            "output": {"backend": "zarr"},  # ignored for OMERO plates: results go back to OMERO
        },
    )
    # the jobs load the stand-in gateway (openhcs_rules_testkit) from the repository root, which
    # snakemake() puts first on PYTHONPATH
    done = snakemake(tmp_path, config)
    assert done.returncode == 0, done.stderr[-4000:]
    with open(tmp_path / "results" / "screen" / "wells.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["Metadata_Well"] for row in rows] == ["B02", "C03"] and all(
        int(row["Nuclei_Count"]) > 0 for row in rows
    )
    from openhcs_rules_testkit.omero_standin.data import STANDIN_PASSWORD

    assert STANDIN_PASSWORD not in (tmp_path / "results" / "screen" / "plate.json").read_text()  # only its env var

    from openhcs_rules.formats.omero import OmeroFormatHandler
    from openhcs_rules.omero.derived import ensure_derived_plate
    from openhcs_rules.plate.model import PlateStructure

    plate = PlateStructure.load_json(tmp_path / "results" / "screen" / "plate.json")
    assert plate.format == OmeroFormatHandler.name
    with OmeroSession(params) as session:
        derived = ensure_derived_plate(session, plate)
        for well in ("B02", "C03"):
            assert len(session.well_samples(derived.wells[well])) == 2  # one derived image per site, with data
        names = {r.name for r in session.file_annotations("plate", derived.plate_id, NS_RESULTS)}
        assert {"wells.csv", "objects.csv"} <= names
