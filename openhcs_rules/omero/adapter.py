"""The one module that calls omero-py: a session with reconnects, and one method per server operation.

Why one thin adapter: everything else (structure building, pixel-path choice, derived-plate logic, path
naming, the storage plugin) works on plain records from :mod:`openhcs_rules.omero.records`, so the test
stand-in only has to implement the omero-py calls made here, and a change of omero-py API touches one file.

Session semantics handled here, once:
- the password is read from its source at (re)connect time and not kept;
- a session that expired during a long run (OMERO's idle timeout, a server-side kill) is renewed by logging
  in again and retrying the call; a lost connection is retried once for reads and then reported as
  :class:`OmeroUnavailableError`, never retried blindly for writes;
- :attr:`OmeroSession.calls` counts server round trips, so discovery's O(1) cost is measurable.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np

from openhcs_rules.omero import queries
from openhcs_rules.omero.errors import (
    OmeroAuthError,
    OmeroError,
    OmeroNotFoundError,
    OmeroNotInstalledError,
    OmeroUnavailableError,
)
from openhcs_rules.omero.params import OmeroParams
from openhcs_rules.omero.records import (
    ChannelRecord,
    FileAnnotationRecord,
    ImageRecord,
    PixelsRecord,
    PlateRecord,
    SampleRecord,
    WellRecord,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: "module:callable" of a BlitzGateway-compatible class; unset means omero.gateway.BlitzGateway. The test suite
#: points it at its stand-in; nothing in the package sets it.
GATEWAY_ENV = "OPENHCS_RULES_OMERO_GATEWAY"

#: client-side Ice.MessageSizeMax that omero-py sets (omero.constants.MESSAGESIZEMAX, 250000 KiB), with margin
DEFAULT_MESSAGE_LIMIT = int(250_000 * 1024 * 0.9)
#: OMERO refuses whole-plane reads of planes larger than omero.pixeldata.max_plane_width x height (3192 each)
DEFAULT_MAX_PLANE_PIXELS = 3192 * 3192

_SESSION_GONE = (
    "Ice.ObjectNotExistException",
    "omero.SessionTimeoutException",
    "omero.RemovedSessionException",
    "Glacier2.SessionNotExistException",
)
_CONNECTION_GONE = (
    "Ice.ConnectionLostException",
    "Ice.ConnectFailedException",
    "Ice.SocketException",
    "Ice.TimeoutException",
    "Ice.CommunicatorDestroyedException",
)
_AUTH_REFUSED = ("Glacier2.PermissionDeniedException", "omero.SecurityViolation", "omero.AuthenticationException")


def omero_modules() -> SimpleNamespace:
    """omero-py's modules, or a clear error saying how to install them."""
    try:
        import Glacier2
        import Ice
        import omero
        import omero.clients  # loads the Glacier2 slice definitions (PermissionDeniedException...)
        import omero.model
        import omero.rtypes
        import omero.sys
    except ImportError as exc:
        raise OmeroNotInstalledError(
            f"omero-py is not installed ({exc}): run `openhcs-rules setup-omero` (builds zeroc-ice for this "
            "Python) and then `pip install '.[omero]'`"
        ) from exc
    return SimpleNamespace(Ice=Ice, Glacier2=Glacier2, omero=omero, model=omero.model, rtypes=omero.rtypes)


def gateway_class() -> Callable[..., Any]:
    """The BlitzGateway class to connect with (see :data:`GATEWAY_ENV`)."""
    spec = os.environ.get(GATEWAY_ENV)
    if spec:
        module, _, attr = spec.partition(":")
        return getattr(importlib.import_module(module), attr or "BlitzGateway")
    omero_modules()
    from omero.gateway import BlitzGateway

    return BlitzGateway


def _qualname(exc: BaseException) -> set[str]:
    """Dotted names of the exception's class and bases as Ice spells them ('Ice.ObjectNotExistException')."""
    names = set()
    for cls in type(exc).__mro__:
        module = cls.__module__.split(".")[0]
        names.add(f"{module}.{cls.__name__}")
        names.add(f"{cls.__module__}.{cls.__name__}")
    return names


def classify_error(exc: BaseException) -> str | None:
    """'session' (log in again and retry), 'connection' (server unreachable), 'auth', or None."""
    names = _qualname(exc)
    if names & set(_SESSION_GONE):
        return "session"
    if names & set(_CONNECTION_GONE):
        return "connection"
    if names & set(_AUTH_REFUSED):
        return "auth"
    return None


