# Shared definitions: the validated config, paths, wildcard constraints and input functions.

import json
import re
import sys

from snakemake.exceptions import WorkflowError

from openhcs_rules.config import validate_screen_config
from openhcs_rules.errors import ConfigError
from openhcs_rules.plate.model import PlateStructure

try:
    SCREEN = validate_screen_config(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

OUT = SCREEN["output"]["dir"].rstrip("/")
BACKEND = SCREEN["output"]["backend"]
PLATES = list(SCREEN["plates"])
# each job is `python -m openhcs_rules <command>` with this interpreter: no Snakemake import per job
OPENHCS = f'"{sys.executable}" -m openhcs_rules'


wildcard_constraints:
    plate="|".join(re.escape(p) for p in PLATES),
    well="[A-Z]{1,2}[0-9]{2,3}",


def plate_source(plate):
    return SCREEN["plates"][plate]


def plate_folder(plate):
    """Where a plate's images are: the configured folder, or the generated one for synthetic plates."""
    entry = plate_source(plate)
    if entry["source"] == "synthetic":
        return f"resources/synthetic/{plate}"
    if entry["source"] == "omero":
        from openhcs_rules.omero.params import plate_url_from_config

        return plate_url_from_config(SCREEN["omero"], entry["plate_id"])  # omero://user@host:port/plate/<id>?...
    return entry["path"]


def generated_plate_marker(wildcards):
    """Synthetic plates depend on their generation; disk plates are external (never rebuilt)."""
    if plate_source(wildcards.plate)["source"] == "synthetic":
        return f"resources/synthetic/{wildcards.plate}/ground_truth.csv"
    return []


def wells_of(plate):
    """Wells of a plate, read from the discover checkpoint's plate.json (discovery runs once per plate)."""
    plate_json = checkpoints.discover.get(plate=plate).output.json
    return PlateStructure.load_json(plate_json).well_names


def well_summaries(wildcards):
    return expand(f"{OUT}/{{plate}}/wells/{{well}}/summary.json", plate=wildcards.plate, well=wells_of(wildcards.plate))


def plate_images_output():
    return f"{OUT}/{{plate}}/plate.ome.zarr" if BACKEND == "zarr" else f"{OUT}/{{plate}}/images"


def well_images_output():
    return f"{OUT}/{{plate}}/wells/{{well}}/images.zarr" if BACKEND == "zarr" else f"{OUT}/{{plate}}/wells/{{well}}/images"


def all_results():
    targets = []
    for plate in PLATES:
        targets += [
            f"{OUT}/{plate}/wells.csv",
            f"{OUT}/{plate}/objects.csv",
            f"{OUT}/{plate}/heatmap.png",
        ]
    return targets
