"""Rule ``discover``: find a plate's wells, sites, channels, z and t once, and write ``plate.json``."""

from __future__ import annotations

import logging
from pathlib import Path

from openhcs_rules.plate.model import PlateStructure

log = logging.getLogger(__name__)


def discover(plate_name: str, path: str | Path, out_json: str | Path, format_name: str = "auto") -> PlateStructure:
    """Parse the plate folder (never writing into it) and save its structure as JSON."""
    from openhcs_rules.formats.registry import discover_plate, handler_for

    root = Path(path)
    if format_name == "auto":
        plate = discover_plate(root, name=plate_name)
    else:
        plate = handler_for(format_name).parse(root, plate_name)
    missing = plate.missing_sites()
    for well, sites in missing.items():
        message = (
            f"well {well} lacks planes for site(s) {sites} that other wells have; "
            "it is processed with what exists (see n_sites in wells.csv)"
        )
        if message not in plate.warnings:
            plate.warnings.append(message)
    for warning in plate.warnings:
        log.warning("%s: %s", plate_name, warning)
    log.info(
        "%s: %s plate, %d wells, sites %s, channels %s, z %s, t %s",
        plate_name,
        plate.format,
        len(plate.wells),
        plate.sites,
        plate.channel_indices,
        plate.z_planes,
        plate.timepoints,
    )
    plate.save_json(out_json)
    return plate
