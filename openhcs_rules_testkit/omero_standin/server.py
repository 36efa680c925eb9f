"""The stand-in's state (SQLite + a binary repository folder) and its administration (what an admin or an
import would do on a real server: add users, import a plate, expire sessions, stop the server).

Nothing here is called by the package; tests and the benchmark use it to set up and inspect the "server".
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

ROOT_ENV = "OMERO_STANDIN_ROOT"
GATEWAY_SPEC = "openhcs_rules_testkit.omero_standin.gateway:StandInGateway"
MANAGED = "ManagedRepository"

#: numpy dtype name -> OMERO PixelsType value (the server's enumeration)
NUMPY_TO_OMERO = {
    "int8": "int8",
    "uint8": "uint8",
    "int16": "int16",
    "uint16": "uint16",
    "int32": "int32",
    "uint32": "uint32",
    "float32": "float",
    "float64": "double",
}
OMERO_TO_NUMPY = {v: k for k, v in NUMPY_TO_OMERO.items()}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, password TEXT);
CREATE TABLE IF NOT EXISTS sessions (uuid TEXT PRIMARY KEY, user TEXT, valid INTEGER);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER);
CREATE TABLE IF NOT EXISTS pixels_type (id INTEGER PRIMARY KEY, value TEXT UNIQUE);
CREATE TABLE IF NOT EXISTS plate (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, description TEXT,
    rows INTEGER, columns INTEGER);
CREATE TABLE IF NOT EXISTS well (id INTEGER PRIMARY KEY AUTOINCREMENT, plate_id INTEGER, row INTEGER, col INTEGER);
CREATE TABLE IF NOT EXISTS wellsample (id INTEGER PRIMARY KEY AUTOINCREMENT, well_id INTEGER, image_id INTEGER);
CREATE TABLE IF NOT EXISTS image (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, description TEXT,
    series INTEGER, fileset_id INTEGER);
CREATE TABLE IF NOT EXISTS pixels (id INTEGER PRIMARY KEY AUTOINCREMENT, image_id INTEGER, sx INTEGER, sy INTEGER,
    sz INTEGER, sc INTEGER, st INTEGER, ptype TEXT, psx REAL, psz REAL, storage TEXT, file TEXT, offset INTEGER,
    series INTEGER, sha1 TEXT);
CREATE TABLE IF NOT EXISTS channel (id INTEGER PRIMARY KEY AUTOINCREMENT, pixels_id INTEGER, idx INTEGER, name TEXT,
    emission REAL, gmin REAL, gmax REAL);
CREATE TABLE IF NOT EXISTS fileset (id INTEGER PRIMARY KEY AUTOINCREMENT);
CREATE TABLE IF NOT EXISTS fileset_entry (id INTEGER PRIMARY KEY AUTOINCREMENT, fileset_id INTEGER, file_id INTEGER);
CREATE TABLE IF NOT EXISTS original_file (id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT, name TEXT, size INTEGER,
    hash TEXT, mimetype TEXT);
CREATE TABLE IF NOT EXISTS annotation (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT, ns TEXT, text TEXT,
    description TEXT, file_id INTEGER, created_ms INTEGER);
CREATE TABLE IF NOT EXISTS annotation_link (id INTEGER PRIMARY KEY AUTOINCREMENT, parent_kind TEXT,
    parent_id INTEGER, child_id INTEGER);
"""


