"""Plane reads for OMERO plates: the direct path where the repository is readable, else the API, batched.

The choice is made per image and logged once per plate and path (with the reason when the API is used), so
a run's log says how its pixels travelled. The API path opens one raw-pixels store per image and keeps it
for all of that image's planes; when a whole Z stack fits one message it is fetched in one round trip and
served plane by plane. Either way the caller gets the same native-endian 2D array.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

import numpy as np

from openhcs_rules.omero.adapter import DEFAULT_MAX_PLANE_PIXELS, DEFAULT_MESSAGE_LIMIT, OmeroSession, PixelsStore
from openhcs_rules.omero.direct import DirectReader, Located
from openhcs_rules.omero.params import OmeroParams
from openhcs_rules.omero.structure import ImageInfo

log = logging.getLogger(__name__)

PATHS = ("auto", "direct", "api")


class ApiReader:
    """Reads through RawPixelsStore: one store per image, stacks in one round trip when they fit."""

    def __init__(
        self,
        session: OmeroSession,
        message_limit: int = DEFAULT_MESSAGE_LIMIT,
        max_plane_pixels: int = DEFAULT_MAX_PLANE_PIXELS,
    ) -> None:
        self.session = session
        self.message_limit = message_limit
        self.max_plane_pixels = max_plane_pixels
        self._image: int | None = None
        self._store: PixelsStore | None = None
        self._stacks: dict[tuple[int, int], np.ndarray] = {}

    def read(self, info: ImageInfo, z: int, c: int, t: int) -> np.ndarray:
        if self._image != info.image_id:
            self.close()
            self._store = self.session.open_pixels(info.pixels)
            self._store.message_limit, self._store.max_plane_pixels = self.message_limit, self.max_plane_pixels
            self._image = info.image_id
        store = self._store
        assert store is not None
        if info.pixels.size_z > 1 and store.stack_fits:
            stack = self._stacks.get((c, t))
            if stack is None:
                stack = self._stacks[(c, t)] = store.read_stack(c, t)
            return stack[z].copy()
        return store.read_plane(z, c, t)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        self._store, self._image, self._stacks = None, None, {}


class PlaneReader:
    """One per plate and process: picks the path per image and keeps the state each path needs."""

    def __init__(
        self,
        params: OmeroParams,
        plate_id: int,
        path: str = "auto",
        message_limit: int = DEFAULT_MESSAGE_LIMIT,
        max_plane_pixels: int = DEFAULT_MAX_PLANE_PIXELS,
    ) -> None:
        if path not in PATHS:
            raise ValueError(f"pixel path {path!r} is not one of {PATHS}")
        self.params = params
        self.plate_id = plate_id
        self.path = path
        self.message_limit = message_limit
        self.max_plane_pixels = max_plane_pixels
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._direct: DirectReader | None = None
        self._direct_problem: str | None = None
        if path != "api":
            if params.data_dir:
                self._direct = DirectReader(params.data_dir)
                self._direct_problem = self._direct.usable()
            else:
                self._direct_problem = "omero.data_dir is not set"
            if path == "direct" and self._direct_problem:
                raise ValueError(f"direct pixel reads requested but {self._direct_problem}")
        self._plan: dict[int, Located | str] = {}
        self._session: OmeroSession | None = None
        self._api: ApiReader | None = None
        self._logged: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a PlaneReader holds open files and a connection; pickle its OmeroParams instead")

    @property
    def session(self) -> OmeroSession:
        if self._session is None:
            self._session = OmeroSession(self.params)
        return self._session

    def _route(self, info: ImageInfo) -> Located | str:
        plan = self._plan.get(info.image_id)
        if plan is None:
            if self._direct is None or self._direct_problem:
                plan = self._direct_problem or "direct reads are switched off"
            else:
                plan = self._direct.locate(info)
            if isinstance(plan, str) and self.path == "direct":
                raise ValueError(f"OMERO image {info.image_id} cannot be read directly: {plan}")
            self._plan[info.image_id] = plan
        return plan

    def _log_once(self, route: str, message: str, *args: object) -> None:
        if route not in self._logged:
            self._logged.add(route)
            log.info(message, *args)

    def read(self, info: ImageInfo, z: int, c: int, t: int) -> np.ndarray:
        """Plane (0-based z, c, t) of one OMERO image."""
        with self._lock:
            plan = self._route(info)
            if isinstance(plan, Located):
                assert self._direct is not None
                self._log_once(
                    "direct",
                    "OMERO plate %d: reading pixels directly from %s (tifffile)",
                    self.plate_id,
                    self._direct.repository,
                )
                self.stats["direct"] += 1
                return self._direct.read(plan, z, c, t)
            self._log_once("api", "OMERO plate %d: reading pixels through the API (%s)", self.plate_id, plan)
            if self._api is None:
                self._api = ApiReader(self.session, self.message_limit, self.max_plane_pixels)
            self.stats["api"] += 1
            return self._api.read(info, z, c, t)

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                self._api.close()
                self._api = None
            if self._direct is not None:
                self._direct.close()
            if self._session is not None:
                self._session.close()
                self._session = None


# -- one reader per plate per process (worker processes build theirs from plate.json) -----------------
_READERS: dict[str, PlaneReader] = {}
_READERS_LOCK = threading.Lock()


def reader_for(url: str, params: OmeroParams, plate_id: int) -> PlaneReader:
    with _READERS_LOCK:
        reader = _READERS.get(url)
        if reader is None:
            reader = _READERS[url] = PlaneReader(params, plate_id)
        return reader


def close_readers() -> None:
    with _READERS_LOCK:
        for reader in _READERS.values():
            reader.close()
        _READERS.clear()
