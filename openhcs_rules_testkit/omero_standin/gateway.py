"""``StandInGateway``: the subset of ``omero.gateway.BlitzGateway`` the adapter calls, and its services.

Each service method is one "server call": it checks that the server runs and the session is valid, runs in
one SQLite transaction, and is counted. Inputs and outputs are real omero.model / omero.rtypes objects.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import Glacier2
import Ice
import numpy as np
import omero
import omero.clients  # noqa: F401  (loads Glacier2 and the server exception classes)
import omero.model as M
import tifffile
from omero.model.enums import UnitsLength
from omero.rtypes import rint, rlong, rstring, rtime

from openhcs_rules_testkit.omero_standin import queries as Q
from openhcs_rules_testkit.omero_standin.server import OMERO_TO_NUMPY, ROOT_ENV, connect_db, transaction


def _val(x: Any) -> Any:
    return None if x is None else (x.getValue() if hasattr(x, "getValue") else x)


def _api_error(message: str) -> omero.ApiUsageException:
    return omero.ApiUsageException(
        serverStackTrace="", serverExceptionClass="ome.conditions.ApiUsageException", message=message
    )


class _Server:
    """Per-process handle on the shared state; one SQLite connection per thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "OMERO"
        self._local = threading.local()
        self._tiffs: dict[Path, tifffile.TiffFile] = {}
        self._tiff_lock = threading.Lock()

    @property
    def db(self) -> Any:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = connect_db(self.root)
        return db

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def count(self, method: str) -> None:
        """Count one answered call; a crash scheduled with ``StandInServer.stop_after`` happens here."""
        crashed = False
        with transaction(self.db) as db:
            db.execute("INSERT INTO counters VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET n = n + 1", (method,))
            left = db.execute("SELECT value FROM meta WHERE key = 'calls_left'").fetchone()
            if left is not None and left[0] != "":
                remaining = int(left[0]) - 1
                crashed = remaining < 0
                db.execute("UPDATE meta SET value = ? WHERE key = 'calls_left'", ("" if crashed else str(remaining),))
                if crashed:
                    db.execute("UPDATE meta SET value = '0' WHERE key = 'running'")
        if crashed:
            raise Ice.ConnectionLostException()

    # -- pixel data, as the server's pixel buffers would serve it --------------------------------------------
    def pixels_row(self, pixels_id: int) -> dict[str, Any] | None:
        cur = self.db.execute("SELECT * FROM pixels WHERE id = ?", (pixels_id,))
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None

    def romio_path(self, pixels_id: int) -> Path:
        return self.data_dir / "Pixels" / str(pixels_id)

    def volume(self, row: dict[str, Any], writable: bool = False) -> np.ndarray:
        """The whole (t, c, z, y, x) pixel array of one Pixels, big-endian for the raw layouts."""
        dtype = np.dtype(OMERO_TO_NUMPY[row["ptype"]])
        shape = (row["st"], row["sc"], row["sz"], row["sy"], row["sx"])
        if row["storage"] == "romio":
            return np.memmap(
                self.romio_path(row["id"]), dtype=dtype.newbyteorder(">"), mode="r+" if writable else "r", shape=shape
            )
        if writable:
            raise _api_error(f"Pixels {row['id']} are backed by an imported file and cannot be written")
        path = self.data_dir / row["file"]
        if row["storage"] == "raw":
            return np.memmap(path, dtype=dtype.newbyteorder(">"), mode="r", offset=row["offset"], shape=shape)
        with self._tiff_lock:
            tif = self._tiffs.get(path)
            if tif is None:
                tif = self._tiffs[path] = tifffile.TiffFile(path)
            return tif.series[row["series"]].asarray().reshape(shape)


_SERVERS: dict[str, _Server] = {}


def _server() -> _Server | None:
    root = os.environ.get(ROOT_ENV)
    if not root or not (Path(root) / "state.sqlite").exists():
        return None
    if root not in _SERVERS:
        _SERVERS[root] = _Server(Path(root))
    return _SERVERS[root]


