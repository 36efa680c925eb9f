"""``omero_local``: the OMERO storage backend, a :class:`VirtualBackend` over one plate.

Paths are virtual (``/omero/plate_123/A01/A01_s001_w1_z001_t001.tif``) and come from the cached plate
structure, so listing costs no server call. Reads go through the plate's :class:`PlaneReader` (direct from
the managed repository when readable, else the API). Writes go to the derived plate: planes are collected
per field and the field's image is created only once all of its planes are there, with its real data —
never a placeholder. Small result files (.json .csv .txt .tsv) become FileAnnotations on the object their
path names.

The backend pickles as its plate structure and options; a worker that unpickles it reconnects with the
parameters in the structure and its own password source.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from openhcs_rules.io.base import VirtualBackend
from openhcs_rules.omero.params import OmeroParams, virtual_root
from openhcs_rules.plate.model import ImageKey, ImageStructure, PlateStructure

log = logging.getLogger(__name__)


class OmeroLocalBackend(VirtualBackend):
    """Read an OMERO plate's planes and write its results to the derived plate."""

    name = "omero_local"

    def __init__(self, plate: PlateStructure, output: str | None = None, pixel_path: str = "auto") -> None:
        from openhcs_rules.omero.derived import DEFAULT_OUTPUT
        from openhcs_rules.omero.structure import plate_params

        params, plate_id = plate_params(plate)
        super().__init__(plate, virtual_root(plate_id))
        self.params: OmeroParams = params
        self.plate_id = plate_id
        self.output = output or DEFAULT_OUTPUT
        self.pixel_path = pixel_path
        self._init_state()

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._index: dict[ImageKey, ImageStructure] | None = None
        self._reader: Any = None
        self._session: Any = None
        self._derived: Any = None
        self._pending: dict[tuple[str, int], dict[ImageKey, np.ndarray]] = {}

    @classmethod
    def from_omero(
        cls, params: OmeroParams, plate_id: int, plate_name: str | None = None, **kwargs: Any
    ) -> OmeroLocalBackend:
        """Load (or take from the cache) the plate's structure with O(1) server calls, then build the backend."""
        from openhcs_rules.omero.structure import load_plate_structure

        return cls(load_plate_structure(params, plate_id, plate_name), **kwargs)

    # -- pickling: parameters only --------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        if self._pending:
            raise RuntimeError("cannot pickle an omero_local backend with unwritten fields; call flush() first")
        return {"plate": self.plate.to_dict(), "output": self.output, "pixel_path": self.pixel_path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(PlateStructure.from_dict(state["plate"]), state["output"], state["pixel_path"])  # type: ignore[misc]  # re-run __init__ on unpickling

    # -- connections, made on first use ---------------------------------------------------------------------
    @property
    def session(self) -> Any:
        from openhcs_rules.omero.adapter import OmeroSession

        if self._session is None:
            self._session = OmeroSession(self.params)
        return self._session

    @property
    def reader(self) -> Any:
        from openhcs_rules.omero.reader import PlaneReader

        if self._reader is None:
            self._reader = PlaneReader(self.params, self.plate_id, path=self.pixel_path)
        return self._reader

    def derived(self) -> Any:
        from openhcs_rules.omero.derived import ensure_derived_plate

        if self._derived is None:
            self._derived = ensure_derived_plate(self.session, self.plate, self.output)
        return self._derived

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> OmeroLocalBackend:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        try:
            if error is None:
                self.flush()
        finally:
            self.close()

    # -- pixels ----------------------------------------------------------------------------------------------
    def _image(self, key: ImageKey) -> ImageStructure:
        if self._index is None:
            self._index = {image.key: image for image in self.plate.images()}
        image = self._index.get(key)
        if image is None:
            raise FileNotFoundError(f"{self.generate_filename(key)}: no such plane in OMERO plate {self.plate_id}")
        return image

    def read_plane(self, key: ImageKey) -> np.ndarray:
        from openhcs_rules.omero.structure import image_info

        image = self._image(key)
        t, c, z = image.index or (0, 0, 0)
        return self.reader.read(image_info(self.plate, image), z, c, t)

    def _expected(self, well: str, site: int) -> set[ImageKey]:
        return {image.key for image in self.plate.wells[well].images if image.key.site == site}

    def write_plane(self, key: ImageKey, array: np.ndarray) -> None:
        """Collect a result plane; the field's image is written once all of its planes are collected."""
        if key.well not in self.plate.wells:
            raise FileNotFoundError(f"well {key.well} is not in OMERO plate {self.plate_id}")
        expected = self._expected(key.well, key.site)
        if key not in expected:
            raise ValueError(f"{key.virtual_filename} is not a plane of field {key.site} of {key.well}")
        with self._lock:
            pending = self._pending.setdefault((key.well, key.site), {})
            pending[key] = np.asarray(array)
            complete = set(pending) == expected
            if complete:
                planes = self._pending.pop((key.well, key.site))
        if complete:
            self._write_field(key.well, key.site, planes)

    def _write_field(self, well: str, site: int, planes: dict[ImageKey, np.ndarray]) -> None:
        from openhcs_rules.omero.derived import write_site

        cs = sorted({k.channel for k in planes})
        zs = sorted({k.z for k in planes})
        ts = sorted({k.t for k in planes})
        first = next(iter(planes.values()))
        data = np.zeros((len(ts), len(cs), len(zs), *first.shape), dtype=first.dtype)
        for k, plane in planes.items():
            if plane.shape != first.shape or plane.dtype != first.dtype:
                raise ValueError(f"{well} field {site}: planes differ in shape or type ({plane.shape} {plane.dtype})")
            data[ts.index(k.t), cs.index(k.channel), zs.index(k.z)] = plane
        names = [self.plate.channel(c).name for c in cs]
        write_site(self.session, self.derived(), well, site, data, names, self.plate.pixel_size_um)

    def flush(self) -> None:
        """Refuse to end with fields that got only some of their planes: they are never written half."""
        with self._lock:
            pending = {k: len(v) for k, v in self._pending.items()}
        if pending:
            detail = ", ".join(f"{w} field {s} ({n} plane(s))" for (w, s), n in sorted(pending.items()))
            raise ValueError(f"incomplete fields were not written to OMERO: {detail}")

    # -- small files as FileAnnotations ------------------------------------------------------------------------
    def _relative(self, path: str) -> str:
        if not path.startswith(self.prefix + "/"):
            raise FileNotFoundError(f"{path} is not under {self.prefix}")
        return path[len(self.prefix) + 1 :]

    def write_bytes(self, data: bytes, path: str) -> None:
        from openhcs_rules.omero.annotations import put_file, resolve, target_for_path

        relative = self._relative(path)
        kind, object_id = resolve(self.session, self.derived(), target_for_path(relative))
        put_file(self.session, kind, object_id, relative.rsplit("/", 1)[-1], data)

    def read_bytes(self, path: str) -> bytes:
        from openhcs_rules.omero.annotations import get_file, resolve, target_for_path

        relative = self._relative(path)
        kind, object_id = resolve(self.session, self.derived(), target_for_path(relative))
        return get_file(self.session, kind, object_id, relative.rsplit("/", 1)[-1])

    def exists(self, path: str) -> bool:
        from openhcs_rules.omero.annotations import find_annotation, is_result_file, resolve, target_for_path
        from openhcs_rules.omero.errors import OmeroNotFoundError

        if not is_result_file(path):
            return super().exists(path)
        relative = self._relative(path)
        try:
            kind, object_id = resolve(self.session, self.derived(), target_for_path(relative))
        except OmeroNotFoundError:
            return False
        return bool(find_annotation(self.session, kind, object_id, relative.rsplit("/", 1)[-1]))