def _val(rtype: Any) -> Any:
    """Unwrap an omero.rtypes value (or None)."""
    if rtype is None:
        return None
    return rtype.getValue() if hasattr(rtype, "getValue") else rtype


def _length_um(length: Any) -> float | None:
    if length is None:
        return None
    model = omero_modules().model
    try:
        return float(model.LengthI(length, model.enums.UnitsLength.MICROMETER).getValue())
    except Exception:  # an unconvertible unit (pixel, reference frame): report the raw value
        return float(length.getValue())


def _length_nm(length: Any) -> float | None:
    if length is None:
        return None
    model = omero_modules().model
    try:
        return float(model.LengthI(length, model.enums.UnitsLength.NANOMETER).getValue())
    except Exception:
        return float(length.getValue())


class OmeroSession:
    """One logged-in connection, renewed on demand. Not picklable on purpose: pickle :attr:`params`."""

    def __init__(self, params: OmeroParams, max_renewals: int = 3) -> None:
        self.params = params
        self.max_renewals = max_renewals
        self.calls = 0
        self.renewals = 0
        self.generation = 0
        self._gw: Any = None
        self._pixels_types: dict[str, Any] = {}

    # -- lifecycle --------------------------------------------------------------------------------------
    def __getstate__(self) -> None:
        raise TypeError("an OmeroSession holds a live connection and cannot be pickled; pickle its params")

    def __enter__(self) -> OmeroSession:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._gw is not None

    def connect(self) -> None:
        """Log in (password read now from its source); clear errors for refusal and an absent server."""
        mods = omero_modules()
        cls = gateway_class()
        password = self.params.password()
        gw = cls(
            username=self.params.user,
            passwd=password,
            host=self.params.host,
            port=self.params.port,
            secure=self.params.secure,
            group=self.params.group,
        )
        del password
        self.calls += 1
        try:
            ok = gw.connect()
        except mods.Ice.LocalException as exc:
            raise OmeroUnavailableError(
                f"OMERO server {self.params.host}:{self.params.port} does not answer ({type(exc).__name__}): "
                "start it (`openhcs-rules omero-server start`) or check omero.host and omero.port"
            ) from exc
        if not ok:
            error = gw.getLastError()
            _safe_close(gw)
            if error is None or classify_error(error) == "auth":
                source = (
                    f"file {self.params.password_file}" if self.params.password_file else f"${self.params.password_env}"
                )
                raise OmeroAuthError(
                    f"OMERO at {self.params.host}:{self.params.port} refused user {self.params.user!r}: wrong user "
                    f"name or password (the password was read from {source})"
                )
            raise OmeroUnavailableError(
                f"cannot log in to OMERO at {self.params.host}:{self.params.port}: {type(error).__name__}: {error}"
            )
        self._gw = gw
        self.generation += 1
        self._pixels_types.clear()

    def close(self) -> None:
        if self._gw is not None:
            _safe_close(self._gw)
            self._gw = None

    def renew(self) -> None:
        """Drop the dead session and log in again (stateful services must be re-created by their owners)."""
        self.renewals += 1
        log.info("OMERO session at %s expired or was lost; logging in again", self.params.address)
        self.close()
        self.connect()

    def gateway(self) -> Any:
        if self._gw is None:
            self.connect()
        return self._gw

    def call(self, what: str, fn: Callable[[Any], T], idempotent: bool = True) -> T:
        """Run one server round trip ``fn(gateway)``; renew an expired session and retry.

        A lost connection is retried once (after reconnecting) only when ``idempotent``; otherwise, or when
        the server is still gone, it becomes :class:`OmeroUnavailableError` naming the operation.
        """
        renewals = 0
        lost = 0
        while True:
            gw = self.gateway()
            self.calls += 1
            try:
                return fn(gw)
            except OmeroError:
                raise
            except Exception as exc:
                kind = classify_error(exc)
                if kind == "session" and renewals < self.max_renewals:
                    renewals += 1
                    self.renew()
                    continue
                if kind == "connection":
                    self.close()
                    if idempotent and lost == 0:
                        lost += 1
                        try:
                            self.connect()
                        except OmeroUnavailableError as again:
                            raise OmeroUnavailableError(
                                f"the OMERO server {self.params.host}:{self.params.port} went away during {what}"
                                f" ({type(exc).__name__}) and does not answer again: {again}"
                            ) from exc
                        self.renewals += 1
                        continue
                    raise OmeroUnavailableError(
                        f"lost the connection to OMERO {self.params.host}:{self.params.port} during {what} "
                        f"({type(exc).__name__}); nothing half-written was linked: rerun when the server is back"
                    ) from exc
                if kind == "session":
                    raise OmeroUnavailableError(
                        f"the OMERO session keeps expiring during {what} ({type(exc).__name__})"
                    ) from exc
                raise

    # -- helpers ----------------------------------------------------------------------------------------
    def _params(self, **values: Any) -> Any:
        mods = omero_modules()
        params = mods.omero.sys.ParametersI()
        for key, value in values.items():
            if isinstance(value, str):
                params.add(key, mods.rtypes.rstring(value))
            elif isinstance(value, int):
                params.add(key, mods.rtypes.rlong(value))
            else:
                raise TypeError(f"unsupported query parameter {key}={value!r}")
        return params

    def _find_all(self, what: str, hql: str, **values: Any) -> list[Any]:
        params = self._params(**values)
        return self.call(what, lambda gw: gw.getQueryService().findAllByQuery(hql, params, gw.SERVICE_OPTS))

    def _find_one(self, what: str, hql: str, **values: Any) -> Any:
        params = self._params(**values)
        return self.call(what, lambda gw: gw.getQueryService().findByQuery(hql, params, gw.SERVICE_OPTS))

    def _project(self, what: str, hql: str, **values: Any) -> list[list[Any]]:
        params = self._params(**values)
        rows = self.call(what, lambda gw: gw.getQueryService().projection(hql, params, gw.SERVICE_OPTS))
        return [[_val(cell) for cell in row] for row in rows]

    def _save(self, what: str, obj: Any) -> Any:
        return self.call(
            what, lambda gw: gw.getUpdateService().saveAndReturnObject(obj, gw.SERVICE_OPTS), idempotent=False
        )

    # -- discovery --------------------------------------------------------------------------------------
    def load_plate(self, plate_id: int, with_files: bool = False) -> PlateRecord:
        """The whole plate structure in 3 round trips (4 with original files), however many wells."""
        plate = self._find_one(f"loading plate {plate_id}", queries.PLATE_BY_ID, pid=int(plate_id))
        if plate is None:
            raise OmeroNotFoundError(
                f"OMERO plate {plate_id} does not exist on {self.params.host}:{self.params.port} or is not visible "
                f"to user {self.params.user!r}: check plate_id in the screen config"
            )
        wells = [
            _well_record(w)
            for w in self._find_all(f"loading wells of plate {plate_id}", queries.PLATE_WELLS, pid=int(plate_id))
        ]
        wells.sort(key=lambda w: (w.row, w.column))
        first = next((img.pixels for w in wells for _, img in w.samples if img.pixels is not None), None)
        channels: tuple[ChannelRecord, ...] = ()
        if first is not None:
            pix = self._find_one(f"loading channels of plate {plate_id}", queries.PIXELS_CHANNELS, pxid=first.pixels_id)
            channels = tuple(_channel_records(pix)) if pix is not None else ()
        filesets: dict[int, tuple[tuple[str, str], ...]] = {}
        if with_files:
            collected: dict[int, list[tuple[str, str]]] = {}
            for fs_id, path, name in self._project(
                f"listing original files of plate {plate_id}", queries.PLATE_FILES, pid=int(plate_id)
            ):
                collected.setdefault(int(fs_id), []).append((str(path), str(name)))
            filesets = {k: tuple(sorted(v)) for k, v in collected.items()}
        return PlateRecord(
            plate_id=int(plate_id),
            name=_val(plate.getName()) or f"plate_{plate_id}",
            rows=_val(plate.getRows()),
            columns=_val(plate.getColumns()),
            wells=tuple(wells),
            channels=channels,
            filesets=filesets,
        )

    # -- pixels -----------------------------------------------------------------------------------------
    def open_pixels(self, pixels: PixelsRecord) -> PixelsStore:
        """A raw-pixels store for one image: create it once, use it for all of the image's planes."""
        return PixelsStore(self, pixels)

    def _pixels_type(self, value: str) -> Any:
        if value not in self._pixels_types:
            found = self._find_one(f"looking up pixel type {value}", queries.PIXELS_TYPE, value=value)
            if found is None:
                raise OmeroError(f"the OMERO server has no pixel type {value!r}")
            self._pixels_types[value] = found
        return self._pixels_types[value]

    def create_image(
        self,
        name: str,
        description: str,
        data: np.ndarray,
        channel_names: list[str],
        pixel_size_um: float | None = None,
        message_limit: int = DEFAULT_MESSAGE_LIMIT,
    ) -> int:
        """A new, unlinked Image holding ``data`` (t, c, z, y, x) in full; returns its id.

        The image is linked to nothing until every plane is saved (the caller links it), so no plate ever
        shows it without its pixels.
        """
        from openhcs_rules.omero.records import omero_pixel_type

        mods = omero_modules()
        rt = mods.rtypes
        size_t, size_c, size_z, size_y, size_x = data.shape
        ptype = self._pixels_type(omero_pixel_type(data.dtype))
        channel_list = list(range(size_c))  # IPixels.createImage takes plain ints (List<Integer>)
        image_id = _val(
            self.call(
                f"creating image {name}",
                lambda gw: gw.getPixelsService().createImage(
                    int(size_x),
                    int(size_y),
                    int(size_z),
                    int(size_t),
                    channel_list,
                    ptype,
                    name,
                    description,
                    gw.SERVICE_OPTS,
                ),
                idempotent=False,
            )
        )
        pixels_id = self._project(f"finding pixels of image {image_id}", queries.IMAGE_PIXELS, iid=int(image_id))[0][0]
        record = PixelsRecord(int(pixels_id), size_x, size_y, size_z, size_c, size_t, omero_pixel_type(data.dtype))
        store = PixelsStore(self, record, message_limit=message_limit)
        try:
            store.write_all(data)
            store.save()
        finally:
            store.close()
        for c in range(size_c):
            plane = data[:, c]
            lo, hi = float(plane.min()), float(plane.max())

            def set_range(gw: Any, c: int = c, lo: float = lo, hi: float = hi) -> Any:
                return gw.getPixelsService().setChannelGlobalMinMax(int(pixels_id), c, lo, hi, gw.SERVICE_OPTS)

            self.call(f"setting channel {c} range of image {image_id}", set_range, idempotent=False)
        pix = self._find_one(f"loading channels of image {image_id}", queries.PIXELS_CHANNELS, pxid=int(pixels_id))
        changed = []
        for index, channel in enumerate(pix.copyChannels()):
            logical = channel.getLogicalChannel()
            if index < len(channel_names):
                logical.setName(rt.rstring(channel_names[index]))
                changed.append(logical)
        if pixel_size_um:
            length = mods.model.LengthI(float(pixel_size_um), mods.model.enums.UnitsLength.MICROMETER)
            pix.setPhysicalSizeX(length)
            pix.setPhysicalSizeY(mods.model.LengthI(float(pixel_size_um), mods.model.enums.UnitsLength.MICROMETER))
            changed.append(pix)
        if changed:
            self.call(
                f"naming channels of image {image_id}",
                lambda gw: gw.getUpdateService().saveArray(changed, gw.SERVICE_OPTS),
                idempotent=False,
            )
        return int(image_id)

    # -- plates, wells, samples -------------------------------------------------------------------------
    def find_tagged_plates(self, ns: str, key: str) -> list[int]:
        rows = self._project("looking up derived plates", queries.DERIVED_PLATES, ns=ns, key=key)
        return sorted({int(r[0]) for r in rows})

    def create_tagged_plate(
        self, name: str, description: str, rows: int, columns: int, wells: Iterable[tuple[int, int]], ns: str, key: str
    ) -> int:
        """Plate + all its Wells + a CommentAnnotation (ns, key) in one transaction: never a plate without wells."""
        mods = omero_modules()
        rt, model = mods.rtypes, mods.model
        plate = model.PlateI()
        plate.setName(rt.rstring(name))
        plate.setDescription(rt.rstring(description))
        plate.setRows(rt.rint(rows))
        plate.setColumns(rt.rint(columns))
        plate.setRowNamingConvention(rt.rstring("letter"))
        plate.setColumnNamingConvention(rt.rstring("number"))
        for row, column in wells:
            well = model.WellI()
            well.setRow(rt.rint(row))
            well.setColumn(rt.rint(column))
            plate.addWell(well)
        tag = model.CommentAnnotationI()
        tag.setNs(rt.rstring(ns))
        tag.setTextValue(rt.rstring(key))
        plate.linkAnnotation(tag)
        saved = self._save(f"creating plate {name}", plate)
        return int(_val(saved.getId()))

    def delete(self, kind: str, ids: list[int]) -> None:
        """Delete objects with their children (an Image's Pixels, an Annotation's file) and wait for it."""
        if not ids:
            return
        self.call(
            f"deleting {kind} {ids}",
            lambda gw: gw.deleteObjects(kind, [int(i) for i in ids], deleteAnns=True, deleteChildren=True, wait=True),
            idempotent=False,
        )

    def well_positions(self, plate_id: int) -> dict[tuple[int, int], int]:
        rows = self._project(f"listing wells of plate {plate_id}", queries.WELL_POSITIONS, pid=int(plate_id))
        return {(int(r), int(c)): int(w) for w, r, c in rows}

    def well_samples(self, well_id: int) -> list[SampleRecord]:
        rows = self._project(f"listing images of well {well_id}", queries.WELL_SAMPLES, wid=int(well_id))
        return [SampleRecord(int(ws), int(img), name or "", desc or "") for ws, img, name, desc in rows]

    def link_image(self, well_id: int, image_id: int) -> int:
        mods = omero_modules()
        sample = mods.model.WellSampleI()
        sample.setWell(mods.model.WellI(int(well_id), False))
        sample.setImage(mods.model.ImageI(int(image_id), False))
        return int(_val(self._save(f"linking image {image_id} to well {well_id}", sample).getId()))

    def relink_sample(self, wellsample_id: int, image_id: int) -> None:
        mods = omero_modules()
        sample = self._find_one(
            f"loading well sample {wellsample_id}", queries.WELL_SAMPLE_BY_ID, wsid=int(wellsample_id)
        )
        if sample is None:
            raise OmeroNotFoundError(f"well sample {wellsample_id} vanished while relinking it")
        sample.setImage(mods.model.ImageI(int(image_id), False))
        self._save(f"relinking well sample {wellsample_id} to image {image_id}", sample)

    # -- file annotations -------------------------------------------------------------------------------
    def file_annotations(self, kind: str, object_id: int, ns: str) -> list[FileAnnotationRecord]:
        rows = self._project(
            f"listing file annotations of {kind} {object_id}",
            queries.file_annotations_query(kind),
            oid=int(object_id),
            ns=ns,
        )
        return [
            FileAnnotationRecord(int(a), int(f), str(n), int(s or 0), h, int(t) if t is not None else None)
            for a, f, n, s, h, t in rows
        ]

    def upload_file_annotation(
        self, kind: str, object_id: int, name: str, data: bytes, mimetype: str, ns: str, description: str = ""
    ) -> int:
        """OriginalFile + its bytes, then FileAnnotation and link in one save (linked only once complete)."""
        mods = omero_modules()
        rt, model = mods.rtypes, mods.model
        original = model.OriginalFileI()
        original.setName(rt.rstring(name))
        original.setPath(rt.rstring("openhcs-rules/"))
        original.setSize(rt.rlong(len(data)))
        original.setMimetype(rt.rstring(mimetype))
        original.setHash(rt.rstring(hashlib.sha1(data).hexdigest()))
        algorithm = model.ChecksumAlgorithmI()
        algorithm.setValue(rt.rstring("SHA1-160"))
        original.setHasher(algorithm)
        file_id = int(_val(self._save(f"creating file {name}", original).getId()))

        def upload(gw: Any) -> None:
            # one unit, so a renewed session re-creates the store and rewrites the same bytes from offset 0
            store = gw.c.sf.createRawFileStore()
            try:
                store.setFileId(file_id, gw.SERVICE_OPTS)
                store.write(data, 0, len(data), gw.SERVICE_OPTS)
                store.save(gw.SERVICE_OPTS)
            finally:
                _safe_close(store)
            self.calls += 4  # create, setFileId, write, save (+ close counted by call itself)

        self.call(f"uploading {name}", upload)
        annotation = model.FileAnnotationI()
        annotation.setNs(rt.rstring(ns))
        annotation.setDescription(rt.rstring(description))
        annotation.setFile(model.OriginalFileI(file_id, False))
        link_cls = getattr(model, queries.LINK_CLASSES[kind] + "I")
        parent_cls = getattr(model, kind.capitalize() + "I")
        link = link_cls()
        link.setParent(parent_cls(int(object_id), False))
        link.setChild(annotation)
        saved = self._save(f"linking {name} to {kind} {object_id}", link)
        return int(_val(saved.getChild().getId()))

    def download_file(self, file_id: int, size: int) -> bytes:
        def download(gw: Any) -> bytes:
            store = gw.c.sf.createRawFileStore()
            try:
                store.setFileId(int(file_id), gw.SERVICE_OPTS)
                data = bytes(store.read(0, int(size), gw.SERVICE_OPTS)) if size else b""
            finally:
                _safe_close(store)
            self.calls += 2 + (1 if size else 0)
            return data

        return self.call(f"downloading file {file_id}", download)


