"""One well's work: read its planes, run the pipeline, write images, objects and a summary.

Sites are processed one at a time unless a step stacks over sites, so a job's memory is one site's
planes, not the whole well's. Outputs are written images first and ``summary.json`` last, each
atomically: a job killed half-way leaves no summary, and Snakemake reruns that well only.

The planes as read travel with each site's result (``WellResult.raw``): ``output.images: raw`` writes them
instead of the pipeline's output, and the per-image quality measures (focus, saturation, background; see
:mod:`openhcs_rules.jobs.image_quality`) are taken on them and kept in the summary under ``"images"``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openhcs_rules.core.arrays import resolve_memory_type
from openhcs_rules.io.base import StorageBackend
from openhcs_rules.io.registry import backend_for
from openhcs_rules.io.well_folder import WellFolder
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


def iter_site_results(
    plate: PlateStructure,
    well_name: str,
    pipeline: Pipeline,
    context: RunContext,
    backend: StorageBackend | None = None,
) -> Iterator[WellResult]:
    """Yield the pipeline's result site by site (or once for the well when a step stacks over sites).

    The next site's planes are read in a background thread while the current site computes, so file
    reads (which release the GIL) overlap the processing instead of adding to it. Each result carries the
    planes it was computed from, as read (``raw``): no copy, they are in memory anyway.
    """
    if well_name not in plate.wells:
        known = ", ".join(plate.well_names)
        raise KeyError(f"well {well_name} is not in plate {plate.name} (wells: {known}); rerun discovery")
    well = plate.wells[well_name]
    backend = backend if backend is not None else backend_for(plate)
    if _stacks_sites(pipeline):
        planes = read_well_planes(plate, well, None, backend)
        result = run_pipeline(pipeline, planes, context)
        result.raw = planes
        yield result
        return
    sites = well.sites
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        pending = pool.submit(read_well_planes, plate, well, sites[0], backend)
        for index in range(len(sites)):
            planes = pending.result()
            if index + 1 < len(sites):
                pending = pool.submit(read_well_planes, plate, well, sites[index + 1], backend)
            result = run_pipeline(pipeline, planes, context)
            result.raw = planes
            yield result


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
    _streamer: Any = field(default=None, init=False, repr=False)
    _streamer_tried: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.storage is None:
            self.storage = backend_for(self.plate, self.options.backend)

    @property
    def backend(self) -> StorageBackend:
        assert self.storage is not None  # set by __post_init__
        return self.storage

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
        """Flush and close the viewer connection (bounded wait for outstanding acks) and the backend's."""
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
    ) -> WellJobInputs:
        """Read plate.json (unless the caller already did: ``plate``), the pipeline and the illumination
        profiles; pick (and claim) the device."""
        from openhcs_rules.jobs.illumination import load_illumination
        from openhcs_rules.pipeline.serialize import load_pipeline

        plate = plate if plate is not None else PlateStructure.load_json(plate_json)
        memory_type = resolve_memory_type(options.gpu)
        if memory_type == "cupy":
            from openhcs_rules.pipeline.devices import select_device

            select_device()
        context = RunContext(
            channel_names={i: plate.channel(i).name for i in plate.channel_indices},
            memory_type=memory_type,
            illumination=load_illumination(options.illumination) if options.illumination else {},
            nuclei_channel=options.nuclei_channel,
        )
        return cls(plate, load_pipeline(pipeline_path), context, options)


def run_well(
    inputs: WellJobInputs, well: str, out_dir: str | Path, extra_summary: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Process one well with inputs already loaded: images, objects.csv, then summary.json (last).

    The summary also carries the per-image quality measures of the planes as read (``"images"``), which the
    plate's assembly turns into its Image table and QC flags.
    """
    start = time.perf_counter()
    plate, context, backend = inputs.plate, inputs.context, inputs.backend
    folder = backend.well_folder(out_dir, well)
    objects: list[dict[str, Any]] = []
    quality: list[dict[str, Any]] = []
    folder.clear_interrupted_writes()
    context.on_step = inputs.streamer_for(well)
    try:
        describe = None
        if inputs.describe_fields and folder.layout == "zarr":
            from openhcs_rules.io.zarr_plate import FieldDescription

            describe = FieldDescription.of(plate, well, list(context.channel_names.values()))
        with folder.image_writer(inputs.options.pyramid_levels, describe, inputs.options.images) as writer:
            for part in iter_site_results(plate, well, inputs.pipeline, context, backend):
                writer.submit(part)  # written in the background while the next site computes
                objects.extend(part.objects)
                quality.extend(measure_images(part.raw, context.channel_names))
    finally:
        context.on_step = None
    elapsed = time.perf_counter() - start
    summary = write_tables(objects, plate, folder, elapsed, {SUMMARY_KEY: quality, **(extra_summary or {})})
    try:
        backend.save_well(plate, folder)  # a server backend copies the folder; local backends: nothing to do
    except BaseException:
        folder.mark_not_done()  # not saved = not done: a rerun redoes it
        raise
    log.info("%s %s: %d objects in %.2f s on %s", plate.name, well, summary["n_objects"], elapsed, context.memory_type)
    return summary


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
    inputs = WellJobInputs.load(plate_json, pipeline_path, WellJobOptions.of(options, *values, **fields))
    try:
        return run_well(inputs, well, out_dir)
    finally:
        inputs.close()