class StandInGateway:
    """Constructor and methods mirror omero.gateway.BlitzGateway (only what the adapter uses)."""

    def __init__(
        self,
        username: str | None = None,
        passwd: str | None = None,
        host: str | None = None,
        port: int | None = None,
        secure: bool | None = None,
        group: str | None = None,
        **_: Any,
    ) -> None:
        self._username, self._passwd, self.host, self.port, self.group = username, passwd, host, port, group
        self._connected = False
        self._session: str | None = None
        self._last_error: Exception | None = None
        self.SERVICE_OPTS: dict[str, str] = {}
        self.c = SimpleNamespace(sf=_ServiceFactory(self))

    # -- connection ----------------------------------------------------------------------------------------
    def _reachable(self) -> _Server:
        server = _server()
        if (
            server is None
            or server.meta("running") != "1"
            or server.meta("host") != str(self.host)
            or server.meta("port") != str(self.port)
        ):
            if self._connected:
                raise Ice.ConnectionLostException()
            raise Ice.ConnectionRefusedException()
        return server

    def connect(self) -> bool:
        server = self._reachable()  # BlitzGateway lets Ice.SyscallException (refused) propagate
        server.count("connect")
        row = server.db.execute("SELECT password FROM users WHERE name = ?", (self._username,)).fetchone()
        if row is None or row[0] != self._passwd:
            self._last_error = Glacier2.PermissionDeniedException(reason="Password check failed")
            return False
        self._session = str(uuid.uuid4())
        with transaction(server.db):
            server.db.execute("INSERT INTO sessions VALUES (?, ?, 1)", (self._session, self._username))
        self._passwd = None  # like omero.client, do not keep it around after login
        self._connected, self._last_error = True, None
        return True

    def getLastError(self) -> Exception | None:  # noqa: N802 (omero-py's name)
        return self._last_error

    def isConnected(self) -> bool:  # noqa: N802
        return self._connected

    def _check(self, method: str) -> _Server:
        """Every service call: server up, session valid; counted."""
        server = self._reachable()
        if not self._connected or self._session is None:
            raise Ice.ObjectNotExistException()
        row = server.db.execute("SELECT valid FROM sessions WHERE uuid = ?", (self._session,)).fetchone()
        if row is None or not row[0]:
            raise Ice.ObjectNotExistException()
        server.count(method)
        return server

    def keepAlive(self) -> bool:  # noqa: N802
        try:
            self._check("keepAlive")
        except (Ice.ObjectNotExistException, Ice.ConnectionLostException, Ice.ConnectionRefusedException):
            return False
        return True

    def close(self, hard: bool = True) -> None:
        server = _server()
        if server is not None and self._session is not None and server.meta("running") == "1":
            with transaction(server.db):
                server.db.execute("DELETE FROM sessions WHERE uuid = ?", (self._session,))
        self._connected, self._session = False, None

    def getQueryService(self) -> _QueryService:  # noqa: N802
        return _QueryService(self)

    def getUpdateService(self) -> _UpdateService:  # noqa: N802
        return _UpdateService(self)

    def getPixelsService(self) -> _PixelsService:  # noqa: N802
        return _PixelsService(self)

    def deleteObjects(  # noqa: N802
        self,
        graph_spec: str,
        obj_ids: list[int],
        deleteAnns: bool = False,  # noqa: N803
        deleteChildren: bool = False,  # noqa: N803
        dryRun: bool = False,  # noqa: N803
        wait: bool = False,
    ) -> SimpleNamespace:
        server = self._check("submit(Delete2)")
        with transaction(server.db) as db:
            _delete(server, db, graph_spec, [int(i) for i in obj_ids], deleteAnns, deleteChildren)
        return SimpleNamespace(close=lambda: None)


