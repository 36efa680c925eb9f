"""One interface for every place images live: a folder, memory, or a server (virtual paths).

Jobs take one path through it, whatever the plate's format: :meth:`StorageBackend.load_plane` reads a
plate's planes, :meth:`~StorageBackend.well_folder` gives the well's output folder (images, label images,
objects.csv, summary.json: see :mod:`openhcs_rules.io.well_folder`), :meth:`~StorageBackend.save_well`
and :meth:`~StorageBackend.save_plate` hand a finished well's or plate's results to the backend, and
:meth:`~StorageBackend.assemble_images` gathers the wells' images for the plate. Which backend a plate
gets is :func:`openhcs_rules.io.registry.backend_for`: one its format names as compatible.

Paths are strings. For the disk backend they are real file paths; for the memory backend they are dict
keys; for a :class:`VirtualBackend` (OMERO) they look like paths (``/omero/plate_1/A01/A01_s001_w1_z001_t001.tif``)
but never exist on disk: they are generated from the plate structure and resolved to server calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from openhcs_rules.plate.model import ImageKey, ImageStructure, PlateStructure

if TYPE_CHECKING:
    from openhcs_rules.io.well_folder import WellFolder


class StorageBackend(ABC):
    """Read and write images and small files by path; the jobs' way in and out (see the module's text)."""

    name: str = "abstract"
    #: how the well folders written through this backend store their images ('zarr' or 'disk')
    layout: str = "disk"

    # -- what the jobs call ----------------------------------------------------------------------------------
    def load_plane(self, plate: PlateStructure, image: ImageStructure) -> np.ndarray:
        """One 2D plane of ``plate``, read by the handler of the plate's format."""
        from openhcs_rules.formats.registry import read_plane

        return read_plane(plate, image)

    def well_folder(self, path: str | Path, well: str | None = None) -> WellFolder:
        """The output folder of one well, in this backend's image layout."""
        from openhcs_rules.io.well_folder import WellFolder

        return WellFolder(path, self.layout, well)

    def save_well(self, plate: PlateStructure, folder: WellFolder) -> None:
        """Called once the well's folder is complete; local backends have nothing more to do."""
        return None

    def assemble_images(self, plate: PlateStructure, folders: dict[str, WellFolder], out_dir: Path) -> None:
        """Gather the wells' images under the plate's results folder ``out_dir``."""
        raise NotImplementedError(f"the {self.name} backend does not assemble plates")

    def save_plate(self, plate: PlateStructure, out_dir: Path) -> None:
        """Called once the plate's tables are written under ``out_dir``; local backends have nothing to do."""
        return None

    def close(self) -> None:
        """Release connections (nothing to release for local backends)."""
        return None

    # -- paths -----------------------------------------------------------------------------------------------

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def list_files(self, directory: str, suffix: str | None = None) -> list[str]: ...

    @abstractmethod
    def load_image(self, path: str) -> np.ndarray: ...

    @abstractmethod
    def save_image(self, array: np.ndarray, path: str) -> None:
        """Write atomically: a reader never sees a half-written image."""

    @abstractmethod
    def read_bytes(self, path: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, data: bytes, path: str) -> None: ...


class VirtualBackend(StorageBackend):
    """A backend whose paths are generated from a plate structure rather than listed from storage.

    Subclasses (the OMERO backend) resolve a virtual path to the plane it names and implement
    :meth:`read_plane` / :meth:`write_plane`; listing and naming work from the cached structure alone,
    so discovery costs no per-file calls.
    """

    def __init__(self, plate: PlateStructure, prefix: str) -> None:
        self.plate = plate
        self.prefix = prefix.rstrip("/")

    def generate_filename(self, key: ImageKey) -> str:
        return f"{self.prefix}/{key.well}/{key.virtual_filename}"

    def parse_filename(self, path: str) -> ImageKey:
        from openhcs_rules.plate.naming import parse_virtual_filename

        if not path.startswith(self.prefix + "/"):
            raise FileNotFoundError(f"{path} is not under {self.prefix}")
        parts = parse_virtual_filename(path.rsplit("/", 1)[-1])
        return ImageKey(str(parts["well"]), int(parts["site"]), int(parts["channel"]), int(parts["z"]), int(parts["t"]))

    def list_files(self, directory: str, suffix: str | None = None) -> list[str]:
        directory = directory.rstrip("/")
        names = [self.generate_filename(image.key) for image in self.plate.images()]
        return [n for n in names if n.startswith(directory + "/") and (suffix is None or n.endswith(suffix))]

    def exists(self, path: str) -> bool:
        try:
            key = self.parse_filename(path)
        except (FileNotFoundError, ValueError):
            return False
        well = self.plate.wells.get(key.well)
        return well is not None and any(image.key == key for image in well.images)

    def load_image(self, path: str) -> np.ndarray:
        return self.read_plane(self.parse_filename(path))

    def save_image(self, array: np.ndarray, path: str) -> None:
        self.write_plane(self.parse_filename(path), array)

    @abstractmethod
    def read_plane(self, key: ImageKey) -> np.ndarray: ...

    @abstractmethod
    def write_plane(self, key: ImageKey, array: np.ndarray) -> None: ...