def connect_db(root: Path) -> sqlite3.Connection:
    db = sqlite3.connect(root / "state.sqlite", timeout=60, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One server call = one transaction (BEGIN IMMEDIATE serialises writers across processes)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@dataclass
class ImportedPlate:
    plate_id: int
    image_ids: dict[tuple[str, int], int]  # (well name, 1-based site) -> image id
    files: list[Path]


class StandInServer:
    """Administration of one stand-in server rooted at ``root`` (``root/OMERO`` is its data_dir)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.data_dir = self.root / "OMERO"

    @classmethod
    def create(
        cls,
        root: str | os.PathLike[str],
        host: str = "localhost",
        port: int = 4064,
        users: Mapping[str, str] | None = None,
        message_limit: int = 250_000 * 1024,
        max_plane_pixels: int = 3192 * 3192,
    ) -> StandInServer:
        server = cls(root)
        server.root.mkdir(parents=True, exist_ok=True)
        for sub in (MANAGED, "Pixels", "Files"):
            (server.data_dir / sub).mkdir(parents=True, exist_ok=True)
        db = connect_db(server.root)
        db.executescript(SCHEMA)
        with transaction(db):
            for key, value in {
                "host": host,
                "port": str(port),
                "running": "1",
                "message_limit": str(message_limit),
                "max_plane_pixels": str(max_plane_pixels),
            }.items():
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            for name, password in (users or {"root": "omero"}).items():
                db.execute("INSERT OR REPLACE INTO users VALUES (?, ?)", (name, password))
            for index, value in enumerate(NUMPY_TO_OMERO.values(), start=1):
                db.execute("INSERT OR IGNORE INTO pixels_type VALUES (?, ?)", (index, value))
        db.close()
        return server

    def db(self) -> sqlite3.Connection:
        return connect_db(self.root)

    def environ(self) -> dict[str, str]:
        """Environment that makes the package (in this or a child process) talk to this stand-in."""
        from openhcs_rules.omero.adapter import GATEWAY_ENV

        return {GATEWAY_ENV: GATEWAY_SPEC, ROOT_ENV: str(self.root)}

    # -- server-side events ------------------------------------------------------------------------------
    def _set(self, key: str, value: str) -> None:
        db = self.db()
        with transaction(db):
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        db.close()

    def set_limits(self, message_limit: int | None = None, max_plane_pixels: int | None = None) -> None:
        if message_limit is not None:
            self._set("message_limit", str(message_limit))
        if max_plane_pixels is not None:
            self._set("max_plane_pixels", str(max_plane_pixels))

    def expire_sessions(self) -> None:
        """What OMERO's session timeout does: every open session becomes invalid."""
        db = self.db()
        with transaction(db):
            db.execute("UPDATE sessions SET valid = 0")
        db.close()

    def stop(self) -> None:
        self._set("running", "0")

    def stop_after(self, calls: int) -> None:
        """The server dies while answering the call after the next ``calls`` ones (a crash mid-run)."""
        self._set("calls_left", str(calls))

    def start(self) -> None:
        self._set("calls_left", "")
        self._set("running", "1")

    def calls(self) -> int:
        """Server calls answered so far (every service method and every login)."""
        db = self.db()
        row = db.execute("SELECT COALESCE(SUM(n), 0) FROM counters").fetchone()
        db.close()
        return int(row[0])

    def calls_by_method(self) -> dict[str, int]:
        db = self.db()
        rows = db.execute("SELECT name, n FROM counters").fetchall()
        db.close()
        return dict(rows)

    def query(self, sql: str, *args: object) -> list[tuple]:
        """Read the state directly (tests check what the package left behind)."""
        db = self.db()
        rows = db.execute(sql, args).fetchall()
        db.close()
        return rows

    # -- import ------------------------------------------------------------------------------------------
    def import_plate(
        self,
        name: str,
        rows: int,
        columns: int,
        wells: Mapping[str, list[np.ndarray]],
        channel_names: list[str] | None = None,
        pixel_size_um: float | None = 0.65,
        storage: str = "ome-tiff",
        empty_wells: list[str] = (),  # type: ignore[assignment]
        emission_nm: list[float] | None = None,
    ) -> ImportedPlate:
        """What importing an HCS dataset does: one Fileset, files in the managed repository, one Image per field.

        ``wells`` maps a well name to its fields, each a (t, c, z, y, x) array. ``storage`` picks the file
        the "microscope" wrote: ``ome-tiff`` (uncompressed, one multi-series file), ``ome-tiff-zlib``
        (compressed) or ``raw`` (a non-TIFF container, which only the server can decode).
        """
        from openhcs_rules.plate.naming import parse_well_name

        stamp = f"{time.strftime('%Y-%m')}/{os.getpid()}-{time.monotonic_ns()}/"
        folder = self.data_dir / MANAGED / "root_0" / stamp
        folder.mkdir(parents=True, exist_ok=True)
        fields = [(w, s, a) for w in sorted(wells, key=parse_well_name) for s, a in enumerate(wells[w], start=1)]
        if storage in ("ome-tiff", "ome-tiff-zlib"):
            filename = f"{name}.ome.tiff"
            compression = "zlib" if storage == "ome-tiff-zlib" else None
            with tifffile.TiffWriter(folder / filename, ome=True) as tif:
                for _, _, array in fields:
                    tif.write(
                        array,
                        metadata={"axes": "TCZYX"},
                        photometric="minisblack",
                        compression=compression,
                        contiguous=False,
                    )
            offsets = [0] * len(fields)
        elif storage == "raw":
            filename = f"{name}.rawplate"
            offsets = []
            with open(folder / filename, "wb") as handle:
                for _, _, array in fields:
                    offsets.append(handle.tell())
                    handle.write(array.astype(array.dtype.newbyteorder(">")).tobytes())
        else:
            raise ValueError(f"unknown storage {storage!r}")
        path = folder / filename
        data = path.read_bytes()
        db = self.db()
        image_ids: dict[tuple[str, int], int] = {}
        with transaction(db):
            plate_id = db.execute(
                "INSERT INTO plate (name, description, rows, columns) VALUES (?, '', ?, ?)", (name, rows, columns)
            ).lastrowid
            fileset_id = db.execute("INSERT INTO fileset DEFAULT VALUES").lastrowid
            file_id = db.execute(
                "INSERT INTO original_file (path, name, size, hash, mimetype) VALUES (?, ?, ?, ?, ?)",
                (f"root_0/{stamp}", filename, len(data), hashlib.sha1(data).hexdigest(), "application/octet-stream"),
            ).lastrowid
            db.execute("INSERT INTO fileset_entry (fileset_id, file_id) VALUES (?, ?)", (fileset_id, file_id))
            well_ids: dict[str, int] = {}
            for well in sorted(set(wells) | set(empty_wells), key=parse_well_name):
                row, col = parse_well_name(well)
                well_ids[well] = db.execute(
                    "INSERT INTO well (plate_id, row, col) VALUES (?, ?, ?)", (plate_id, row, col)
                ).lastrowid
            for series, ((well, site, array), offset) in enumerate(zip(fields, offsets, strict=True)):
                st, sc, sz, sy, sx = array.shape
                image_id = db.execute(
                    "INSERT INTO image (name, description, series, fileset_id) VALUES (?, '', ?, ?)",
                    (f"{name} [Well {well}, Field {site}]", series, fileset_id),
                ).lastrowid
                pixels_id = db.execute(
                    "INSERT INTO pixels (image_id, sx, sy, sz, sc, st, ptype, psx, psz, storage, file, offset, series)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        image_id, sx, sy, sz, sc, st, NUMPY_TO_OMERO[array.dtype.name], pixel_size_um,
                        1.0 if sz > 1 else None, storage, str(path.relative_to(self.data_dir)), offset, series,
                    ),
                ).lastrowid  # fmt: skip
                for c in range(sc):
                    label = channel_names[c] if channel_names and c < len(channel_names) else None
                    emission = emission_nm[c] if emission_nm and c < len(emission_nm) else None
                    db.execute(
                        "INSERT INTO channel (pixels_id, idx, name, emission) VALUES (?, ?, ?, ?)",
                        (pixels_id, c, label, emission),
                    )
                db.execute("INSERT INTO wellsample (well_id, image_id) VALUES (?, ?)", (well_ids[well], image_id))
                image_ids[(well, site)] = image_id
        db.close()
        return ImportedPlate(int(plate_id), image_ids, [path])