class PixelsStore:
    """A RawPixelsStore bound to one Pixels: created once per image and re-created after a session renewal.

    Reads return native-endian numpy arrays (the server sends big-endian bytes). Planes larger than the
    Ice message limit, or than OMERO's maximum plane size, go through tiles of whole rows.
    """

    def __init__(
        self,
        session: OmeroSession,
        pixels: PixelsRecord,
        message_limit: int = DEFAULT_MESSAGE_LIMIT,
        max_plane_pixels: int = DEFAULT_MAX_PLANE_PIXELS,
    ) -> None:
        self.session = session
        self.pixels = pixels
        self.message_limit = message_limit
        self.max_plane_pixels = max_plane_pixels
        self._store: Any = None
        self._generation = -1
        self.wire_dtype = pixels.dtype.newbyteorder(">")

    def _get(self, gw: Any) -> Any:
        if self._store is None or self._generation != self.session.generation:
            self._store = None
            store = gw.c.sf.createRawPixelsStore()
            store.setPixelsId(self.pixels.pixels_id, True, gw.SERVICE_OPTS)
            self.session.calls += 2  # createRawPixelsStore and setPixelsId: two round trips besides the read
            self._store, self._generation = store, self.session.generation
        return self._store

    @property
    def plane_bytes(self) -> int:
        return self.pixels.size_x * self.pixels.size_y * self.pixels.dtype.itemsize

    @property
    def whole_planes(self) -> bool:
        """Whether a plane can travel in one message (else tiles)."""
        pixels = self.pixels.size_x * self.pixels.size_y
        return self.plane_bytes <= self.message_limit and pixels <= self.max_plane_pixels

    @property
    def stack_fits(self) -> bool:
        return self.whole_planes and self.plane_bytes * self.pixels.size_z <= self.message_limit

    def _rows_per_tile(self) -> int:
        row_bytes = self.pixels.size_x * self.pixels.dtype.itemsize
        by_message = max(1, self.message_limit // row_bytes)
        by_plane = max(1, self.max_plane_pixels // self.pixels.size_x)
        return min(self.pixels.size_y, by_message, by_plane)

    def _decode(self, raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
        array = np.frombuffer(raw, dtype=self.wire_dtype)
        if array.size != int(np.prod(shape)):
            raise OmeroError(f"pixels {self.pixels.pixels_id}: got {array.size} values, expected shape {shape}")
        return array.reshape(shape).astype(self.pixels.dtype)

    def read_plane(self, z: int, c: int, t: int) -> np.ndarray:
        """One plane (0-based z, c, t): one round trip, or one per tile for planes over the limits."""
        p = self.pixels
        what = f"reading plane z={z} c={c} t={t} of pixels {p.pixels_id}"
        if self.whole_planes:
            raw = self.session.call(what, lambda gw: self._get(gw).getPlane(z, c, t, gw.SERVICE_OPTS))
            return self._decode(raw, (p.size_y, p.size_x))
        out = np.empty((p.size_y, p.size_x), dtype=p.dtype)
        step = self._rows_per_tile()
        for y in range(0, p.size_y, step):
            h = min(step, p.size_y - y)

            def get_tile(gw: Any, y: int = y, h: int = h) -> Any:
                return self._get(gw).getTile(z, c, t, 0, y, p.size_x, h, gw.SERVICE_OPTS)

            raw = self.session.call(what, get_tile)
            out[y : y + h] = self._decode(raw, (h, p.size_x))
        return out

    def read_stack(self, c: int, t: int) -> np.ndarray:
        """All Z planes of (c, t) in one round trip (only when :attr:`stack_fits`)."""
        p = self.pixels
        raw = self.session.call(
            f"reading stack c={c} t={t} of pixels {p.pixels_id}",
            lambda gw: self._get(gw).getStack(c, t, gw.SERVICE_OPTS),
        )
        return self._decode(raw, (p.size_z, p.size_y, p.size_x))

    def write_all(self, data: np.ndarray) -> None:
        """Write every plane of ``data`` (t, c, z, y, x): one round trip per plane, or per tile."""
        p = self.pixels
        wire = np.ascontiguousarray(data.astype(self.wire_dtype, copy=False))
        step = p.size_y if self.whole_planes else self._rows_per_tile()
        for t in range(p.size_t):
            for c in range(p.size_c):
                for z in range(p.size_z):
                    plane = wire[t, c, z]
                    what = f"writing plane z={z} c={c} t={t} of pixels {p.pixels_id}"
                    if step == p.size_y:
                        buf = plane.tobytes()

                        def set_plane(gw: Any, b: bytes = buf, z: int = z, c: int = c, t: int = t) -> Any:
                            return self._get(gw).setPlane(b, z, c, t, gw.SERVICE_OPTS)

                        self.session.call(what, set_plane)
                        continue
                    for y in range(0, p.size_y, step):
                        h = min(step, p.size_y - y)
                        buf = plane[y : y + h].tobytes()

                        def set_tile(
                            gw: Any, b: bytes = buf, z: int = z, c: int = c, t: int = t, y: int = y, h: int = h
                        ) -> Any:
                            return self._get(gw).setTile(b, z, c, t, 0, y, p.size_x, h, gw.SERVICE_OPTS)

                        self.session.call(what, set_tile)

    def save(self) -> None:
        self.session.call(
            f"saving pixels {self.pixels.pixels_id}", lambda gw: self._get(gw).save(gw.SERVICE_OPTS), idempotent=False
        )

    def close(self) -> None:
        if self._store is not None and self._generation == self.session.generation:
            self.session.calls += 1
            _safe_close(self._store)
        self._store = None


def _safe_close(obj: Any) -> None:
    """Close a gateway or stateful service; a dead server must not turn cleanup into a second error."""
    try:
        obj.close()
    except Exception as exc:  # closing after the server went away raises Ice errors we cannot act on
        log.debug("ignoring error while closing %r: %s", obj, exc)


def _pixels_record(pix: Any) -> PixelsRecord:
    ptype = pix.getPixelsType()
    return PixelsRecord(
        pixels_id=int(_val(pix.getId())),
        size_x=int(_val(pix.getSizeX())),
        size_y=int(_val(pix.getSizeY())),
        size_z=int(_val(pix.getSizeZ())),
        size_c=int(_val(pix.getSizeC())),
        size_t=int(_val(pix.getSizeT())),
        pixels_type=str(_val(ptype.getValue())) if ptype is not None and ptype.isLoaded() else "",
        physical_size_x_um=_length_um(pix.getPhysicalSizeX()),
        physical_size_z_um=_length_um(pix.getPhysicalSizeZ()),
    )


def _image_record(img: Any) -> ImageRecord:
    pixels = None
    if img.sizeOfPixels() > 0:
        pixels = _pixels_record(img.getPrimaryPixels())
    fileset = img.getFileset()
    return ImageRecord(
        image_id=int(_val(img.getId())),
        name=_val(img.getName()) or "",
        series=int(_val(img.getSeries()) or 0),
        fileset_id=int(_val(fileset.getId())) if fileset is not None else None,
        pixels=pixels,
    )


def _well_record(well: Any) -> WellRecord:
    samples = []
    for sample in well.copyWellSamples():
        image = sample.getImage()
        if image is not None and image.isLoaded():
            samples.append((int(_val(sample.getId())), _image_record(image)))
    samples.sort(key=lambda s: s[0])
    return WellRecord(int(_val(well.getId())), int(_val(well.getRow())), int(_val(well.getColumn())), tuple(samples))


def _channel_records(pix: Any) -> list[ChannelRecord]:
    records = []
    for index, channel in enumerate(pix.copyChannels()):
        logical = channel.getLogicalChannel()
        name = _val(logical.getName()) if logical is not None and logical.isLoaded() else None
        emission = _length_nm(logical.getEmissionWave()) if logical is not None and logical.isLoaded() else None
        records.append(ChannelRecord(index, name, emission))
    return records