class _ServiceFactory:
    def __init__(self, gw: StandInGateway) -> None:
        self.gw = gw

    def createRawPixelsStore(self) -> _RawPixelsStore:  # noqa: N802
        self.gw._check("createRawPixelsStore")
        return _RawPixelsStore(self.gw)

    def createRawFileStore(self) -> _RawFileStore:  # noqa: N802
        self.gw._check("createRawFileStore")
        return _RawFileStore(self.gw)


# -- IQuery ------------------------------------------------------------------------------------------------
class _QueryService:
    def __init__(self, gw: StandInGateway) -> None:
        self.gw = gw

    def _run(self, method: str, query: str, params: Any) -> list[Any]:
        server = self.gw._check(method)
        values = {k: _val(v) for k, v in (params.map.items() if params is not None else [])}
        handler = Q.HANDLERS.get(query)
        if handler is None:
            raise omero.QueryException(message=f"stand-in: query not implemented: {query}")
        return handler(server.db, values)

    def findByQuery(self, query: str, params: Any, ctx: Any = None) -> Any:  # noqa: N802
        rows = self._run("findByQuery", query, params)
        if len(rows) > 1:
            raise omero.ApiUsageException(message="findByQuery returned more than one result")
        return rows[0] if rows else None

    def findAllByQuery(self, query: str, params: Any, ctx: Any = None) -> list[Any]:  # noqa: N802
        return self._run("findAllByQuery", query, params)

    def projection(self, query: str, params: Any, ctx: Any = None) -> list[list[Any]]:
        return self._run("projection", query, params)


# -- IUpdate -----------------------------------------------------------------------------------------------
class _UpdateService:
    def __init__(self, gw: StandInGateway) -> None:
        self.gw = gw

    def saveAndReturnObject(self, obj: Any, ctx: Any = None) -> Any:  # noqa: N802
        server = self.gw._check("saveAndReturnObject")
        with transaction(server.db) as db:
            return _save(db, obj)

    def saveObject(self, obj: Any, ctx: Any = None) -> None:  # noqa: N802
        server = self.gw._check("saveObject")
        with transaction(server.db) as db:
            _save(db, obj)

    def saveArray(self, objs: list[Any], ctx: Any = None) -> None:  # noqa: N802
        server = self.gw._check("saveArray")
        with transaction(server.db) as db:
            for obj in objs:
                _save(db, obj)


def _exists(db: Any, table: str, ident: int) -> None:
    if db.execute(f"SELECT 1 FROM {table} WHERE id = ?", (ident,)).fetchone() is None:
        raise omero.ValidationException(message=f"{table} {ident} does not exist")


