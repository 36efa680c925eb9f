"""One interface for every place images live: a folder, memory, or a server (virtual paths).

Paths are strings. For the disk backend they are real file paths; for the memory backend they are dict
keys; for a :class:`VirtualBackend` (OMERO) they look like paths (``/omero/plate_1/A01/A01_s001_w1_z001_t001.tif``)
but never exist on disk: they are generated from the plate structure and resolved to server calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from openhcs_rules.plate.model import ImageKey, PlateStructure


class StorageBackend(ABC):
    """Read and write images and small files by path."""

    name: str = "abstract"

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
