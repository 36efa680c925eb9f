"""Our OME-Zarr writer against ome-zarr-py's reader and our own OME-Zarr input handler."""

import numpy as np

from openhcs_rules.formats.ome_zarr import OmeZarrHandler
from openhcs_rules.io.zarr_plate import FieldData, assemble_plate_zarr, write_well_images
from openhcs_rules.plate.model import ChannelInfo, PlateStructure


def _write(tmp_path):
    rng = np.random.default_rng(1)
    fields = {}
    for well in ("B02", "C03"):
        data = {
            f: FieldData(
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
