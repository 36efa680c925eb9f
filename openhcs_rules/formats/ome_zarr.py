"""OME-Zarr (NGFF 0.4 on zarr v2, 0.5 on zarr v3) HCS plates as input.

Reads the plate/well/multiscales metadata (never the pixels) at discovery and addresses each plane as
``<row>/<col>/<field>/<level 0>`` plus its (t, c, z) index, so a plate this package wrote reads back
with the same wells, sites, channels, z and t, and identical pixels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from openhcs_rules.errors import FormatError, ImageReadError
from openhcs_rules.formats.base import FormatHandler
from openhcs_rules.plate.model import ChannelInfo, ImageKey, ImageStructure, PlateStructure, build_wells
from openhcs_rules.plate.naming import well_name


def _attributes(folder: Path) -> dict[str, Any] | None:
    """NGFF attributes of a group: zarr v3 ``zarr.json`` -> attributes.ome, or zarr v2 ``.zattrs``."""
    v3 = folder / "zarr.json"
    if v3.is_file():
        attrs = json.loads(v3.read_text()).get("attributes", {})
        return attrs.get("ome", attrs)
    v2 = folder / ".zattrs"
    if v2.is_file():
        return json.loads(v2.read_text())
    return None


class OmeZarrHandler(FormatHandler):
    name: ClassVar[str] = "ome_zarr"
    compatible_backends: ClassVar[tuple[str, ...]] = ("zarr", "disk")

    @classmethod
    def detect(cls, root: Path) -> bool:
        try:
            attrs = _attributes(Path(root))
        except (OSError, ValueError):
            return False
        return bool(attrs and "plate" in attrs)

    def parse(self, root: Path, plate_name: str | None = None) -> PlateStructure:
        root = Path(root)
        attrs = _attributes(root)
        if not attrs or "plate" not in attrs:
            raise FormatError(f"{root}: no OME-Zarr plate metadata (zarr.json attributes.ome.plate or .zattrs)")
        plate_meta = attrs["plate"]
        rows = [r["name"] for r in plate_meta["rows"]]
        columns = [c["name"] for c in plate_meta["columns"]]
        images: list[ImageStructure] = []
        channels: list[ChannelInfo] = []
        pixel_size = z_step = None
        shape = dtype = None
        for well in plate_meta["wells"]:
            well_path = well["path"]
            row_idx = well.get("rowIndex", rows.index(well_path.split("/")[0]))
            col_idx = well.get("columnIndex", columns.index(well_path.split("/")[1]))
            name = well_name(row_idx, col_idx)
            well_attrs = _attributes(root / well_path) or {}
            fields = [img["path"] for img in well_attrs.get("well", {}).get("images", [])]
            if not fields:
                raise FormatError(f"{root / well_path}: well has no 'well.images' metadata")
            for site, field in enumerate(fields, start=1):
                field_dir = root / well_path / field
                field_attrs = _attributes(field_dir) or {}
                multiscales = field_attrs.get("multiscales")
                if not multiscales:
                    raise FormatError(f"{field_dir}: field has no multiscales metadata")
                ms = multiscales[0]
                axes = [a["name"] if isinstance(a, dict) else a for a in ms.get("axes", ["t", "c", "z", "y", "x"])]
                dataset = ms["datasets"][0]
                array_meta = self._array_meta(field_dir / dataset["path"])
                shape = tuple(array_meta["shape"][-2:])
                dtype = array_meta["dtype"]
                scale = next(
                    (t["scale"] for t in dataset.get("coordinateTransformations", []) if t.get("type") == "scale"), None
                )
                if scale and pixel_size is None:
                    pixel_size = float(scale[axes.index("x")]) if "x" in axes else None
                    z_step = float(scale[axes.index("z")]) if "z" in axes else None
                if not channels:
                    labels = [c.get("label") for c in field_attrs.get("omero", {}).get("channels", [])]
                    n_c = array_meta["shape"][axes.index("c")] if "c" in axes else 1
                    channels = [
                        ChannelInfo(i + 1, labels[i] if i < len(labels) and labels[i] else f"c{i + 1}")
                        for i in range(n_c)
                    ]
                images.extend(
                    self._planes(name, site, f"{well_path}/{field}/{dataset['path']}", axes, array_meta["shape"])
                )
        return PlateStructure(
            name=plate_name or plate_meta.get("name") or root.name.removesuffix(".zarr").removesuffix(".ome"),
            format=self.name,
            root=str(root.resolve()),
            rows=len(rows),
            columns=len(columns),
            channels=channels,
            wells=build_wells(images),
            image_shape=shape,
            dtype=dtype,
            pixel_size_um=pixel_size,
            z_step_um=z_step,
        )

    @staticmethod
    def _array_meta(path: Path) -> dict[str, Any]:
        v3 = path / "zarr.json"
        if v3.is_file():
            meta = json.loads(v3.read_text())
            return {"shape": meta["shape"], "dtype": str(np.dtype(meta["data_type"]))}
        v2 = path / ".zarray"
        if v2.is_file():
            meta = json.loads(v2.read_text())
            return {"shape": meta["shape"], "dtype": str(np.dtype(meta["dtype"]))}
        raise FormatError(f"{path}: the multiscales dataset is not a zarr array")

    @staticmethod
    def _planes(well: str, site: int, source: str, axes: list[str], shape: list[int]) -> list[ImageStructure]:
        lead = axes[:-2]
        sizes = {a: shape[i] for i, a in enumerate(lead)}
        planes = []
        for t in range(sizes.get("t", 1)):
            for c in range(sizes.get("c", 1)):
                for z in range(sizes.get("z", 1)):
                    position = {"t": t, "c": c, "z": z}
                    index = tuple(position.get(a, 0) for a in lead)
                    planes.append(ImageStructure(ImageKey(well, site, c + 1, z + 1, t + 1), source, index))
        return planes

    def read_plane(self, plate: PlateStructure, image: ImageStructure) -> np.ndarray:
        import zarr

        path = Path(plate.root) / image.source
        try:
            array = zarr.open_array(store=str(path), mode="r")
            return np.asarray(array[tuple(image.index or ())])
        except Exception as exc:  # noqa: BLE001 - zarr/codec errors have many types
            raise ImageReadError(
                f"{path} plane {image.index}: cannot read ({exc}); the store is incomplete "
                "or corrupt: rewrite it or rerun the job that produced it"
            ) from exc
