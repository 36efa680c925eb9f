"""Validate written OME-Zarr plates against NGFF 0.5 with ome-zarr-models (the specification as code).

Our own reader and ome-zarr-py's are lenient: a plate they read can still be invalid NGFF (arrays without
``dimension_names``, a labels group without ``ome.version``), which stricter tools refuse. So every plate the
tests write is also checked here, node by node, with ome-zarr-models' pydantic models, and with its
``open_ome_zarr`` entry point the way its CLI (``ome-zarr-models validate``) does: validation warnings are
errors.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


def _open(path: Path) -> Any:
    import zarr

    return zarr.open_group(store=str(path), mode="r", zarr_format=3)


def assert_valid_ngff_image(group: Any, where: str) -> int:
    """Validate one field image, its ``labels`` group and each label image; return how many labels it has."""
    from ome_zarr_models.v05 import Image, ImageLabel, Labels

    image = Image.from_zarr(group)
    names = tuple(axis.name for axis in image.ome_attributes.multiscales[0].axes)
    for dataset in image.datasets[0]:
        assert group[dataset.path].metadata.dimension_names == names, f"{where}/{dataset.path}: dimension_names"
    if "labels" not in group.group_keys():
        return 0
    labels = Labels.from_zarr(group["labels"])
    for name in labels.label_paths:
        label = ImageLabel.from_zarr(group["labels"][name])
        assert label.ome_attributes.image_label is not None, f"{where}/labels/{name}: no image-label metadata"
    return len(labels.label_paths)


def assert_valid_ngff_plate(path: str | Path) -> dict[str, int]:
    """Fail unless ``path`` is a valid NGFF 0.5 HCS plate: the plate, every well, field image and labels group.

    Returns counts (wells, images, labels) so a caller can check that validation did not pass vacuously.
    """
    import ome_zarr_models
    from ome_zarr_models.exceptions import ValidationWarning
    from ome_zarr_models.v05 import HCS, Well

    root = _open(Path(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ValidationWarning)  # as ``ome-zarr-models validate`` does
        assert isinstance(ome_zarr_models.open_ome_zarr(root, version="0.5"), HCS), f"{path}: not an HCS plate"
        hcs = HCS.from_zarr(root)
        counts = {"wells": 0, "images": 0, "labels": 0}
        for well_meta in hcs.ome_attributes.plate.wells:
            assert well_meta.path in root, f"{path}: well {well_meta.path} is listed but missing"
            well = Well.from_zarr(root[well_meta.path])
            counts["wells"] += 1
            for image_meta in well.ome_attributes.well.images:
                where = f"{path}/{well_meta.path}/{image_meta.path}"
                counts["labels"] += assert_valid_ngff_image(root[f"{well_meta.path}/{image_meta.path}"], where)
                counts["images"] += 1
    assert counts["wells"] and counts["images"], f"{path}: no wells or no images to validate"
    return counts
