"""One well's work: read its planes, run the pipeline, write images, objects and a summary.

Sites are processed one at a time unless a step stacks over sites, so a job's memory is one site's
planes, not the whole well's. Outputs are written images first and ``summary.json`` last, each
atomically: a job killed half-way leaves no summary, and Snakemake reruns that well only.

The planes as read travel with each site's result (``WellResult.raw``): ``output.images: raw`` writes them
instead of the pipeline's output, and the per-image quality measures (focus, saturation, background; see
:mod:`openhcs_rules.jobs.image_quality`) are taken on them and kept in the summary under ``"images"``.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openhcs_rules.core.arrays import resolve_memory_type
from openhcs_rules.core.priority import lower_helper_priority
from openhcs_rules.io.base import StorageBackend
from openhcs_rules.io.registry import backend_for
from openhcs_rules.io.well_folder import WellFolder, WellImageWriter, take
from openhcs_rules.jobs.image_quality import SUMMARY_KEY, measure_images
from openhcs_rules.jobs.options import WellJobOptions
from openhcs_rules.pipeline.executor import PlaneKey, RunContext, WellResult, run_pipeline
from openhcs_rules.pipeline.model import Pipeline
from openhcs_rules.plate.model import PlateStructure, WellStructure

log = logging.getLogger(__name__)


def read_well_planes(
    plate: PlateStructure, well: WellStructure, site: int | None = None, backend: StorageBackend | None = None
) -> dict[PlaneKey, np.ndarray]:
    """The well's planes (one site's, with ``site``), read through the plate's backend."""
    backend = backend if backend is not None else backend_for(plate)
    planes = {}
    for image in well.images:
        if site is None or image.key.site == site:
            k = image.key
            planes[PlaneKey(k.site, k.channel, k.z, k.t)] = backend.load_plane(plate, image)
    return planes


def _stacks_sites(pipeline: Pipeline) -> bool:
    return any("site" in step.variable_components for step in pipeline.steps)


Planes = dict[PlaneKey, np.ndarray]

#: libraries the pipeline's kernels import on first use (functions/*.py import them lazily, so that a job that
#: never segments does not pay for scikit-image). A well job imports them in its read-ahead thread, right after
#: its first read, while the first site's first steps run: measured on the pipeline benchmark, the main thread
#: otherwise stopped ~0.3 s in its first segmentation to import scikit-image (and scipy.spatial with it).
#: ``module:attribute`` takes the attribute too: scikit-image's packages load their functions on first access.
KERNEL_MODULES = ("scipy.ndimage", "skimage.segmentation:watershed")


class SiteReader:
    """Reads a job's planes in a background thread, one site ahead of the processing, across its wells.

    Reads (file I/O and TIFF decoding, which release the GIL) overlap the processing instead of adding to
    it: the next site of the well, and during a well's last site the next well's first, so that a chunk job
    waits for no read but its very first, which :meth:`prefetch` starts while the job is still setting up.
    A read that fails raises where its planes are asked for (:meth:`read`), so it fails the well it is of.

    ``measure`` (the well job's image quality measures) is run on each read's planes in the same thread,
    right after the read: a site is measured while the site before it computes, so that a well's end waits
    for its last writes only. :meth:`measured` gives its result's future.
    """

    def __init__(
        self, plate: PlateStructure, backend: StorageBackend, measure: Callable[[Planes], Any] | None = None
    ) -> None:
        self.plate, self.backend, self.measure = plate, backend, measure
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch", initializer=lower_helper_priority)
        self._pending: dict[tuple[str, int | None], Future[Planes]] = {}
        self._measures: dict[tuple[str, int | None], Future[Any]] = {}

    def prefetch(self, well: str, site: int | None) -> None:
        """Start reading ``well``'s planes of ``site`` (None: every site) unless that is under way already."""
        key = (well, site)
        if key in self._pending:
            return
        job = self._pool.submit(read_well_planes, self.plate, self.plate.wells[well], site, self.backend)
        self._pending[key] = job
        if self.measure is not None:
            self._measures[key] = self._pool.submit(self._measure, job)

    def _measure(self, read: Future[Planes]) -> Any:
        assert self.measure is not None  # only submitted with one
        return self.measure(read.result())  # done: submitted after it, to the same one thread

    def warm(self, modules: tuple[str, ...]) -> None:
        """Import ``modules`` in the read-ahead thread, after the reads asked for so far (see KERNEL_MODULES).

        A module that does not import is left to fail where it is used, with that step's error.
        """
        self._pool.submit(_import_quietly, modules)

    def read(self, well: str, site: int | None) -> Planes:
        """The planes of ``well`` at ``site``: the prefetched ones, or read now."""
        self.prefetch(well, site)
        return self._pending.pop((well, site)).result()

    def measured(self, well: str, site: int | None) -> Future[Any] | None:
        """The future of ``measure`` on the planes :meth:`read` gave for ``well`` at ``site`` (None: no measure)."""
        return self._measures.pop((well, site), None)

    def forget(self, well: str) -> None:
        """Drop what was read ahead for ``well`` (it failed, or its pipeline reads it whole after all)."""
        for pending in (self._pending, self._measures):
            for key in [key for key in pending if key[0] == well]:
                pending.pop(key).cancel()

    def close(self) -> None:
        for pending in (self._pending, self._measures):
            for job in pending.values():
                job.cancel()
            pending.clear()
        self._pool.shutdown(wait=True)