def _save(db: Any, obj: Any) -> Any:
    """Insert or update the object graphs the adapter sends; anything else is refused."""
    now = int(time.time() * 1000)
    if isinstance(obj, M.PlateI) and obj.getId() is None:
        plate_id = db.execute(
            "INSERT INTO plate (name, description, rows, columns) VALUES (?, ?, ?, ?)",
            (_val(obj.getName()), _val(obj.getDescription()), _val(obj.getRows()), _val(obj.getColumns())),
        ).lastrowid
        for well in obj.copyWells():
            db.execute(
                "INSERT INTO well (plate_id, row, col) VALUES (?, ?, ?)",
                (plate_id, _val(well.getRow()), _val(well.getColumn())),
            )
        for link in obj.copyAnnotationLinks():
            ann = link.getChild()
            if not isinstance(ann, M.CommentAnnotationI):
                raise _api_error("stand-in: only CommentAnnotations are saved with a new plate")
            ann_id = db.execute(
                "INSERT INTO annotation (kind, ns, text, created_ms) VALUES ('comment', ?, ?, ?)",
                (_val(ann.getNs()), _val(ann.getTextValue()), now),
            ).lastrowid
            db.execute(
                "INSERT INTO annotation_link (parent_kind, parent_id, child_id) VALUES ('plate', ?, ?)",
                (plate_id, ann_id),
            )
        return M.PlateI(plate_id, False)
    if isinstance(obj, M.WellSampleI):
        well_id, image_id = _val(obj.getWell().getId()), _val(obj.getImage().getId())
        _exists(db, "well", well_id)
        _exists(db, "image", image_id)
        if obj.getId() is None:
            return M.WellSampleI(
                db.execute("INSERT INTO wellsample (well_id, image_id) VALUES (?, ?)", (well_id, image_id)).lastrowid,
                False,
            )
        db.execute(
            "UPDATE wellsample SET well_id = ?, image_id = ? WHERE id = ?", (well_id, image_id, _val(obj.getId()))
        )
        return obj
    if isinstance(obj, M.OriginalFileI) and obj.getId() is None:
        file_id = db.execute(
            "INSERT INTO original_file (path, name, size, hash, mimetype) VALUES (?, ?, ?, ?, ?)",
            (
                _val(obj.getPath()),
                _val(obj.getName()),
                _val(obj.getSize()),
                _val(obj.getHash()),
                _val(obj.getMimetype()),
            ),
        ).lastrowid
        return M.OriginalFileI(file_id, False)
    for kind, link_cls, table in (
        ("plate", M.PlateAnnotationLinkI, "plate"),
        ("well", M.WellAnnotationLinkI, "well"),
        ("image", M.ImageAnnotationLinkI, "image"),
    ):
        if isinstance(obj, link_cls) and obj.getId() is None:
            parent_id = _val(obj.getParent().getId())
            _exists(db, table, parent_id)
            ann = obj.getChild()
            if not isinstance(ann, M.FileAnnotationI) or ann.getId() is not None:
                raise _api_error("stand-in: only links to a new FileAnnotation are saved")
            file_id = _val(ann.getFile().getId())
            _exists(db, "original_file", file_id)
            ann_id = db.execute(
                "INSERT INTO annotation (kind, ns, description, file_id, created_ms) VALUES ('file', ?, ?, ?, ?)",
                (_val(ann.getNs()), _val(ann.getDescription()), file_id, now),
            ).lastrowid
            link_id = db.execute(
                "INSERT INTO annotation_link (parent_kind, parent_id, child_id) VALUES (?, ?, ?)",
                (kind, parent_id, ann_id),
            ).lastrowid
            saved = link_cls(link_id, True)
            saved.setChild(M.FileAnnotationI(ann_id, False))
            return saved
    if isinstance(obj, M.LogicalChannelI) and obj.getId() is not None:
        db.execute("UPDATE channel SET name = ? WHERE id = ?", (_val(obj.getName()), _val(obj.getId())))
        return obj
    if isinstance(obj, M.PixelsI) and obj.getId() is not None:
        size = obj.getPhysicalSizeX()
        db.execute("UPDATE pixels SET psx = ? WHERE id = ?", (_val(size), _val(obj.getId())))
        return obj
    raise _api_error(f"stand-in: saving {type(obj).__name__} (id {_val(obj.getId())}) is not implemented")


