"""Backends by name, and which backend a plate's jobs use (:func:`backend_for`)."""

from __future__ import annotations

from collections.abc import Callable

from openhcs_rules.errors import ConfigError
from openhcs_rules.io.base import StorageBackend
from openhcs_rules.plate.model import PlateStructure

#: a factory gets the plate (None where a backend is made without one) and the local image layout
BackendFactory = Callable[[PlateStructure | None, str], StorageBackend]
_BACKENDS: dict[str, BackendFactory] = {}


def register_backend(name: str, factory: BackendFactory) -> None:
    _BACKENDS[name] = factory


def get_backend(name: str, plate: PlateStructure | None = None, layout: str = "zarr") -> StorageBackend:
    if name not in _BACKENDS:
        raise KeyError(f"unknown storage backend {name!r}; known: {', '.join(sorted(_BACKENDS))}")
    return _BACKENDS[name](plate, layout)


def backend_for(plate: PlateStructure, requested: str = "zarr") -> StorageBackend:
    """The backend a plate's jobs read and write through: ``requested`` (``output.backend``) when the plate's
    format names it as compatible, else the format's own backend, which keeps ``requested`` as the layout of
    the local well folders (an OMERO plate always gets ``omero_local``, whatever ``output.backend`` says)."""
    from openhcs_rules.formats.registry import handler_for
    from openhcs_rules.io.well_folder import IMAGE_FOLDERS

    compatible = handler_for(plate.format).compatible_backends
    if requested in compatible:
        return get_backend(requested, plate, requested)
    if requested not in IMAGE_FOLDERS:
        raise ConfigError(
            f"output backend {requested!r} cannot hold results of {plate.format} plate {plate.name}: "
            f"use one of {', '.join(IMAGE_FOLDERS)}"
        )
    return get_backend(compatible[0], plate, requested)


def _omero_local(plate: PlateStructure | None, layout: str) -> StorageBackend:
    from openhcs_rules.io.omero_local import OmeroLocalBackend

    if plate is None:
        raise ValueError("the omero_local backend needs the OMERO plate's structure")
    return OmeroLocalBackend(plate, layout=layout)


def _register_builtins() -> None:
    from openhcs_rules.io.disk import DiskBackend, ZarrBackend
    from openhcs_rules.io.memory import MemoryBackend

    register_backend("disk", lambda plate, layout: DiskBackend())
    register_backend("zarr", lambda plate, layout: ZarrBackend())
    register_backend("memory", lambda plate, layout: MemoryBackend())
    register_backend("omero_local", _omero_local)  # imports no omero code until an OMERO plate asks


_register_builtins()
