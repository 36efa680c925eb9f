"""Every HQL query the adapter sends, in one place.

Why constants: the number of queries per plate is the discovery cost (O(1), however many wells), and the
test stand-in answers exactly these queries with OMERO's documented semantics, so a query added here must be
added there (it refuses any other text). All are parameterised (``:pid``...), never formatted with values,
except :func:`file_annotations_query`, whose link class comes from a fixed set of three.
"""

from __future__ import annotations

#: one Plate by id (None when missing or not visible)
PLATE_BY_ID = "select p from Plate p where p.id = :pid"

#: every Well of a plate with its WellSamples, Images, Pixels and PixelsType in one round trip
PLATE_WELLS = (
    "select distinct w from Well w"
    " left outer join fetch w.wellSamples ws"
    " left outer join fetch ws.image img"
    " left outer join fetch img.pixels pix"
    " left outer join fetch pix.pixelsType"
    " where w.plate.id = :pid"
)

#: one Pixels with its Channels (index order) and LogicalChannels (names, wavelengths)
PIXELS_CHANNELS = (
    "select distinct pix from Pixels pix"
    " left outer join fetch pix.channels ch"
    " left outer join fetch ch.logicalChannel"
    " where pix.id = :pxid"
)

#: (fileset id, path, name) of every original file of every fileset behind the plate's images
PLATE_FILES = (
    "select fs.id, f.path, f.name from Fileset fs join fs.usedFiles fe join fe.originalFile f"
    " where fs.id in (select img.fileset.id from WellSample ws join ws.image img where ws.well.plate.id = :pid)"
)

#: ids of plates tagged as derived with this key (CommentAnnotation ns + text), oldest first
DERIVED_PLATES = (
    "select l.parent.id from PlateAnnotationLink l, CommentAnnotation a"
    " where l.child.id = a.id and a.ns = :ns and a.textValue = :key order by l.parent.id"
)

#: (well id, row, column) of a plate's wells
WELL_POSITIONS = "select w.id, w.row, w.column from Well w where w.plate.id = :pid"

#: (wellsample id, image id, image name, image description) of one well, oldest first
WELL_SAMPLES = (
    "select ws.id, img.id, img.name, img.description from WellSample ws join ws.image img"
    " where ws.well.id = :wid order by ws.id"
)

#: the Pixels id of an Image (an Image has exactly one Pixels in OMERO 5)
IMAGE_PIXELS = "select pix.id from Pixels pix where pix.image.id = :iid"

#: the PixelsType object for a value such as 'uint16' (IPixels.createImage takes the object)
PIXELS_TYPE = "select p from PixelsType p where p.value = :value"

#: one WellSample, loaded so its image can be changed
WELL_SAMPLE_BY_ID = "select ws from WellSample ws where ws.id = :wsid"

#: link classes FileAnnotations can hang from, by the kind of object a result path names
LINK_CLASSES = {"plate": "PlateAnnotationLink", "well": "WellAnnotationLink", "image": "ImageAnnotationLink"}


def file_annotations_query(kind: str) -> str:
    """(annotation id, file id, file name, size, sha1, creation ms) of ``kind``'s FileAnnotations in ``:ns``."""
    link = LINK_CLASSES[kind]
    return (
        f"select a.id, f.id, f.name, f.size, f.hash, a.details.creationEvent.time from {link} l,"
        " FileAnnotation a join a.file f"
        " where l.child.id = a.id and l.parent.id = :oid and a.ns = :ns order by a.id"
    )


ALL_QUERIES = frozenset(
    [
        PLATE_BY_ID,
        PLATE_WELLS,
        PIXELS_CHANNELS,
        PLATE_FILES,
        DERIVED_PLATES,
        WELL_POSITIONS,
        WELL_SAMPLES,
        IMAGE_PIXELS,
        PIXELS_TYPE,
        WELL_SAMPLE_BY_ID,
        *(file_annotations_query(kind) for kind in LINK_CLASSES),
    ]
)
