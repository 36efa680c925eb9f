# Shared definitions: the validated config, paths, wildcard constraints and input functions.

import json
import os
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from openhcs_rules.config import check_screen
from openhcs_rules.deployment import container_problem, job_interpreter
from openhcs_rules.errors import ConfigError
from openhcs_rules.jobs.options import WellJobOptions
from openhcs_rules.jobs.process_wells import drop_stale_chunks as drop_stale_chunks_of
from openhcs_rules.plate.chunks import CHUNK_PATTERN, well_chunks
from openhcs_rules.plate.model import PlateStructure

try:  # the same check as `openhcs-rules validate`: a bad plate path or pipeline stops the run before any job
    SCREEN = check_screen(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

OUT = SCREEN["output"]["dir"].rstrip("/")  # never the filesystem root: check_screen refuses it
BACKEND = SCREEN["output"]["backend"]
PLATES = list(SCREEN["plates"])
# Each job is `"$OPENHCS_RULES_PYTHON" -m openhcs_rules <command>`: this interpreter, no Snakemake import per
# job. An environment variable, not a param of the rules; Snakemake compares params between runs, and the
# interpreter's path is a fact of this machine (another venv, or `python -m snakemake`, must not make every
# job look changed). Every Snakemake process that runs jobs (also on a cluster node) parses this file and
# sets it for the shells it starts. Under --sdm conda / apptainer it is the environment's own `python`.
DEPLOYMENT = [method.name for method in workflow.deployment_settings.deployment_method]
os.environ["OPENHCS_RULES_PYTHON"] = job_interpreter(DEPLOYMENT)
CONTAINER = SCREEN["software"]["container"]
if container_problem(DEPLOYMENT, CONTAINER):
    raise WorkflowError(container_problem(DEPLOYMENT, CONTAINER))


wildcard_constraints:
    plate="|".join(re.escape(p) for p in PLATES),
    chunk=CHUNK_PATTERN,


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


def well_job_args(wildcards, input):
    """Every option of a plate's well jobs as one argument list, from the one definition (WellJobOptions)."""
    # streaming=None: the viewers' block is read from input.viewers (rules/viewers.smk), never a param, so
    # switching streaming on or off does not make finished wells run again
    options = WellJobOptions.from_screen(SCREEN, wildcards.plate, illumination=input.illumination, streaming=None)
    return options.to_argv()


def nuclei_channel_args(plate):
    """``--nuclei-channel X`` for a plate (its own setting, else the screen's), or nothing for the first channel.

    An option and its value, or an empty list: an empty value would be dropped by shell quoting, not passed as ''.
    """
    channel = WellJobOptions.from_screen(SCREEN, plate).nuclei_channel
    return [] if channel is None else ["--nuclei-channel", str(channel)]


def pattern_args(plate):
    """``--pattern REGEX [--pattern-layout N]`` for a ``format: pattern`` plate, nothing for any other."""
    entry = plate_source(plate)
    args = ["--pattern", entry["pattern"]] if entry.get("pattern") else []
    return args + (["--pattern-layout", str(entry["pattern_layout"])] if entry.get("pattern_layout") else [])


def generated_plate_marker(wildcards):
    """Synthetic plates depend on their generation; disk plates are external (never rebuilt)."""
    if plate_source(wildcards.plate)["source"] == "synthetic":
        return f"resources/synthetic/{wildcards.plate}/ground_truth.csv"
    return []


_CHUNKS = {}


def plate_chunks(plate, plate_json):
    """Chunk name -> wells of a plate.json, parsed once per version of the file (keyed by its mtime)."""
    key = (plate, os.stat(plate_json).st_mtime_ns)
    if key not in _CHUNKS:
        wells = PlateStructure.load_json(plate_json).well_names
        _CHUNKS[key] = well_chunks(wells, SCREEN["wells_per_job"])
    return _CHUNKS[key]


def chunks_of(plate):
    """Chunk name -> wells, from the discover checkpoint's plate.json (discovery runs once per plate)."""
    return plate_chunks(plate, checkpoints.discover.get(plate=plate).output.json)


def wells_folder(plate):
    """The plate's well folders' parent, ``<out>/<plate>/wells`` (one folder per well: io/well_folder.py)."""
    return f"{OUT}/{plate}/wells"


def chunk_manifest(plate, chunk):
    return f"{OUT}/{plate}/chunks/{chunk}.json"


def chunk_manifests(wildcards):
    return [chunk_manifest(wildcards.plate, chunk) for chunk in chunks_of(wildcards.plate)]


def drop_stale_chunks():
    """Before planning, in the main Snakemake process only: chunks whose wells are not all complete run again
    (process_wells.drop_stale_chunks says why and how)."""
    for plate in PLATES:
        plate_json = f"{OUT}/{plate}/plate.json"
        if os.path.exists(plate_json):
            for line in drop_stale_chunks_of(f"{OUT}/{plate}", plate_chunks(plate, plate_json), BACKEND):
                logger.warning(f"{plate} {line}")


if not workflow.remote_exec and not workflow.subprocess_exec:
    drop_stale_chunks()


def chunk_runtime(wildcards, attempt):
    """Minutes for a chunk job: the per-well runtime times its wells, longer on each retry."""
    return SCREEN["resources"]["runtime"] * len(chunks_of(wildcards.plate)[wildcards.chunk]) * attempt


def platemap_input(wildcards):
    """The plate's map (CSV) as an input of its assembly, so that editing the map redoes the tables."""
    path = SCREEN["plates"][wildcards.plate].get("platemap")
    return [path] if path else []


def plate_images_output():
    return f"{OUT}/{{plate}}/plate.ome.zarr" if BACKEND == "zarr" else f"{OUT}/{{plate}}/images"


def all_results():
    targets = []
    for plate in PLATES:
        targets += [
            f"{OUT}/{plate}/wells.csv",
            f"{OUT}/{plate}/objects.csv",
            f"{OUT}/{plate}/heatmap.png",
            f"{OUT}/{plate}/plate.html",
            f"{OUT}/{plate}/qc_montage.png",
            # asked for here too, not only through the chunks: those are known only once the discover
            # checkpoint is current, so without this `--delete-all-output` would skip it when discovery reruns
            f"{OUT}/{plate}/illumination.npz",
            wells_folder(plate),  # rules/process.smk well_folders; for the same reason
        ]
    return targets
