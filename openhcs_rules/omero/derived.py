"""Derived plates: where the results of an OMERO plate go, with the source plate's well layout.

Rules that make concurrent well jobs and reruns safe without any lock on the server:
- A derived plate is found by a tag (CommentAnnotation, our namespace, text naming the source plate and the
  output). It is created with all of its wells in one transaction, so a visible plate always has its wells.
  If several jobs create one at the same time, the plate with the lowest id wins: every job uses the lowest,
  and a job whose own new plate is not the lowest deletes it before writing anything. Ids only grow, so all
  jobs converge on the same plate.
- An image is created unlinked, filled with all of its planes, saved, and only then linked to its well.
  A plate therefore never shows an image without its data (the "black well" bug), and a job that dies
  half-way leaves at most an unlinked image, never a half-written well.
- A rerun compares a digest of the new pixels with the one recorded in the linked image's description:
  equal -> reuse, different -> create the new image, point the WellSample at it, delete the old image.
  If two jobs wrote the same well and site at once, the lowest WellSample wins and the other job deletes
  its own duplicate: never two images for one field.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

import numpy as np

from openhcs_rules.omero.adapter import DEFAULT_MESSAGE_LIMIT, OmeroSession
from openhcs_rules.omero.errors import OmeroWriteError
from openhcs_rules.omero.structure import omero_meta
from openhcs_rules.plate.model import PlateStructure
from openhcs_rules.plate.naming import parse_well_name, well_name

log = logging.getLogger(__name__)

NS_DERIVED = "openhcs-rules.org/derived-plate"
DEFAULT_OUTPUT = "openhcs-rules"
_DIGEST_RE = re.compile(r"sha256=([0-9a-f]{64})")


@dataclass(frozen=True)
class PlateRef:
    """A plate results are linked to (usually a derived plate) and its wells by name."""

    plate_id: int
    source_plate_id: int
    wells: dict[str, int]  # well name -> Well id


@dataclass(frozen=True)
class SiteWrite:
    well: str
    site: int
    image_id: int
    action: str  # "created", "replaced" or "reused"


def derived_key(source_plate_id: int, output: str) -> str:
    return f"source_plate={int(source_plate_id)};output={output}"


def image_name(well: str, site: int) -> str:
    return f"{well}_s{site:03d}"


def layout_positions(plate: PlateStructure) -> list[tuple[int, int]]:
    """0-based (row, column) of every well the source plate has in OMERO, including empty ones."""
    names = set(plate.well_names) | set(omero_meta(plate).get("empty_wells", []))
    return sorted(parse_well_name(n) for n in names)


def ensure_derived_plate(session: OmeroSession, plate: PlateStructure, output: str = DEFAULT_OUTPUT) -> PlateRef:
    """Find or create the derived plate of ``plate`` for ``output`` (safe when many jobs call it at once)."""
    meta = omero_meta(plate)
    source_id = int(meta["plate_id"])
    key = derived_key(source_id, output)
    ids = session.find_tagged_plates(NS_DERIVED, key)
    if not ids:
        created = session.create_tagged_plate(
            name=f"{meta.get('plate_name') or plate.name} [{output}]",
            description=f"results of OMERO plate {source_id} written by openhcs-rules ({output})",
            rows=plate.rows,
            columns=plate.columns,
            wells=layout_positions(plate),
            ns=NS_DERIVED,
            key=key,
        )
        ids = session.find_tagged_plates(NS_DERIVED, key)
        if created != min(ids):
            log.info("derived plate %d lost the creation race to %d; deleting it", created, min(ids))
            session.delete("Plate", [created])
        else:
            log.info("created derived plate %d for OMERO plate %d (%s)", created, source_id, output)
    chosen = min(ids)
    wells = {well_name(r, c): w for (r, c), w in session.well_positions(chosen).items()}
    return PlateRef(chosen, source_id, wells)


def plate_ref(session: OmeroSession, plate_id: int) -> PlateRef:
    """Any plate (e.g. the source plate itself) as a link target: its wells by name."""
    wells = {well_name(r, c): w for (r, c), w in session.well_positions(plate_id).items()}
    return PlateRef(int(plate_id), int(plate_id), wells)


def pixels_digest(data: np.ndarray, channel_names: list[str]) -> str:
    """What decides reuse on a rerun: shape, type, channel names and every pixel."""
    digest = hashlib.sha256()
    digest.update(repr((data.shape, data.dtype.str, list(channel_names))).encode())
    digest.update(np.ascontiguousarray(data).tobytes())
    return digest.hexdigest()


def write_site(
    session: OmeroSession,
    derived: PlateRef,
    well: str,
    site: int,
    data: np.ndarray,
    channel_names: list[str],
    pixel_size_um: float | None = None,
    message_limit: int = DEFAULT_MESSAGE_LIMIT,
) -> SiteWrite:
    """Make ``well``/``site`` of the derived plate hold ``data`` (t, c, z, y, x): create, replace or reuse."""
    if data.ndim != 5:
        raise ValueError(f"site data must be (t, c, z, y, x), got shape {data.shape}")
    if well not in derived.wells:
        raise OmeroWriteError(
            f"well {well} is not in derived plate {derived.plate_id} (its layout comes from OMERO plate "
            f"{derived.source_plate_id}); rerun discovery"
        )
    well_id = derived.wells[well]
    name = image_name(well, site)
    digest = pixels_digest(data, channel_names)
    mine = [s for s in session.well_samples(well_id) if s.image_name == name]
    if mine:
        found = _DIGEST_RE.search(mine[0].image_description)
        if found and found.group(1) == digest:
            return SiteWrite(well, site, mine[0].image_id, "reused")
    description = (
        f"openhcs-rules result for {well} field {site} of OMERO plate {derived.source_plate_id}; sha256={digest}"
    )
    image_id = session.create_image(name, description, data, channel_names, pixel_size_um, message_limit)
    if mine:
        session.relink_sample(mine[0].wellsample_id, image_id)
        session.delete("Image", [mine[0].image_id])
        action = "replaced"
    else:
        session.link_image(well_id, image_id)
        action = "created"
    _drop_duplicates(session, well_id, name, image_id)
    return SiteWrite(well, site, image_id, action)


def _drop_duplicates(session: OmeroSession, well_id: int, name: str, my_image: int) -> None:
    """Two writers of one field: the lowest WellSample stays; a writer whose sample is not it removes its image."""
    samples = [s for s in session.well_samples(well_id) if s.image_name == name]
    if len(samples) > 1 and samples[0].image_id != my_image and any(s.image_id == my_image for s in samples):
        log.warning(
            "well %d: another job wrote %s at the same time; keeping image %d", well_id, name, samples[0].image_id
        )
        session.delete("Image", [my_image])


def wells_without_images(session: OmeroSession, derived: PlateRef, expected: list[str]) -> list[str]:
    """Wells of ``expected`` that have no image in the derived plate (what a black well looks like)."""
    return [w for w in expected if w not in derived.wells or not session.well_samples(derived.wells[w])]