def _delete(server: _Server, db: Any, spec: str, ids: list[int], anns: bool, children: bool) -> None:
    """Delete2 as the adapter uses it: Plate (wells, samples, images), Image (pixels, samples), Annotation."""
    if spec == "Annotation":
        for ann_id in ids:
            row = db.execute("SELECT file_id FROM annotation WHERE id = ?", (ann_id,)).fetchone()
            db.execute("DELETE FROM annotation_link WHERE child_id = ?", (ann_id,))
            db.execute("DELETE FROM annotation WHERE id = ?", (ann_id,))
            if row and row[0]:
                db.execute("DELETE FROM original_file WHERE id = ?", (row[0],))
                (server.data_dir / "Files" / str(row[0])).unlink(missing_ok=True)
        return
    if spec == "Image":
        for image_id in ids:
            for pixels_id, storage in db.execute("SELECT id, storage FROM pixels WHERE image_id = ?", (image_id,)):
                db.execute("DELETE FROM channel WHERE pixels_id = ?", (pixels_id,))
                if storage == "romio":
                    server.romio_path(pixels_id).unlink(missing_ok=True)
            db.execute("DELETE FROM pixels WHERE image_id = ?", (image_id,))
            db.execute("DELETE FROM wellsample WHERE image_id = ?", (image_id,))
            _delete_links(server, db, "image", image_id, anns)
            db.execute("DELETE FROM image WHERE id = ?", (image_id,))
        return
    if spec == "Plate":
        for plate_id in ids:
            wells = [r[0] for r in db.execute("SELECT id FROM well WHERE plate_id = ?", (plate_id,))]
            for well_id in wells:
                images = [r[0] for r in db.execute("SELECT image_id FROM wellsample WHERE well_id = ?", (well_id,))]
                db.execute("DELETE FROM wellsample WHERE well_id = ?", (well_id,))
                if children:
                    _delete(server, db, "Image", images, anns, children)
                _delete_links(server, db, "well", well_id, anns)
            db.execute("DELETE FROM well WHERE plate_id = ?", (plate_id,))
            _delete_links(server, db, "plate", plate_id, anns)
            db.execute("DELETE FROM plate WHERE id = ?", (plate_id,))
        return
    raise _api_error(f"stand-in: Delete2 of {spec} is not implemented")


def _delete_links(server: _Server, db: Any, kind: str, ident: int, anns: bool) -> None:
    children = [
        r[0]
        for r in db.execute(
            "SELECT child_id FROM annotation_link WHERE parent_kind = ? AND parent_id = ?", (kind, ident)
        )
    ]
    db.execute("DELETE FROM annotation_link WHERE parent_kind = ? AND parent_id = ?", (kind, ident))
    if anns:
        orphans = [
            c for c in children if not db.execute("SELECT 1 FROM annotation_link WHERE child_id = ?", (c,)).fetchone()
        ]
        _delete(server, db, "Annotation", orphans, anns, False)


# -- IPixels -----------------------------------------------------------------------------------------------
class _PixelsService:
    def __init__(self, gw: StandInGateway) -> None:
        self.gw = gw

    def createImage(  # noqa: N802
        self, sizeX: int, sizeY: int, sizeZ: int, sizeT: int, channelList: list[Any], pixelsType: Any,  # noqa: N803
        name: str, description: str, ctx: Any = None,
    ) -> Any:  # fmt: skip
        server = self.gw._check("createImage")
        if not all(type(v) is int for v in (sizeX, sizeY, sizeZ, sizeT, *channelList)):
            raise TypeError("createImage: sizes and channelList must be plain ints (Ice int / List<Integer>)")
        if not isinstance(name, str) or not isinstance(description, str):
            raise TypeError("createImage: name and description must be str")
        if pixelsType is None or not pixelsType.isLoaded():
            raise _api_error("pixelsType must be a loaded PixelsType")
        ptype = _val(pixelsType.getValue())
        size_c = len(channelList)
        if min(sizeX, sizeY, sizeZ, sizeT, size_c) < 1:
            raise omero.ValidationException(message="all sizes must be >= 1")
        with transaction(server.db) as db:
            image_id = db.execute(
                "INSERT INTO image (name, description, series, fileset_id) VALUES (?, ?, 0, NULL)", (name, description)
            ).lastrowid
            pixels_id = db.execute(
                "INSERT INTO pixels (image_id, sx, sy, sz, sc, st, ptype, storage)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'romio')",
                (image_id, sizeX, sizeY, sizeZ, size_c, sizeT, ptype),
            ).lastrowid
            for c in range(size_c):
                db.execute("INSERT INTO channel (pixels_id, idx) VALUES (?, ?)", (pixels_id, c))
            # a new pixel buffer reads as zeros until planes are written, as on a real server
            itemsize = np.dtype(OMERO_TO_NUMPY[ptype]).itemsize
            with open(server.romio_path(pixels_id), "wb") as handle:
                handle.truncate(sizeX * sizeY * sizeZ * size_c * sizeT * itemsize)
        return rlong(image_id)

    def setChannelGlobalMinMax(self, pixelsId: int, channelIndex: int, min: float, max: float, ctx: Any = None) -> None:  # noqa: N802,N803,A002
        server = self.gw._check("setChannelGlobalMinMax")
        with transaction(server.db) as db:
            db.execute(
                "UPDATE channel SET gmin = ?, gmax = ? WHERE pixels_id = ? AND idx = ?",
                (min, max, pixelsId, channelIndex),
            )


