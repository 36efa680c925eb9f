"""Images and files in a local (or network-mounted) folder; TIFF for images; every write atomic."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from openhcs_rules.core.files import atomic_path, atomic_write_bytes, remove_stale_temps
from openhcs_rules.errors import ImageReadError
from openhcs_rules.io.base import StorageBackend
from openhcs_rules.plate.model import PlateStructure

if TYPE_CHECKING:
    from openhcs_rules.io.well_folder import WellFolder


class DiskBackend(StorageBackend):
    """Well images as one TIFF per plane (``images/``); the plate's are hard links under ``images/<well>/``.

    With ``output.images: both`` a well's processed planes sit in ``images/processed/``, so the plate's are
    under ``images/<well>/processed/``, beside the raw planes of ``images/<well>/``.
    """

    name = "disk"
    layout = "disk"

    def assemble_images(self, plate: PlateStructure, folders: dict[str, WellFolder], out_dir: Path) -> None:
        from openhcs_rules.io.zarr_plate import link_tree

        with atomic_path(out_dir / "images") as tmp:
            tmp.mkdir()
            for well, folder in folders.items():
                link_tree(folder.images, tmp / well)

    def exists(self, path: str) -> bool:
        return Path(path).exists()

    def list_files(self, directory: str, suffix: str | None = None) -> list[str]:
        root = Path(directory)
        if not root.is_dir():
            return []
        return sorted(str(p) for p in root.iterdir() if p.is_file() and (suffix is None or p.name.endswith(suffix)))

    def load_image(self, path: str) -> np.ndarray:
        import tifffile

        try:
            return tifffile.imread(path)
        except FileNotFoundError:
            raise ImageReadError(f"{path}: image file is missing") from None
        except Exception as exc:  # noqa: BLE001 - tifffile/imagecodecs raise many types for bad files
            raise ImageReadError(f"{path}: cannot read TIFF ({exc}); the file is corrupt or truncated") from exc

    def save_image(self, array: np.ndarray, path: str) -> None:
        import tifffile

        with atomic_path(path, suffix=".tif") as tmp:
            tifffile.imwrite(tmp, np.asarray(array))

    def read_bytes(self, path: str) -> bytes:
        return Path(path).read_bytes()

    def write_bytes(self, data: bytes, path: str) -> None:
        atomic_write_bytes(path, data)


class ZarrBackend(DiskBackend):
    """Well images as a zarr v3 group per well (``images.zarr``); the plate's as one OME-Zarr plate.

    ``plate.ome.zarr`` holds each field's image as the wells kept it (``output.images``: raw or processed).
    With ``both``, the processed images make a second plate beside it, ``processed.ome.zarr``, of the same
    layout: an NGFF HCS field is one multiscales image (its labels aside), and a second image per field would
    be a second field (a different place in the well) or an acquisition (a different imaging run), both false.
    """

    name = "zarr"
    layout = "zarr"

    def assemble_images(self, plate: PlateStructure, folders: dict[str, WellFolder], out_dir: Path) -> None:
        from openhcs_rules.io.zarr_plate import PROCESSED_PLATE, assemble_plate_zarr

        names = [plate.channel(i).name for i in plate.channel_indices]
        assemble_plate_zarr(out_dir / "plate.ome.zarr", plate, {w: f.images for w, f in folders.items()}, names)
        processed = out_dir / PROCESSED_PLATE
        remove_stale_temps(processed)  # a killed assembly's temporary; this job owns the plate's images
        wells = {w: f.processed_images for w, f in folders.items() if f.has_processed_images()}
        if wells:
            assemble_plate_zarr(processed, plate, wells, names)
        elif processed.is_dir():  # from a run with ``both``: it would no longer match plate.ome.zarr
            shutil.rmtree(processed)