def _import_quietly(modules: tuple[str, ...]) -> None:
    for entry in modules:
        name, _, attribute = entry.partition(":")
        try:
            module = importlib.import_module(name)
            if attribute:
                getattr(module, attribute)
        except Exception:  # noqa: BLE001 - an optional library missing here: the step that needs it says so
            log.debug("warm-up import of %s failed", entry, exc_info=True)


def iter_site_results(
    plate: PlateStructure,
    well_name: str,
    pipeline: Pipeline,
    context: RunContext,
    backend: StorageBackend | None = None,
    *,
    reader: SiteReader | None = None,
    next_well: str | None = None,
) -> Iterator[WellResult]:
    """Yield the pipeline's result site by site (or once for the well when a step stacks over sites).

    The next site's planes are read in a background thread while the current site computes (``reader``, a
    job's :class:`SiteReader`; by default one for this well), and during the last site ``next_well``'s first
    one. Each result carries the planes it was computed from, as read (``raw``): no copy, they are in memory
    anyway.
    """
    if well_name not in plate.wells:
        known = ", ".join(plate.well_names)
        raise KeyError(f"well {well_name} is not in plate {plate.name} (wells: {known}); rerun discovery")
    well = plate.wells[well_name]
    backend = backend if backend is not None else backend_for(plate)
    own = reader is None
    reader = reader if reader is not None else SiteReader(plate, backend)
    try:
        if _stacks_sites(pipeline):
            reader.forget(well_name)  # a first site read ahead of the pipeline's loading: not needed alone
            planes = reader.read(well_name, None)
            result = run_pipeline(pipeline, planes, context)
            result.raw = planes
            yield result
            return
        sites = well.sites
        for index, site in enumerate(sites):
            planes = reader.read(well_name, site)
            if index + 1 < len(sites):
                reader.prefetch(well_name, sites[index + 1])
            elif next_well is not None and next_well in plate.wells and plate.wells[next_well].sites:
                reader.prefetch(next_well, plate.wells[next_well].sites[0])
            result = run_pipeline(pipeline, planes, context)
            result.raw = planes
            yield result
    finally:
        if own:
            reader.close()
        else:
            reader.forget(well_name)  # after a failure: what was read ahead for this well is not needed


