"""Answers to exactly the HQL queries in ``openhcs_rules.omero.queries``, with OMERO's semantics.

Each handler returns what IQuery would: loaded model objects (with the fetch-joined collections filled in)
for ``findByQuery``/``findAllByQuery``, lists of RTypes for ``projection``. Unloaded references (a Well's
plate, an Image's fileset) are ``XI(id, False)`` as on a real server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import omero.model as M
from omero.rtypes import rint, rlong, rstring, rtime

from openhcs_rules.omero import queries as Q


def _s(value: Any) -> Any:
    return None if value is None else rstring(value)


def _length(value: float | None, unit: str) -> Any:
    from omero.model.enums import UnitsLength

    return None if value is None else M.LengthI(float(value), getattr(UnitsLength, unit))


def _plate(db: Any, v: dict[str, Any]) -> list[Any]:
    row = db.execute("SELECT id, name, description, rows, columns FROM plate WHERE id = ?", (v["pid"],)).fetchone()
    if row is None:
        return []
    plate = M.PlateI(row[0], True)
    plate.setName(_s(row[1]))
    plate.setDescription(_s(row[2]))
    plate.setRows(None if row[3] is None else rint(row[3]))
    plate.setColumns(None if row[4] is None else rint(row[4]))
    return [plate]


def _pixels_type(db: Any, value: str) -> Any:
    row = db.execute("SELECT id, value FROM pixels_type WHERE value = ?", (value,)).fetchone()
    ptype = M.PixelsTypeI(row[0], True)
    ptype.setValue(rstring(row[1]))
    return ptype


def _image(db: Any, image_id: int) -> Any:
    img_row = db.execute(
        "SELECT id, name, description, series, fileset_id FROM image WHERE id = ?", (image_id,)
    ).fetchone()
    image = M.ImageI(img_row[0], True)
    image.setName(_s(img_row[1]))
    image.setDescription(_s(img_row[2]))
    image.setSeries(rint(img_row[3] or 0))
    if img_row[4] is not None:
        image.setFileset(M.FilesetI(img_row[4], False))
    for pid, sx, sy, sz, sc, st, ptype, psx, psz in db.execute(
        "SELECT id, sx, sy, sz, sc, st, ptype, psx, psz FROM pixels WHERE image_id = ?", (image_id,)
    ).fetchall():
        pix = M.PixelsI(pid, True)
        for setter, value in (("SizeX", sx), ("SizeY", sy), ("SizeZ", sz), ("SizeC", sc), ("SizeT", st)):
            getattr(pix, "set" + setter)(rint(value))
        pix.setPixelsType(_pixels_type(db, ptype))
        pix.setDimensionOrder(M.DimensionOrderI(1, False))
        pix.setPhysicalSizeX(_length(psx, "MICROMETER"))
        pix.setPhysicalSizeY(_length(psx, "MICROMETER"))
        pix.setPhysicalSizeZ(_length(psz, "MICROMETER"))
        image.addPixels(pix)
    return image


def _plate_wells(db: Any, v: dict[str, Any]) -> list[Any]:
    wells = []
    for well_id, row, col in db.execute("SELECT id, row, col FROM well WHERE plate_id = ?", (v["pid"],)).fetchall():
        well = M.WellI(well_id, True)
        well.setRow(rint(row))
        well.setColumn(rint(col))
        well.setPlate(M.PlateI(v["pid"], False))
        for ws_id, image_id in db.execute(
            "SELECT id, image_id FROM wellsample WHERE well_id = ? ORDER BY id", (well_id,)
        ).fetchall():
            sample = M.WellSampleI(ws_id, True)
            sample.setImage(_image(db, image_id))
            well.addWellSample(sample)
        wells.append(well)
    return wells


def _pixels_channels(db: Any, v: dict[str, Any]) -> list[Any]:
    row = db.execute("SELECT id FROM pixels WHERE id = ?", (v["pxid"],)).fetchone()
    if row is None:
        return []
    pix = M.PixelsI(row[0], True)
    for ch_id, name, emission in db.execute(
        "SELECT id, name, emission FROM channel WHERE pixels_id = ? ORDER BY idx", (v["pxid"],)
    ).fetchall():
        channel = M.ChannelI(ch_id, True)
        logical = M.LogicalChannelI(ch_id, True)  # one LogicalChannel per Channel in this stand-in
        logical.setName(_s(name))
        logical.setEmissionWave(_length(emission, "NANOMETER"))
        channel.setLogicalChannel(logical)
        pix.addChannel(channel)
    return [pix]


def _plate_files(db: Any, v: dict[str, Any]) -> list[list[Any]]:
    rows = db.execute(
        "SELECT fe.fileset_id, f.path, f.name FROM fileset_entry fe JOIN original_file f ON f.id = fe.file_id"
        " WHERE fe.fileset_id IN (SELECT i.fileset_id FROM wellsample ws JOIN image i ON i.id = ws.image_id"
        " JOIN well w ON w.id = ws.well_id WHERE w.plate_id = ?)",
        (v["pid"],),
    ).fetchall()
    return [[rlong(fs), rstring(path), rstring(name)] for fs, path, name in rows]


def _derived_plates(db: Any, v: dict[str, Any]) -> list[list[Any]]:
    rows = db.execute(
        "SELECT l.parent_id FROM annotation_link l JOIN annotation a ON a.id = l.child_id"
        " WHERE l.parent_kind = 'plate' AND a.kind = 'comment' AND a.ns = ? AND a.text = ? ORDER BY l.parent_id",
        (v["ns"], v["key"]),
    ).fetchall()
    return [[rlong(r[0])] for r in rows]


def _well_positions(db: Any, v: dict[str, Any]) -> list[list[Any]]:
    rows = db.execute("SELECT id, row, col FROM well WHERE plate_id = ?", (v["pid"],)).fetchall()
    return [[rlong(w), rint(r), rint(c)] for w, r, c in rows]


def _well_samples(db: Any, v: dict[str, Any]) -> list[list[Any]]:
    rows = db.execute(
        "SELECT ws.id, i.id, i.name, i.description FROM wellsample ws JOIN image i ON i.id = ws.image_id"
        " WHERE ws.well_id = ? ORDER BY ws.id",
        (v["wid"],),
    ).fetchall()
    return [[rlong(a), rlong(b), _s(c), _s(d)] for a, b, c, d in rows]


def _image_pixels(db: Any, v: dict[str, Any]) -> list[list[Any]]:
    return [[rlong(r[0])] for r in db.execute("SELECT id FROM pixels WHERE image_id = ?", (v["iid"],)).fetchall()]


def _pixels_type_query(db: Any, v: dict[str, Any]) -> list[Any]:
    row = db.execute("SELECT 1 FROM pixels_type WHERE value = ?", (v["value"],)).fetchone()
    return [_pixels_type(db, v["value"])] if row else []


def _well_sample(db: Any, v: dict[str, Any]) -> list[Any]:
    row = db.execute("SELECT id, well_id, image_id FROM wellsample WHERE id = ?", (v["wsid"],)).fetchone()
    if row is None:
        return []
    sample = M.WellSampleI(row[0], True)
    sample.setWell(M.WellI(row[1], False))
    sample.setImage(M.ImageI(row[2], False))
    return [sample]


def _file_annotations(kind: str) -> Callable[[Any, dict[str, Any]], list[list[Any]]]:
    def handler(db: Any, v: dict[str, Any]) -> list[list[Any]]:
        rows = db.execute(
            "SELECT a.id, f.id, f.name, f.size, f.hash, a.created_ms FROM annotation_link l"
            " JOIN annotation a ON a.id = l.child_id JOIN original_file f ON f.id = a.file_id"
            " WHERE l.parent_kind = ? AND l.parent_id = ? AND a.kind = 'file' AND a.ns = ? ORDER BY a.id",
            (kind, v["oid"], v["ns"]),
        ).fetchall()
        return [
            [rlong(a), rlong(f), rstring(n), rlong(s or 0), _s(h), None if t is None else rtime(t)]
            for a, f, n, s, h, t in rows
        ]

    return handler


HANDLERS: dict[str, Callable[[Any, dict[str, Any]], list[Any]]] = {
    Q.PLATE_BY_ID: _plate,
    Q.PLATE_WELLS: _plate_wells,
    Q.PIXELS_CHANNELS: _pixels_channels,
    Q.PLATE_FILES: _plate_files,
    Q.DERIVED_PLATES: _derived_plates,
    Q.WELL_POSITIONS: _well_positions,
    Q.WELL_SAMPLES: _well_samples,
    Q.IMAGE_PIXELS: _image_pixels,
    Q.PIXELS_TYPE: _pixels_type_query,
    Q.WELL_SAMPLE_BY_ID: _well_sample,
    **{Q.file_annotations_query(kind): _file_annotations(kind) for kind in Q.LINK_CLASSES},
}
assert set(HANDLERS) == set(Q.ALL_QUERIES), "the stand-in must answer exactly the adapter's queries"
