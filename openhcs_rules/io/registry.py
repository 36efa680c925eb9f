"""Backends by name, so configs and format handlers can say 'disk' or 'zarr' rather than import classes."""

from __future__ import annotations

from collections.abc import Callable

from openhcs_rules.io.base import StorageBackend

_BACKENDS: dict[str, Callable[[], StorageBackend]] = {}


def register_backend(name: str, factory: Callable[[], StorageBackend]) -> None:
    _BACKENDS[name] = factory


def get_backend(name: str) -> StorageBackend:
    if name not in _BACKENDS:
        raise KeyError(f"unknown storage backend {name!r}; known: {', '.join(sorted(_BACKENDS))}")
    return _BACKENDS[name]()


def _register_builtins() -> None:
    from openhcs_rules.io.disk import DiskBackend
    from openhcs_rules.io.memory import MemoryBackend

    register_backend("disk", DiskBackend)
    register_backend("memory", MemoryBackend)


_register_builtins()
