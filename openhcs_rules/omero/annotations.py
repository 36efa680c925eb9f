"""Small result files (.json .csv .txt .tsv) as FileAnnotations on the plate, well or image they describe.

Which object a file describes is read from its path: a component like ``B03_s002`` (or a file name starting
with it) names field 2 of well B03, a component like ``B03`` names the well, anything else the plate. So
``wells/B03/summary.json`` goes to well B03, ``wells.csv`` to the plate and ``B03_s002_cells.tsv`` to the
image of that field. All carry :data:`NS_RESULTS`; a rerun uploads the new file, links it, and only then
deletes the old annotation of the same name (an identical file is left as it is).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from openhcs_rules.omero.adapter import OmeroSession
from openhcs_rules.omero.derived import PlateRef, image_name
from openhcs_rules.omero.errors import OmeroNotFoundError
from openhcs_rules.omero.records import FileAnnotationRecord
from openhcs_rules.plate.naming import normalise_well_name

NS_RESULTS = "openhcs-rules.org/results"
MIMETYPES = {
    ".json": "application/json",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".txt": "text/plain",
}
_IMAGE_RE = re.compile(r"^([A-Za-z]{1,2})(\d{1,2})_s(\d{1,4})(?=[_.\-]|$)")
_WELL_RE = re.compile(r"^([A-Za-z]{1,2})(\d{1,2})(?=[_.\-]|$)")


def is_result_file(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in MIMETYPES


@dataclass(frozen=True)
class Target:
    """The object a result file is linked to."""

    kind: str  # "plate", "well" or "image"
    well: str | None = None
    site: int | None = None

    def describe(self) -> str:
        if self.kind == "image":
            return f"image {image_name(self.well or '', self.site or 0)}"
        return f"well {self.well}" if self.kind == "well" else "plate"


def _valid_well(letters: str, digits: str) -> str | None:
    try:
        name = normalise_well_name(f"{letters}{digits}")
    except ValueError:
        return None
    row = name.rstrip("0123456789")
    column = int(name[len(row) :])
    return name if (len(row) == 1 or row <= "AF") and 1 <= column <= 48 else None


def target_for_path(path: str) -> Target:
    """The plate, well or image a relative result path names (see module docstring)."""
    parts = PurePosixPath(path).parts
    for part in reversed(parts):
        match = _IMAGE_RE.match(part)
        if match and (well := _valid_well(match.group(1), match.group(2))):
            return Target("image", well, int(match.group(3)))
    for part in reversed(parts):
        match = _WELL_RE.match(part)
        if match and (well := _valid_well(match.group(1), match.group(2))):
            return Target("well", well)
    return Target("plate")


def resolve(session: OmeroSession, derived: PlateRef, target: Target) -> tuple[str, int]:
    """(kind, object id) of a target in the derived plate; a clear error if it does not exist yet."""
    if target.kind == "plate":
        return "plate", derived.plate_id
    well_id = derived.wells.get(target.well or "")
    if well_id is None:
        raise OmeroNotFoundError(f"well {target.well} is not in derived plate {derived.plate_id}")
    if target.kind == "well":
        return "well", well_id
    name = image_name(target.well or "", target.site or 0)
    samples = session.well_samples(well_id)
    for sample in samples:
        if sample.image_name == name:  # images openhcs-rules wrote are named after their well and field
            return "image", sample.image_id
    if not any(s.image_name.startswith(f"{target.well}_s") for s in samples) and 0 < (target.site or 0) <= len(samples):
        return "image", samples[(target.site or 1) - 1].image_id  # an imported plate: fields in WellSample order
    raise OmeroNotFoundError(
        f"{target.describe()} does not exist in OMERO plate {derived.plate_id} yet: publish the well's images first"
    )


def find_annotation(session: OmeroSession, kind: str, object_id: int, name: str) -> list[FileAnnotationRecord]:
    return [r for r in session.file_annotations(kind, object_id, NS_RESULTS) if r.name == name]


def put_file(session: OmeroSession, kind: str, object_id: int, name: str, data: bytes) -> tuple[int, str]:
    """Upload ``data`` as ``name`` on the object, replacing an older one: (annotation id, action)."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in MIMETYPES:
        raise ValueError(f"{name}: only {', '.join(sorted(MIMETYPES))} files become FileAnnotations")
    old = find_annotation(session, kind, object_id, name)
    sha1 = hashlib.sha1(data).hexdigest()
    if len(old) == 1 and old[0].sha1 == sha1 and old[0].size == len(data):
        return old[0].annotation_id, "reused"
    new_id = session.upload_file_annotation(kind, object_id, name, data, MIMETYPES[suffix], NS_RESULTS)
    session.delete("Annotation", [r.annotation_id for r in old])
    return new_id, "replaced" if old else "created"


def get_file(session: OmeroSession, kind: str, object_id: int, name: str) -> bytes:
    found = find_annotation(session, kind, object_id, name)
    if not found:
        raise FileNotFoundError(f"no {name} annotation on {kind} {object_id}")
    newest = found[-1]
    return session.download_file(newest.file_id, newest.size)