# -- RawPixelsStore ----------------------------------------------------------------------------------------
class _RawPixelsStore:
    def __init__(self, gw: StandInGateway) -> None:
        self.gw = gw
        self.row: dict[str, Any] | None = None
        self.closed = False

    def _server(self, method: str) -> _Server:
        if self.closed:
            raise Ice.ObjectNotExistException()
        server = self.gw._check(method)
        if method != "setPixelsId" and self.row is None:
            raise _api_error("setPixelsId must be called first")
        return server

    def _reply(self, server: _Server, array: np.ndarray) -> bytes:
        data = np.ascontiguousarray(array.astype(array.dtype.newbyteorder(">"))).tobytes()
        if len(data) > int(server.meta("message_limit")):
            raise Ice.MemoryLimitException()
        return data

    def setPixelsId(self, pixelsId: int, bypassOriginalFile: bool, ctx: Any = None) -> None:  # noqa: N802,N803
        server = self._server("setPixelsId")
        row = server.pixels_row(int(pixelsId))
        if row is None:
            raise omero.ValidationException(message=f"Pixels {pixelsId} does not exist")
        self.row = row

    def _plane_check(self, server: _Server, z: int, c: int, t: int) -> None:
        row = self.row
        assert row is not None
        if not (0 <= z < row["sz"] and 0 <= c < row["sc"] and 0 <= t < row["st"]):
            raise _api_error(f"plane z={z} c={c} t={t} outside {row['sz']}x{row['sc']}x{row['st']}")

    def getPlane(self, z: int, c: int, t: int, ctx: Any = None) -> bytes:  # noqa: N802
        server = self._server("getPlane")
        self._plane_check(server, z, c, t)
        if self.row["sx"] * self.row["sy"] > int(server.meta("max_plane_pixels")):
            raise _api_error("plane is larger than omero.pixeldata.max_plane_width x height: use getTile")
        return self._reply(server, server.volume(self.row)[t, c, z])

    def getStack(self, c: int, t: int, ctx: Any = None) -> bytes:  # noqa: N802
        server = self._server("getStack")
        self._plane_check(server, 0, c, t)
        return self._reply(server, server.volume(self.row)[t, c])

    def getTile(self, z: int, c: int, t: int, x: int, y: int, w: int, h: int, ctx: Any = None) -> bytes:  # noqa: N802
        server = self._server("getTile")
        self._plane_check(server, z, c, t)
        if x < 0 or y < 0 or x + w > self.row["sx"] or y + h > self.row["sy"]:
            raise _api_error("tile outside the plane")
        return self._reply(server, server.volume(self.row)[t, c, z, y : y + h, x : x + w])

    def _write(self, method: str, buf: bytes, z: int, c: int, t: int, x: int, y: int, w: int, h: int) -> None:
        server = self._server(method)
        self._plane_check(server, z, c, t)
        if len(buf) > int(server.meta("message_limit")):
            raise Ice.MemoryLimitException()
        dtype = np.dtype(OMERO_TO_NUMPY[self.row["ptype"]]).newbyteorder(">")
        if len(buf) != w * h * dtype.itemsize:
            raise _api_error(f"buffer of {len(buf)} bytes does not match a {w}x{h} {self.row['ptype']} region")
        volume = server.volume(self.row, writable=True)
        volume[t, c, z, y : y + h, x : x + w] = np.frombuffer(buf, dtype=dtype).reshape(h, w)
        volume.flush()

    def setPlane(self, buf: bytes, z: int, c: int, t: int, ctx: Any = None) -> None:  # noqa: N802
        self._write(
            "setPlane", buf, z, c, t, 0, 0, self.row["sx"] if self.row else 0, self.row["sy"] if self.row else 0
        )

    def setTile(self, buf: bytes, z: int, c: int, t: int, x: int, y: int, w: int, h: int, ctx: Any = None) -> None:  # noqa: N802
        self._write("setTile", buf, z, c, t, x, y, w, h)

    def save(self, ctx: Any = None) -> Any:
        server = self._server("save")
        data = server.romio_path(self.row["id"]).read_bytes()
        with transaction(server.db) as db:
            db.execute("UPDATE pixels SET sha1 = ? WHERE id = ?", (hashlib.sha1(data).hexdigest(), self.row["id"]))
        return M.PixelsI(self.row["id"], False)

    def close(self, ctx: Any = None) -> None:
        if not self.closed:
            self.gw._check("close(RawPixelsStore)")
        self.closed = True


