"""Images and files in a local (or network-mounted) folder; TIFF for images; every write atomic."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from openhcs_rules.core.files import atomic_path, atomic_write_bytes
from openhcs_rules.errors import ImageReadError
from openhcs_rules.io.base import StorageBackend


class DiskBackend(StorageBackend):
    name = "disk"

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