def write_tables(
    objects: list[dict[str, Any]],
    plate: PlateStructure,
    folder: WellFolder,
    elapsed_s: float | None,
    extra_summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``objects.csv`` then ``summary.json`` (last: its presence means the well is complete)."""
    folder.write_objects(objects, plate.name)
    summary = {**summarise_well(objects, plate, folder.well, elapsed_s), **(extra_summary or {})}
    folder.write_summary(summary)
    return summary


def summarise_well(
    objects: list[dict[str, Any]], plate: PlateStructure, well_name: str, elapsed_s: float | None
) -> dict[str, Any]:
    """The well's totals over all timepoints, plus ``timepoints``: the same figures per timepoint.

    The totals add a time-lapse well's timepoints together (the chunk manifest and the logs use them);
    per-site figures only mean something within one timepoint, so the plate's wells.csv uses ``timepoints``.
    """
    sites = plate.wells[well_name].sites
    per_site: dict[int, int] = {s: 0 for s in sites}
    for row in objects:
        per_site[row["site"]] = per_site.get(row["site"], 0) + 1
    return {
        "plate": plate.name,
        "well": well_name,
        "n_sites": len(sites),
        "missing_sites": plate.missing_sites([well_name]).get(well_name, []),
        "n_objects": len(objects),
        "objects_per_site": {str(s): n for s, n in sorted(per_site.items())},
        **object_means(objects),
        "timepoints": summarise_timepoints(objects, plate, well_name),
        "elapsed_s": elapsed_s,
    }


def object_means(objects: list[dict[str, Any]]) -> dict[str, float | None]:
    """Mean area and mean per-channel intensities of some objects (area None when there are none)."""
    intensity_keys = sorted({k for row in objects for k in row if k.startswith("mean_intensity_")})
    areas = [row["area_px"] for row in objects]
    return {
        "mean_area_px": float(np.mean(areas)) if areas else None,
        **{key: float(np.mean([row[key] for row in objects])) for key in intensity_keys},
    }


def _planes_per_site_and_t(well: WellStructure) -> dict[tuple[int, int], int]:
    """How many planes (channels x z) the well has per (site, timepoint): fewer than others means missing."""
    planes: dict[tuple[int, int], int] = {}
    for image in well.images:
        key = (image.key.site, image.key.t)
        planes[key] = planes.get(key, 0) + 1
    return planes


def summarise_timepoints(objects: list[dict[str, Any]], plate: PlateStructure, well_name: str) -> list[dict[str, Any]]:
    """One entry per timepoint: sites imaged then, sites missing then, objects found then and their means.

    A time-lapse plate images each site once per timepoint, so a sum over timepoints would multiply
    ``objects_per_site`` by their number. Every timepoint of the plate gets an entry (a well not imaged at
    one has ``n_sites`` 0), and objects at any other t too, so the entries' ``n_objects`` add up to the total.
    """
    planes = _planes_per_site_and_t(plate.wells[well_name])
    complete = len(plate.channel_indices) * len(plate.z_planes)
    plate_sites = plate.sites
    by_t: dict[int, list[dict[str, Any]]] = {}
    for row in objects:
        by_t.setdefault(int(row["t"]), []).append(row)
    entries = []
    for t in sorted(set(plate.timepoints) | set(by_t)):
        found = by_t.get(t, [])
        sites = sorted(s for s, at in planes if at == t)
        per_site = {s: 0 for s in sites}
        for row in found:
            per_site[row["site"]] = per_site.get(row["site"], 0) + 1
        entries.append(
            {
                "t": t,
                "n_sites": len(sites),
                "missing_sites": [s for s in plate_sites if planes.get((s, t), 0) < complete],
                "n_objects": len(found),
                "objects_per_site": {str(s): n for s, n in sorted(per_site.items())},
                **object_means(found),
            }
        )
    return entries


@dataclass
class WellJobInputs:
    """What every well of a job shares, loaded once per job (a chunk job reuses it for all its wells)."""

    plate: PlateStructure
    pipeline: Pipeline
    context: RunContext
    options: WellJobOptions = field(default_factory=WellJobOptions)
    #: what the job reads planes and saves results through; default: the plate's, for ``options.backend``
    storage: StorageBackend | None = None
    #: write each field's NGFF metadata in this job (see process_wells.FIELD_METADATA_MIN_FIELDS); else the
    #: plate's assembly job writes it
    describe_fields: bool = False
    #: reads the job's planes ahead of the processing; default: one for the storage backend
    reader: SiteReader | None = None
    _streamer: Any = field(default=None, init=False, repr=False)
    _streamer_tried: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.storage is None:
            self.storage = backend_for(self.plate, self.options.backend)
        if self.reader is None:
            self.reader = SiteReader(self.plate, self.storage, self.measure)

    def measure(self, planes: Planes) -> list[dict[str, Any]]:
        """The image quality measures of planes as read (what a well's summary keeps under ``"images"``)."""
        return measure_images(planes, self.context.channel_names)

    @property
    def backend(self) -> StorageBackend:
        assert self.storage is not None  # set by __post_init__
        return self.storage

    @property
    def planes(self) -> SiteReader:
        assert self.reader is not None  # set by __post_init__
        return self.reader

    def streamer_for(self, well: str) -> Any:
        """The job's one viewer connection (made at the first well, then relabelled per well), or None.

        One connection per job, not per well: a chunk of 24 wells connects once, and a viewer that is
        missing costs one connect timeout and one warning per job, not per well.
        """
        streaming = self.options.streaming
        if not streaming:
            return None
        from openhcs_rules.config.streaming import DEFAULT_PORTS  # only jobs that stream pay for the import

        if not any(streaming.get(kind) for kind in DEFAULT_PORTS):
            return None
        if not self._streamer_tried:
            from openhcs_rules.streaming.hook import make_streamer

            self._streamer_tried = True
            # a side effect: a missing or dead viewer is warned about once and never fails the job
            self._streamer = make_streamer(streaming, self.plate.name, well, self.context.channel_names)
        if self._streamer is not None:
            self._streamer.well = well
        return self._streamer

    def close(self) -> None:
        """Stop reading ahead; flush and close the viewer connection (bounded wait for outstanding acks) and
        the backend's."""
        self.planes.close()
        if self._streamer is not None:
            self._streamer.close()
            self._streamer = None
        self.backend.close()

    @classmethod
    def load(
        cls,
        plate_json: str | Path,
        pipeline_path: str | Path,
        options: WellJobOptions,
        plate: PlateStructure | None = None,
        first_well: str | None = None,
    ) -> WellJobInputs:
        """Read plate.json (unless the caller already did: ``plate``), the pipeline and the illumination
        profiles; pick (and claim) the device. The first site of ``first_well`` (the job's first well) is
        read meanwhile, in the background: the job's first read then overlaps its set-up."""
        plate = plate if plate is not None else PlateStructure.load_json(plate_json)
        storage = backend_for(plate, options.backend)
        names = {i: plate.channel(i).name for i in plate.channel_indices}
        reader = SiteReader(plate, storage, lambda planes: measure_images(planes, names))
        if first_well is not None and first_well in plate.wells and plate.wells[first_well].sites:
            reader.prefetch(first_well, plate.wells[first_well].sites[0])
        reader.warm(KERNEL_MODULES)
        try:
            return cls._load(plate, names, pipeline_path, options, storage, reader)
        except BaseException:
            reader.close()
            storage.close()
            raise

    @classmethod
    def _load(
        cls,
        plate: PlateStructure,
        channel_names: dict[int, str],
        pipeline_path: str | Path,
        options: WellJobOptions,
        storage: StorageBackend,
        reader: SiteReader,
    ) -> WellJobInputs:
        from openhcs_rules.jobs.illumination import load_illumination
        from openhcs_rules.pipeline.serialize import load_pipeline

        memory_type = resolve_memory_type(options.gpu)
        if memory_type == "cupy":
            from openhcs_rules.pipeline.devices import select_device

            select_device()
        context = RunContext(
            channel_names=channel_names,
            memory_type=memory_type,
            illumination=load_illumination(options.illumination) if options.illumination else {},
            nuclei_channel=options.nuclei_channel,
        )
        return cls(plate, load_pipeline(pipeline_path), context, options, storage, reader=reader)


def _site_of(result: WellResult) -> int:
    """The site of a one-site result, from the planes it was computed from."""
    return PlaneKey(*next(iter(result.raw))).site


@dataclass
class WellInProgress:
    """A well whose sites are all processed and handed to its image writer: what finishing it needs."""

    inputs: WellJobInputs
    well: str
    folder: WellFolder
    writer: WellImageWriter  # entered; its writes may still be going on
    objects: list[dict[str, Any]]
    quality: list[dict[str, Any]]
    start: float


def begin_well(inputs: WellJobInputs, well: str, out_dir: str | Path, next_well: str | None = None) -> WellInProgress:
    """Process every site of one well, handing each to the well's image writer; the writes may still run.

    :func:`finish_well` completes it. ``next_well``: the well the job does next, whose first site is read
    during this well's last one.
    """
    start = time.perf_counter()
    plate, context, backend = inputs.plate, inputs.context, inputs.backend
    folder = backend.well_folder(out_dir, well)
    objects: list[dict[str, Any]] = []
    quality: list[dict[str, Any]] = []
    folder.clear_interrupted_writes()
    describe = None
    if inputs.describe_fields and folder.layout == "zarr":
        from openhcs_rules.io.zarr_plate import FieldDescription

        describe = FieldDescription.of(plate, well, list(context.channel_names.values()))
    names = context.channel_names
    stacks = _stacks_sites(inputs.pipeline)
    writer = folder.image_writer(inputs.options.pyramid_levels, describe, inputs.options.images)
    writer.__enter__()
    try:
        context.on_step = inputs.streamer_for(well)
        # each site's image quality is measured as it is read, in the reader's thread (SiteReader), while the
        # site before it computes: ~0.5 s of a 2048 px site, off the processing and off the well's end
        measuring: deque[tuple[Future[list[dict[str, Any]]], Mapping[PlaneKey, Any]]] = deque()
        results = iter_site_results(
            plate, well, inputs.pipeline, context, backend, reader=inputs.planes, next_well=next_well
        )
        for part in results:
            writer.submit(part)  # written in the background while the next site computes
            objects.extend(part.objects)
            job = inputs.planes.measured(well, None if stacks else _site_of(part))
            measuring.append((job or writer.run(measure_images, part.raw, names), part.raw))
            while measuring and measuring[0][0].done():  # in site order; the measured planes are let go
                quality.extend(measuring.popleft()[0].result())
        while measuring:  # what has not started yet is measured here rather than waited for
            job, raw = measuring.popleft()
            rows: list[dict[str, Any]] = take(job, measure_images, raw, names)
            quality.extend(rows)
    except BaseException as error:
        writer.__exit__(type(error), error, error.__traceback__)  # waits, removes the partial images
        raise
    finally:
        context.on_step = None
    return WellInProgress(inputs, well, folder, writer, objects, quality, start)


def finish_well(progress: WellInProgress, extra_summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """Wait for a begun well's image writes, then write objects.csv and summary.json (last), and save it.

    A chunk job calls this in a background thread while it processes the next well, so that a well's last
    writes overlap the next well's processing instead of holding the job up.
    """
    inputs, folder = progress.inputs, progress.folder
    plate = inputs.plate
    progress.writer.__exit__(None, None, None)  # the images appear under their final name, or it raises
    elapsed = time.perf_counter() - progress.start
    extra = {SUMMARY_KEY: progress.quality, **(extra_summary or {})}
    summary = write_tables(progress.objects, plate, folder, elapsed, extra)
    try:
        inputs.backend.save_well(plate, folder)  # a server backend copies the folder; local ones: nothing to do
    except BaseException:
        folder.mark_not_done()  # not saved = not done: a rerun redoes it
        raise
    log.info(
        "%s %s: %d objects in %.2f s on %s",
        plate.name, progress.well, summary["n_objects"], elapsed, inputs.context.memory_type,
    )  # fmt: skip
    return summary


def run_well(
    inputs: WellJobInputs, well: str, out_dir: str | Path, extra_summary: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Process one well with inputs already loaded: images, objects.csv, then summary.json (last).

    The summary also carries the per-image quality measures of the planes as read (``"images"``), which the
    plate's assembly turns into its Image table and QC flags.
    """
    return finish_well(begin_well(inputs, well, out_dir), extra_summary)


def process_well(
    plate_json: str | Path,
    well: str,
    pipeline_path: str | Path,
    out_dir: str | Path,
    *values: Any,
    options: WellJobOptions | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """One well from files: load the inputs, run, write outputs (and stream steps to viewers).

    The job's options: ``options``, or :class:`WellJobOptions`'s fields given here, positionally in field order
    (``illumination, nuclei_channel, gpu, ...``) or by name.
    """
    options = WellJobOptions.of(options, *values, **fields)
    inputs = WellJobInputs.load(plate_json, pipeline_path, options, first_well=well)
    try:
        return run_well(inputs, well, out_dir)
    finally:
        inputs.close()