# -- RawFileStore ------------------------------------------------------------------------------------------
class _RawFileStore:
    def __init__(self, gw: StandInGateway) -> None:
        self.gw = gw
        self.file_id: int | None = None
        self.closed = False

    def _server(self, method: str) -> _Server:
        if self.closed:
            raise Ice.ObjectNotExistException()
        return self.gw._check(method)

    def _path(self, server: _Server) -> Path:
        if self.file_id is None:
            raise _api_error("setFileId must be called first")
        return server.data_dir / "Files" / str(self.file_id)

    def setFileId(self, fileId: int, ctx: Any = None) -> None:  # noqa: N802,N803
        server = self._server("setFileId")
        if server.db.execute("SELECT 1 FROM original_file WHERE id = ?", (int(fileId),)).fetchone() is None:
            raise omero.ValidationException(message=f"OriginalFile {fileId} does not exist")
        self.file_id = int(fileId)

    def write(self, buf: bytes, position: int, length: int, ctx: Any = None) -> None:
        server = self._server("write")
        if length > int(server.meta("message_limit")):
            raise Ice.MemoryLimitException()
        path = self._path(server)
        mode = "r+b" if path.exists() else "wb"
        with open(path, mode) as handle:
            handle.seek(position)
            handle.write(bytes(buf[:length]))

    def read(self, position: int, length: int, ctx: Any = None) -> bytes:
        server = self._server("read")
        path = self._path(server)
        with open(path, "rb") as handle:
            handle.seek(position)
            return handle.read(length)

    def save(self, ctx: Any = None) -> Any:
        server = self._server("save(RawFileStore)")
        data = self._path(server).read_bytes()
        with transaction(server.db) as db:
            db.execute(
                "UPDATE original_file SET size = ?, hash = ? WHERE id = ?",
                (len(data), hashlib.sha1(data).hexdigest(), self.file_id),
            )
        return M.OriginalFileI(self.file_id, False)

    def close(self, ctx: Any = None) -> None:
        if not self.closed:
            self.gw._check("close(RawFileStore)")
        self.closed = True


# -- helpers the query module uses to build real model objects -----------------------------------------
def length_um(value: float | None) -> Any:
    return None if value is None else M.LengthI(float(value), UnitsLength.MICROMETER)


def length_nm(value: float | None) -> Any:
    return None if value is None else M.LengthI(float(value), UnitsLength.NANOMETER)


__all__ = ["StandInGateway", "length_nm", "length_um", "rint", "rlong", "rstring", "rtime"]
