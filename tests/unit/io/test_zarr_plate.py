"""Our OME-Zarr writer against ome-zarr-py's reader, our own OME-Zarr input handler and ome-zarr-models."""

import json

import numpy as np

from openhcs_rules.formats.ome_zarr import OmeZarrHandler
from openhcs_rules.io.well_folder import Field
from openhcs_rules.io.zarr_plate import assemble_plate_zarr, write_well_images
from openhcs_rules.plate.model import ChannelInfo, PlateStructure
from openhcs_rules_testkit.ngff import assert_valid_ngff_plate


def _write(tmp_path):
    rng = np.random.default_rng(1)
    fields = {}
    for well in ("B02", "C03"):
        data = {
            f: Field(
                rng.random((1, 2, 3, 64, 48), dtype=np.float32), rng.integers(0, 9, (1, 3, 64, 48)).astype(np.int32)
            )
            for f in (0, 1)
        }
        write_well_images(tmp_path / well, data, pyramid_levels=2)
        fields[well] = data
    plate = PlateStructure(
        "screen1",
        "imagexpress",
        "/x",
        8,
        12,
        [ChannelInfo(1, "DAPI"), ChannelInfo(2, "FITC")],
        {},
        pixel_size_um=0.65,
        z_step_um=2.0,
    )
    assemble_plate_zarr(tmp_path / "plate.ome.zarr", plate, {w: tmp_path / w for w in fields}, ["DAPI", "FITC"])
    return tmp_path / "plate.ome.zarr", fields


def test_plate_reads_back_identically_through_our_handler(tmp_path):
    path, fields = _write(tmp_path)
    handler = OmeZarrHandler()
    assert OmeZarrHandler.detect(path)
    plate = handler.parse(path)
    assert plate.well_names == ["B02", "C03"]
    assert plate.sites == [1, 2] and plate.channel_indices == [1, 2] and plate.z_planes == [1, 2, 3]
    assert [c.name for c in plate.channels] == ["DAPI", "FITC"]
    assert plate.pixel_size_um == 0.65 and plate.z_step_um == 2.0 and (plate.rows, plate.columns) == (8, 12)
    for image in plate.images():
        k = image.key
        expected = fields[k.well][k.site - 1].image[k.t - 1, k.channel - 1, k.z - 1]
        np.testing.assert_array_equal(handler.read_plane(plate, image), expected)


def test_ome_zarr_py_reads_plate_wells_pyramid_and_labels(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    path, _ = _write(tmp_path)
    plate_node = next(iter(Reader(parse_url(str(path)))()))
    assert plate_node.metadata["channel_names"] == ["DAPI", "FITC"]
    image_nodes = list(Reader(parse_url(str(path / "B" / "2" / "1")))())
    multiscale = image_nodes[0]
    assert [tuple(level.shape) for level in multiscale.data] == [(1, 2, 3, 64, 48), (1, 2, 3, 32, 24)]
    spec_names = {type(spec).__name__ for node in image_nodes for spec in node.specs}
    assert "Label" in spec_names  # the nuclei labels are found through the image's labels group


def test_well_outputs_are_not_modified_by_assembly(tmp_path):
    path, _ = _write(tmp_path)
    well_meta = (tmp_path / "B02" / "0" / "zarr.json").read_text()
    assert "multiscales" not in well_meta  # plate metadata went into copies, not into the well job's files
    assert "multiscales" in (path / "B" / "2" / "0" / "zarr.json").read_text()


def test_plate_is_valid_ngff_0_5_for_ome_zarr_models(tmp_path):
    """Strict NGFF 0.5: arrays carry dimension_names equal to the axes, labels groups carry ome.version."""
    path, _ = _write(tmp_path)
    assert assert_valid_ngff_plate(path) == {"wells": 2, "images": 4, "labels": 4}
    for array in ("B/2/0/0", "B/2/0/1", "B/2/0/labels/nuclei/0", "C/3/1/labels/nuclei/1"):
        assert json.loads((path / array / "zarr.json").read_text())["dimension_names"] == ["t", "c", "z", "y", "x"]
    labels = json.loads((path / "B" / "2" / "0" / "labels" / "zarr.json").read_text())["attributes"]["ome"]
    assert labels == {"version": "0.5", "labels": ["nuclei"]}


def test_well_job_fields_with_metadata_are_valid_ngff_images(tmp_path):
    """A field whose metadata the well job wrote is already a valid NGFF image before assembly."""
    import zarr

    from openhcs_rules.io.zarr_plate import FieldDescription, open_well_group, write_field
    from openhcs_rules_testkit.ngff import assert_valid_ngff_image

    rng = np.random.default_rng(2)
    data = Field(rng.random((1, 2, 1, 32, 32), dtype=np.float32), rng.integers(0, 5, (1, 1, 32, 32)))
    root = open_well_group(tmp_path / "images.zarr")
    write_field(root, 0, data, pyramid_levels=2, describe=FieldDescription("p", "B02", ["DAPI", "FITC"]))
    field = zarr.open_group(store=str(tmp_path / "images.zarr" / "0"), mode="r", zarr_format=3)
    assert assert_valid_ngff_image(field, "B02/0") == 1


def _strip_to_old_layout(well_dir):
    """A well as well jobs wrote it before strict NGFF 0.5: no dimension_names, labels group without ome.version."""
    for meta in well_dir.rglob("zarr.json"):
        document = json.loads(meta.read_text())
        document.pop("dimension_names", None)
        if meta.parent.name == "labels":
            document["attributes"].get("ome", {}).pop("version", None)
        meta.write_text(json.dumps(document))


def test_wells_written_before_strict_ngff_still_assemble_into_a_valid_plate(tmp_path):
    """A rerun skips such wells (same run key); assembly completes the plate's copies, not the wells' files."""
    import zarr

    from openhcs_rules.io.zarr_plate import FieldDescription, write_field

    _write(tmp_path)  # wells B02 and C03, without field metadata
    data = Field(np.ones((1, 2, 3, 16, 16), np.float32), np.ones((1, 3, 16, 16), np.int32))
    described = zarr.open_group(store=str(tmp_path / "D04"), mode="w", zarr_format=3)  # as big jobs write them
    write_field(described, 0, data, 2, FieldDescription("screen1", "D04", ["DAPI", "FITC"]))
    for well in ("B02", "D04"):
        _strip_to_old_layout(tmp_path / well)
    before = {p: p.read_bytes() for well in ("B02", "D04") for p in (tmp_path / well).rglob("zarr.json")}
    plate = PlateStructure("screen1", "imagexpress", "/x", 8, 12, [ChannelInfo(1, "DAPI"), ChannelInfo(2, "FITC")], {})
    dirs = {w: tmp_path / w for w in ("B02", "C03", "D04")}
    assemble_plate_zarr(tmp_path / "again.ome.zarr", plate, dirs, ["DAPI", "FITC"])
    assert assert_valid_ngff_plate(tmp_path / "again.ome.zarr") == {"wells": 3, "images": 5, "labels": 5}
    assert {p: p.read_bytes() for p in before} == before  # the wells' own files are untouched
