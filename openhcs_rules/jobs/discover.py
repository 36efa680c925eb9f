"""Rule ``discover``: find a plate's wells, sites, channels, z and t once, and write ``plate.json``."""

from __future__ import annotations

import logging
from pathlib import Path

from openhcs_rules.errors import ConfigError
from openhcs_rules.plate.model import PlateStructure

log = logging.getLogger(__name__)


def discover(
    plate_name: str,
    path: str | Path,
    out_json: str | Path,
    format_name: str = "auto",
    nuclei_channel: int | str | None = None,
    pipeline_path: str | Path | None = None,
    pattern: str | None = None,
    layout: int | None = None,
) -> PlateStructure:
    """Parse the plate folder (never writing into it) and save its structure as JSON.

    With ``nuclei_channel`` / ``pipeline_path``, every channel the pipeline will ask for is checked against
    the plate's channels first: a plate.json is only written for a plate its wells can be processed on.
    """
    from openhcs_rules.formats.registry import discover_plate

    root = Path(path)
    # format 'pattern' reads file names by ``pattern`` (plate ``layout``: a well count); detection never does
    plate = discover_plate(root, plate_name, format_name, pattern=pattern, layout=layout)
    missing = plate.missing_sites()
    for well, sites in missing.items():
        message = (
            f"well {well} lacks planes for site(s) {sites} that other wells have; "
            "it is processed with what exists (see n_sites in wells.csv)"
        )
        if message not in plate.warnings:
            plate.warnings.append(message)
    check_channels(plate, plate_name, nuclei_channel, pipeline_path)
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


def check_channels(
    plate: PlateStructure, plate_name: str, nuclei_channel: int | str | None, pipeline_path: str | Path | None
) -> None:
    """Raise ConfigError when the nuclei channel or a channel a pipeline step names is not in this plate."""
    from openhcs_rules.pipeline.channel_check import channel_problems, nuclei_channel_problem
    from openhcs_rules.pipeline.serialize import load_pipeline

    names = {index: plate.channel(index).name for index in plate.channel_indices}
    problems = [problem for problem in [nuclei_channel_problem(names, nuclei_channel)] if problem]
    if pipeline_path is not None:
        pipeline = load_pipeline(pipeline_path)
        found = channel_problems(pipeline, names, nuclei_channel)
        problems += [p for p in found if not (problems and "(nuclei_channel is" in p)]  # said once is enough
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigError(
            f"plate {plate_name!r} ({plate.format}): its channels do not fit the screen:\n{lines}\n"
            f"Set plates.{plate_name}.nuclei_channel (this plate only) or nuclei_channel (every plate) to one of "
            "its channels, by index or name."
        )
