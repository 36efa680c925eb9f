"""Our NGFF metadata writer (plain zarr attributes) against ome-zarr-py's, file by file, and without its imports.

zarr_plate writes the plate, well, multiscales, omero and label blocks itself instead of through ome-zarr-py
(which imports dask). The references below are the calls the module made before, so any difference in the
written ``zarr.json`` files, key order included, fails here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openhcs_rules.io.well_folder import Field
from openhcs_rules.io.zarr_plate import (
    _AXES,
    LABEL_NAME,
    NGFF_VERSION,
    FieldDescription,
    _channel_metadata,
    _datasets,
    assemble_plate_zarr,
    open_well_group,
    write_field,
    write_field_metadata,
)
from openhcs_rules.plate.model import ChannelInfo, PlateStructure
from openhcs_rules.plate.naming import parse_well_name, row_name
from openhcs_rules_testkit.ngff import assert_valid_ngff_plate

CHANNELS = ["DAPI", "FITC"]


def _reference_field_metadata(group: Any, field: str, describe: FieldDescription) -> None:
    """write_field_metadata as it was, through ome-zarr-py."""
    from ome_zarr.format import CurrentFormat
    from ome_zarr.writer import add_metadata, write_label_metadata, write_multiscales_metadata

    levels = sorted((k for k in group.array_keys() if k.isdigit()), key=int)
    coarse = group[levels[-1]]
    sample = np.asarray(coarse[0, :, coarse.shape[2] // 2])
    windows = [(float(np.percentile(p, 0.5)), float(np.percentile(p, 99.8))) for p in sample]
    pixel, z_step = describe.pixel_um, describe.z_step_um
    name = f"{describe.plate} {describe.well} field {field}"
    write_multiscales_metadata(group, _datasets(group, pixel, z_step), axes=_AXES, name=name)
    add_metadata(group, {"omero": _channel_metadata(describe.channel_names, windows)})
    if "labels" in group.group_keys():
        labels_group = group["labels"]
        label = labels_group[LABEL_NAME]
        write_multiscales_metadata(label, _datasets(label, pixel, z_step), axes=_AXES, name=LABEL_NAME)
        add_metadata(labels_group, {"version": CurrentFormat().version})
        write_label_metadata(labels_group, LABEL_NAME, source={"image": "../../"})


def _reference_plate_metadata(path: Path, plate: PlateStructure, wells: list[str]) -> None:
    """The plate's and wells' blocks as assemble_plate_zarr wrote them before, through ome-zarr-py."""
    import zarr
    from ome_zarr.writer import write_plate_metadata, write_well_metadata

    root = zarr.open_group(store=str(path), mode="r+", zarr_format=3)
    rows = [row_name(i) for i in range(plate.rows)]
    columns = [str(i + 1) for i in range(plate.columns)]
    paths = []
    for well in sorted(wells, key=parse_well_name):
        r, c = parse_well_name(well)
        paths.append(f"{rows[r]}/{columns[c]}")
        group = root[paths[-1]]
        assert isinstance(group, zarr.Group)
        fields = sorted((k for k in group.group_keys() if k.isdigit()), key=int)
        write_well_metadata(group, [{"path": f, "acquisition": 0} for f in fields])
    write_plate_metadata(
        root, rows, columns, paths, field_count=2, name=plate.name, acquisitions=[{"id": 0, "name": plate.name}]
    )


def _metadata_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("zarr.json"))}


def _field(seed: int, dtype: Any = np.uint16) -> Field:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 4000, (1, 2, 3, 64, 48)).astype(dtype)
    return Field(image, rng.integers(0, 9, (1, 1, 64, 48)).astype(np.int32))


def _plate() -> PlateStructure:
    channels = [ChannelInfo(1, "DAPI"), ChannelInfo(2, "FITC")]
    return PlateStructure("screen1", "imagexpress", "/x", 8, 12, channels, {}, pixel_size_um=0.65, z_step_um=2.0)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_field_metadata_is_what_ome_zarr_py_writes(tmp_path, dtype):
    describe = FieldDescription("screen1", "B02", CHANNELS, 0.65, 2.0)
    written = {}
    for name, writer in (("ours", write_field_metadata), ("ome_zarr_py", _reference_field_metadata)):
        root = open_well_group(tmp_path / name)
        write_field(root, 0, _field(1, dtype), pyramid_levels=3)
        writer(root["0"], "0", describe)
        written[name] = _metadata_files(tmp_path / name)
    assert written["ours"] == written["ome_zarr_py"]
    labels = json.loads(written["ours"]["0/labels/zarr.json"])["attributes"]["ome"]
    assert labels == {"version": NGFF_VERSION, "labels": [LABEL_NAME]}


def test_plate_and_well_metadata_are_what_ome_zarr_py_writes(tmp_path):
    wells = ["B02", "C03"]
    dirs = {}
    for index, well in enumerate(wells):
        folder = tmp_path / f"w{index}"
        root = open_well_group(folder)
        for field in (0, 1):
            write_field(root, field, _field(10 * index + field), 2)
        dirs[well] = folder
    plate = _plate()
    assemble_plate_zarr(tmp_path / "plate.ome.zarr", plate, dirs, CHANNELS)
    ours = _metadata_files(tmp_path / "plate.ome.zarr")
    shutil.copytree(tmp_path / "plate.ome.zarr", tmp_path / "reference.ome.zarr")
    _reference_plate_metadata(tmp_path / "reference.ome.zarr", plate, wells)
    assert _metadata_files(tmp_path / "reference.ome.zarr") == ours
    assert assert_valid_ngff_plate(tmp_path / "plate.ome.zarr") == {"wells": 2, "images": 4, "labels": 4}


def test_the_version_is_ome_zarr_py_s_current_format():
    from ome_zarr.format import CurrentFormat

    assert CurrentFormat().version == NGFF_VERSION


def _imported_after(code: str) -> set[str]:
    """The top-level packages a fresh interpreter has imported once ``code`` ran."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_assembling_a_plate_and_describing_fields_import_neither_ome_zarr_nor_dask(tmp_path):
    code = f"""
import numpy as np
from pathlib import Path
from openhcs_rules.io.well_folder import Field
from openhcs_rules.io.zarr_plate import FieldDescription, assemble_plate_zarr, open_well_group, write_field
from openhcs_rules.plate.model import ChannelInfo, PlateStructure
tmp = Path({str(tmp_path)!r})
field = Field(np.ones((1, 2, 1, 16, 16), np.uint16), np.ones((1, 1, 16, 16), np.int32))
write_field(open_well_group(tmp / "B02"), 0, field, 2, FieldDescription("p", "B02", ["a", "b"]))
write_field(open_well_group(tmp / "B03"), 0, field, 2)
plate = PlateStructure("p", "imagexpress", "/x", 8, 12, [ChannelInfo(1, "a"), ChannelInfo(2, "b")], {{}})
assemble_plate_zarr(tmp / "plate.ome.zarr", plate, {{"B02": tmp / "B02", "B03": tmp / "B03"}}, ["a", "b"])
"""
    imported = _imported_after(code)
    assert (tmp_path / "plate.ome.zarr" / "B" / "3" / "0" / "zarr.json").is_file()
    assert not imported & {"ome_zarr", "dask"}
