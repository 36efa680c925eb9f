"""Images and files held in a dict: for tests and for passing planes between steps without I/O."""

from __future__ import annotations

import numpy as np

from openhcs_rules.errors import ImageReadError
from openhcs_rules.io.base import StorageBackend


class MemoryBackend(StorageBackend):
    name = "memory"

    def __init__(self) -> None:
        self._store: dict[str, np.ndarray | bytes] = {}

    def exists(self, path: str) -> bool:
        return path in self._store

    def list_files(self, directory: str, suffix: str | None = None) -> list[str]:
        prefix = directory.rstrip("/") + "/"
        return sorted(
            p
            for p in self._store
            if p.startswith(prefix) and "/" not in p[len(prefix) :] and (suffix is None or p.endswith(suffix))
        )

    def load_image(self, path: str) -> np.ndarray:
        value = self._store.get(path)
        if not isinstance(value, np.ndarray):
            raise ImageReadError(f"{path}: no image stored at this path")
        return value.copy()

    def save_image(self, array: np.ndarray, path: str) -> None:
        self._store[path] = np.array(array, copy=True)

    def read_bytes(self, path: str) -> bytes:
        value = self._store.get(path)
        if not isinstance(value, bytes):
            raise FileNotFoundError(path)
        return value

    def write_bytes(self, data: bytes, path: str) -> None:
        self._store[path] = bytes(data)
