# Shared definitions: the validated config, paths, wildcard constraints and input functions.

import functools
import gc
import inspect
import json
import os
import shlex
import sys

from snakemake.common import overwrite_function_params
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from openhcs_rules.config import check_screen
from openhcs_rules.deployment import container_problem, job_interpreter
from openhcs_rules.errors import ConfigError
from openhcs_rules.jobs.options import WellJobOptions
from openhcs_rules.jobs.process_wells import drop_stale_chunks as drop_stale_chunks_of
from openhcs_rules.plate.chunks import CHUNK_PATTERN, PlateChunks
from openhcs_rules.snakemake_timers import cancel_scheduler_wakeups

# Python's default collection thresholds (700, 10, 10) suit small heaps. Planning a screen of 1,000 plates makes
# Snakemake build ~10^6 objects (19,000 jobs and their files), nearly none of them garbage, and the collector
# then scanned them thousands of times: 16% of the plan's time (7.6 of 47.6 s). Collecting every 50,000
# allocations instead costs 1.5 s; reference counting still frees everything that is not in a cycle at once.
gc.set_threshold(50_000, 50, 100)

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


# {plate} matches a plate name as the config schema allows them, not an alternation of this screen's plates:
# Snakemake writes the constraint into every output pattern and rescans that text each time it fills in a
# job's wildcards (~250,000 times for 1,000 plates), so a 1,000-name alternation made planning such a screen
# 40% slower (57 s instead of 40). A path naming no plate of the screen fails in plate_source instead.
wildcard_constraints:
    plate=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    chunk=CHUNK_PATTERN,


def known_signature(func):
    """Tell Snakemake a function's parameters once, for the functions it calls per chunk job.

    Snakemake inspects an input, params or resource function's signature every time it calls it (to pass
    only the arguments it takes: wildcards, input, attempt...): 80,000 inspections for the chunk jobs of
    1,000 plates. overwrite_function_params is Snakemake's own way to state them (its ioutils use it); the
    value is exactly what inspect.signature gives, computed here once.
    """
    overwrite_function_params(func, inspect.signature(func).parameters)
    return func


def plate_source(plate):
    """The plate's config entry; a plate name not in the screen (a target typed by hand) is a clear error."""
    try:
        return SCREEN["plates"][plate]
    except KeyError:
        known = ", ".join(PLATES[:5]) + (f" and {len(PLATES) - 5} more" if len(PLATES) > 5 else "")
        raise WorkflowError(f"{plate!r} is not a plate of this screen (its plates: {known})") from None


def plate_folder(plate):
    """Where a plate's images are: the configured folder, or the generated one for synthetic plates."""
    entry = plate_source(plate)
    if entry["source"] == "synthetic":
        return f"resources/synthetic/{plate}"
    if entry["source"] == "omero":
        from openhcs_rules.omero.params import plate_url_from_config

        return plate_url_from_config(SCREEN["omero"], entry["plate_id"])  # omero://user@host:port/plate/<id>?...
    return entry["path"]


@known_signature
def well_job_args(wildcards, input):
    """Every option of a plate's well jobs as one argument list, from the one definition (WellJobOptions)."""
    return list(_well_job_argv(wildcards.plate, input.illumination))


@functools.cache
def _well_job_argv(plate, illumination):
    """well_job_args, once per plate (its 16 chunk jobs share it; the validated SCREEN does not change)."""
    # streaming=None: the viewers' block is read from input.viewers (rules/viewers.smk), never a param, so
    # switching streaming on or off does not make finished wells run again
    options = WellJobOptions.from_screen(SCREEN, plate, illumination=illumination, streaming=None)
    return tuple(options.to_argv())


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


@known_signature
def generated_plate_marker(wildcards):
    """Synthetic plates depend on their generation; disk plates are external (never rebuilt)."""
    if plate_source(wildcards.plate)["source"] == "synthetic":
        return f"resources/synthetic/{wildcards.plate}/ground_truth.csv"
    return []


# chunk name -> wells per plate.json, its well names read once per version of the file (plate/chunks.py);
# with wells_per_job: auto, the screen's number of plates sets how many jobs each plate gets (16 up to 250 plates,
# fewer beyond: at most ~4,000 well jobs in all, so that 1,000 plates plan in under 30 s)
_CHUNKS = PlateChunks(SCREEN["wells_per_job"], plates=len(PLATES))


def plate_chunks(plate, plate_json):
    """Chunk name -> wells of a plate's plate.json (read again only once rediscovery has rewritten it)."""
    return _CHUNKS(plate_json)


def chunks_of(plate):
    """Chunk name -> wells, from the discover checkpoint's plate.json (discovery runs once per plate)."""
    return plate_chunks(plate, checkpoints.discover.get(plate=plate).output.json)


def wells_folder(plate):
    """The plate's well folders' parent, ``<out>/<plate>/wells`` (one folder per well: io/well_folder.py)."""
    return f"{OUT}/{plate}/wells"


@known_signature
def plate_wells_folder(wildcards):
    """wells_folder of a job's plate, as a params function."""
    return wells_folder(wildcards.plate)


def chunk_manifest(plate, chunk):
    return f"{OUT}/{plate}/chunks/{chunk}.json"


@known_signature
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


@known_signature
def chunk_runtime(wildcards, input, attempt):
    """Minutes for a chunk job: the per-well runtime times its wells, longer on each retry.

    From the job's own input plate.json: a chunk job exists only once its plate's checkpoint is complete, and
    asking the checkpoint again per chunk job costs Snakemake a copy of every plate's checkpoint outputs.
    """
    wells = plate_chunks(wildcards.plate, input.plate)[wildcards.chunk]
    return SCREEN["resources"]["runtime"] * len(wells) * attempt


@known_signature
def chunk_mem_mb(wildcards, attempt):
    """Memory (MB) of a chunk job: the configured amount, more on each retry."""
    return SCREEN["resources"]["mem_mb"] * attempt


@known_signature
def platemap_input(wildcards):
    """The plate's map (CSV) as an input of its assembly, so that editing the map redoes the tables."""
    path = plate_source(wildcards.plate).get("platemap")
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
