"""Rule ``process_wells``: one job runs the pipeline on a chunk of wells, skipping wells already done.

The job loads plate.json, the pipeline and the illumination profiles once, claims a GPU once, and then
processes its wells one after another, each into its own folder (images, objects.csv, summary.json
last). A well that fails (a corrupt TIFF, say) is reported and the others go on; the job then fails
naming every failed well, so Snakemake marks it for a rerun. The chunk's manifest (its declared output)
is written only when every well is done. Started under the execution server, the job reports each well as it
starts and ends (:mod:`openhcs_rules.progress.well_events`).

Rerunning a chunk redoes only its unfinished wells: a well is skipped when its summary.json carries the
same *run key*, a digest of everything its result depends on (plate.json, the pipeline file, and every
option of :class:`~openhcs_rules.jobs.options.WellJobOptions` but those marked as not changing results, like
the live viewers; file options such as the illumination profiles by their bytes). Change any of those and
the well is processed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from openhcs_rules.core.files import atomic_write_text, remove_stale_temps
from openhcs_rules.core.priority import lower_helper_priority
from openhcs_rules.errors import OpenHCSError
from openhcs_rules.io.base import StorageBackend
from openhcs_rules.io.well_folder import WellFolder
from openhcs_rules.jobs.options import WellJobOptions
from openhcs_rules.jobs.process_well import WellInProgress, WellJobInputs, begin_well, finish_well
from openhcs_rules.plate.chunks import wells_in_chunk
from openhcs_rules.plate.model import PlateStructure
from openhcs_rules.progress.well_events import WellEvents, WellOutcome

log = logging.getLogger(__name__)


#: a job with at least this many fields (wells x sites) writes their NGFF metadata itself, in its background
#: writer: spread over the plate's parallel well jobs and overlapping their processing instead of adding to
#: the one assembly job (52 s of a 1536-well plate's assembly). Every job does, since the metadata is written
#: without ome-zarr-py (whose import, ~0.6 s, made it a loss below 32 fields); a huge value leaves it to assembly.
FIELD_METADATA_MIN_FIELDS = 1


class WellsFailed(OpenHCSError):
    """Some wells of a chunk failed; the others were processed and are kept."""


def well_run_key(plate_json: str | Path | bytes, pipeline_path: str | Path, options: WellJobOptions) -> str:
    """The run key of a well processed with these inputs and options (every option the key covers).

    ``plate_json``: the file, or its bytes when the caller has read them already (the job parses them too).
    """
    return run_key([plate_json, pipeline_path, *options.key_files()], options.key_values())


def run_key(files: list[str | Path | bytes | None], options: dict[str, Any]) -> str:
    """A digest of the inputs' bytes (a file, or bytes already read) and the options: equal keys mean a
    well's result would be the same."""
    digest = hashlib.sha256()
    for item in files:
        if item is None:
            digest.update(b"<none>")
            continue
        if isinstance(item, bytes):
            digest.update(item)
        else:
            with open(item, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        digest.update(b"\0")
    digest.update(json.dumps(options, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def stale_manifest(manifest: str | Path, wells_dir: str | Path, wells: list[str], layout: str) -> list[str]:
    """Remove a chunk's manifest when some of its wells are no longer complete; returns those wells.

    The manifest says "every well of this chunk is done", and Snakemake only sees the manifest (the wells'
    folders are not declared outputs: the chunk job must not delete its finished wells when it reruns). A
    well folder deleted or emptied since (by hand, or ``WellFolder.mark_not_done``) makes that claim false;
    removing the manifest makes Snakemake rerun the chunk, which redoes only those wells, and then the
    assembly. Two stats per well of a chunk whose manifest exists, nothing read. A missing manifest is left
    alone (it reruns anyway).
    """
    if not Path(manifest).exists():
        return []
    unfinished = [w for w in wells if not WellFolder(Path(wells_dir) / w, layout).is_complete()]
    if unfinished:
        Path(manifest).unlink(missing_ok=True)
    return unfinished


def drop_stale_chunks(plate_dir: str | Path, chunks: dict[str, list[str]], layout: str) -> list[str]:
    """Before Snakemake plans a plate: a chunk whose wells are not all complete runs again; returns what was done.

    The well folders are not outputs of the chunk jobs (a rerun must keep the finished ones), so Snakemake
    cannot see a well deleted (or marked not done) by hand: its chunk's manifest (``chunks/<chunk>.json``)
    and the plate's assembly still look current. The false manifest is removed (:func:`stale_manifest`), and
    with it the assembly's ``wells.csv``: Snakemake reruns an upstream job with a missing output only for a
    downstream job that runs (measured: a missing manifest alone gives "Nothing to be done"). Then the chunk
    redoes only its missing wells, and the plate is assembled again. Returns one line per removal.
    """
    plate_dir = Path(plate_dir)
    wells_dir = plate_dir / "wells"
    said, not_done = [], []
    for chunk, wells in chunks.items():
        manifest = plate_dir / "chunks" / f"{chunk}.json"
        unfinished = stale_manifest(manifest, wells_dir, wells, layout)
        if unfinished:
            said.append(
                f"chunk {chunk}: well(s) {', '.join(unfinished)} missing or incomplete in {wells_dir}; removed "
                f"{manifest}: the chunk runs again (its complete wells are skipped)"
            )
        if not manifest.exists():
            not_done.append(chunk)
    table = plate_dir / "wells.csv"
    if not_done and table.exists():
        table.unlink()
        said.append(f"chunk(s) {', '.join(not_done)} not done; removed {table}: the plate is assembled again")
    return said


def process_wells(
    plate_json: str | Path,
    chunk: str,
    pipeline_path: str | Path,
    wells_dir: str | Path,
    manifest: str | Path,
    *values: Any,
    options: WellJobOptions | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The whole ``process_wells`` job; returns the manifest it wrote (raises :class:`WellsFailed`).

    The job's options: ``options``, or :class:`WellJobOptions`'s fields given here, positionally in field order
    (``illumination, nuclei_channel, gpu, ...``) or by name.
    """
    options = WellJobOptions.of(options, *values, **fields)
    plate_bytes = Path(plate_json).read_bytes()  # read once: parsed here and covered by the run key
    plate = PlateStructure.from_dict(json.loads(plate_bytes))
    wells = wells_in_chunk(plate.well_names, chunk)
    key = well_run_key(plate_bytes, pipeline_path, options)
    folders = {w: WellFolder(Path(wells_dir) / w, options.backend) for w in wells}
    todo = [w for w in wells if not folders[w].is_done(key)]
    events = WellEvents.from_env(plate.name)  # for the execution server; without one, nothing is written
    for well in wells:
        if well not in todo:
            log.info("%s %s: already done by an earlier run with the same inputs; skipped", plate.name, well)
            events.skipped(well)
    failures: dict[str, str] = {}
    if todo:
        # the first well's first site is read while the job loads its pipeline and profiles
        inputs = WellJobInputs.load(plate_json, pipeline_path, options, plate, first_well=todo[0])
        inputs.describe_fields = sum(len(plate.wells[w].sites) for w in todo) >= FIELD_METADATA_MIN_FIELDS
        try:
            failures = run_wells(inputs, todo, {w: folders[w].path for w in todo}, {"run_key": key}, events)
        finally:
            inputs.close()
    failed_record = failures_path(manifest)
    if failures:
        # for `openhcs-rules status`: which wells failed and why, until a rerun of the chunk succeeds
        atomic_write_text(failed_record, json.dumps({"chunk": chunk, "wells": failures, "at": time.time()}, indent=1))
        lines = "\n".join(f"  {well}: {reason}" for well, reason in failures.items())
        raise WellsFailed(
            f"{len(failures)} of {len(wells)} wells of {plate.name} chunk {chunk} failed:\n{lines}\n"
            f"The other wells are done and kept; fix the cause and rerun the same command: only the failed wells "
            f"are processed again."
        )
    remove_stale_temps(manifest)  # this chunk job owns its manifest: clear what a killed run of it left
    summaries = {w: folders[w].read_summary() for w in wells}
    result = {"plate": plate.name, "chunk": chunk, "wells": wells, "run_key": key, "summaries": summaries}
    atomic_write_text(manifest, json.dumps(result, indent=1))
    failed_record.unlink(missing_ok=True)
    return result


def saves_wells_elsewhere(backend: StorageBackend) -> bool:
    """True for a backend that copies each finished well to a server, False for local folders."""
    return type(backend).save_well is not StorageBackend.save_well


def run_wells(
    inputs: WellJobInputs,
    wells: list[str],
    out_dirs: dict[str, Path],
    extra_summary: dict[str, Any],
    events: WellEvents,
) -> dict[str, str]:
    """Process ``wells`` in order, each into its folder of ``out_dirs``; return the failed ones with why.

    A well's end (waiting for its last image writes, objects.csv, summary.json) runs in a background thread
    while the next well is processed, and the next well's first site is read during the last site of the one
    before: the job waits for writes at its very end only, not at every well's. With a backend that saves
    each well to a server, every well ends before the next begins, as its connection serves one thread at
    a time. The well events are emitted by that thread, in order: a well's ``well_started`` follows the
    ``well_finished`` of the one before (its seconds count from there), so two wells' events never interleave.
    One failed well does not stop the others.
    """
    plate = inputs.plate
    overlap = not saves_wells_elsewhere(inputs.backend)
    errors: dict[str, Future[str | None]] = {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="finish", initializer=lower_helper_priority) as finisher:
        for index, well in enumerate(wells):
            scope = events.well(well)
            entered = finisher.submit(scope.__enter__)
            upcoming = wells[index + 1] if overlap and index + 1 < len(wells) else None
            try:
                progress = begin_well(inputs, well, out_dirs[well], next_well=upcoming)
            except BaseException as exc:
                finisher.submit(_leave, scope, entered, exc)
                if not isinstance(exc, Exception):
                    raise
                log.exception("%s %s failed", plate.name, well)
                errors[well] = finisher.submit(_reason, exc)
                continue
            errors[well] = finisher.submit(_finish, progress, extra_summary, scope, entered)
            if not overlap:
                errors[well].result()
    return {well: reason for well, job in errors.items() if (reason := job.result()) is not None}


def _finish(
    progress: WellInProgress, extra_summary: dict[str, Any], scope: Any, entered: Future[WellOutcome]
) -> str | None:
    """Finish a begun well in the finishing thread and close its events' scope; its failure's text or None."""
    outcome = entered.result()
    try:
        outcome.summary = finish_well(progress, extra_summary)
    except BaseException as exc:
        _leave(scope, entered, exc)
        if not isinstance(exc, Exception):
            raise
        log.error("%s %s failed", progress.inputs.plate.name, progress.well, exc_info=exc)
        return _reason(exc)
    scope.__exit__(None, None, None)
    return None


def _leave(scope: Any, entered: Future[WellOutcome], error: BaseException) -> None:
    """Close a well's events' scope with its error (``well_failed``), once its ``well_started`` is out."""
    entered.result()
    scope.__exit__(type(error), error, error.__traceback__)


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def failures_path(manifest: str | Path) -> Path:
    """Where a chunk job records its failed wells (``chunks/<chunk>.failed.json``, next to the manifest)."""
    path = Path(manifest)
    return path.with_name(path.stem + ".failed.json")
