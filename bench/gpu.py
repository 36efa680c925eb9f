"""Benchmark: the demo pipeline's steps on the GPU (cupy) vs. the CPU (numpy), same data, one process.

Data: synthetic sites of SIZE x SIZE uint16, 2 channels x 3 z (the demo screen's shape), generated in
memory. For each step of config/pipelines/nuclei_count.py the benchmark times one site's stack through
the numpy path and through the cupy path (after a warm-up call, so cupy's kernel compilation is not
counted; the GPU is synchronised before the clock stops), then the whole pipeline per site both ways:
a first pass over all sites (cupy compiles a kernel per new filter size, and sizes follow each site's
nucleus diameter) and a second, timed pass; the upload/download of a site's planes; and checks the object
counts agree. On cupy the segmentation runs on the device from end to end (region growing instead of scikit-image's
watershed, the merge of over-split nuclei with array operations: openhcs_rules/functions/segmentation.py, "Memory
types"); its own time both ways is in the step table and in the JSON line (``segment_s_*``).

Baseline: the numpy path (one CPU core, OMP_NUM_THREADS=1, as a well job runs). Ratio = numpy s / cupy s.
Without cupy and a CUDA device it says so and exits 0 after the numpy figures.

Run: python bench/gpu.py [--size 2048] [--sites 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from _paths import REPO  # noqa: E402

from openhcs_rules.core.arrays import CUPY, NUMPY, gpu_available, to_memory  # noqa: E402
from openhcs_rules.demo.synthetic import synthesize_site  # noqa: E402
from openhcs_rules.functions import estimate_illumination  # noqa: E402
from openhcs_rules.pipeline.executor import RunContext, run_pipeline  # noqa: E402
from openhcs_rules.pipeline.registry import get_function  # noqa: E402
from openhcs_rules.pipeline.serialize import load_pipeline  # noqa: E402

PIPELINE = REPO / "config" / "pipelines" / "nuclei_count.py"


def synchronize(memory_type: str) -> None:
    if memory_type == CUPY:
        import cupy

        cupy.cuda.Device().synchronize()


def timed(function: Any, memory_type: str, repeats: int) -> float:
    """Best of ``repeats`` wall times after one warm-up call."""
    function()
    synchronize(memory_type)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(memory_type)
        best = min(best, time.perf_counter() - start)
    return best


def site_planes(size: int, site: int) -> dict[tuple[int, int, int, int], np.ndarray]:
    data = synthesize_site("B02", site, shape=(size, size), channels=2, z_planes=3)
    return {(site, c, z, 0): data.images[c][z] for c in range(2) for z in range(3)}


def pipeline_run(planes: dict, context: RunContext) -> int:
    return len(run_pipeline(load_pipeline(PIPELINE), planes, context).objects)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    sites = [site_planes(args.size, s) for s in range(1, args.sites + 1)]
    flat = {
        c: np.asarray(estimate_illumination([plane for p in sites for (_, ch, _, _), plane in p.items() if ch == c]))
        for c in range(2)
    }
    names = {0: "nuclei", 1: "cells"}
    on_gpu = gpu_available()
    memory_types = [NUMPY, CUPY] if on_gpu else [NUMPY]
    device = "none"
    if on_gpu:
        import cupy

        device = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()

    # per step: one site's channel-0 stack through each step in turn (each step's input is the previous output)
    pipeline = load_pipeline(PIPELINE)
    step_rows: list[tuple[str, dict[str, float]]] = []
    for memory_type in memory_types:
        context = RunContext(names, memory_type=memory_type, illumination=flat, nuclei_channel="nuclei")
        stack: Any = to_memory(np.stack([sites[0][(1, 0, z, 0)] for z in range(3)]).astype(np.float32), memory_type)
        for index, step in enumerate(pipeline.steps):
            function = get_function(step.func).load()
            kwargs = dict(step.kwargs)
            if "illumination" in inspect.signature(function).parameters:
                kwargs["illumination"] = to_memory(flat[0], memory_type)
            if step.func in ("measure_objects", "count_objects"):
                break  # measurement needs labels and intensities: timed in the whole-pipeline figure
            seconds = timed(lambda f=function, s=stack, k=kwargs: f(s, **k), memory_type, args.repeats)
            if len(step_rows) <= index:
                step_rows.append((step.func, {}))
            step_rows[index][1][memory_type] = seconds
            stack = function(stack, **kwargs)

    whole: dict[str, float] = {}
    counts: dict[str, int] = {}
    per_site: dict[str, list[float]] = {}
    first_pass: dict[str, float] = {}
    for memory_type in memory_types:
        context = RunContext(names, memory_type=memory_type, illumination=flat, nuclei_channel="nuclei")
        # first pass over every site: cupy compiles a kernel per new filter size, and the sizes follow each
        # site's estimated nucleus diameter (compiled kernels are cached on disk for later processes)
        start = time.perf_counter()
        for planes in sites:
            pipeline_run(planes, context)
        synchronize(memory_type)
        first_pass[memory_type] = (time.perf_counter() - start) / len(sites)
        counts[memory_type] = 0
        per_site[memory_type] = []
        for planes in sites:
            start = time.perf_counter()
            counts[memory_type] += pipeline_run(planes, context)
            synchronize(memory_type)
            per_site[memory_type].append(time.perf_counter() - start)
        whole[memory_type] = sum(per_site[memory_type]) / len(sites)

    transfer_s = None
    if on_gpu:
        stack = np.stack([sites[0][k] for k in sorted(sites[0])])
        transfer_s = timed(lambda: to_memory(stack, CUPY).get(), CUPY, args.repeats)

    print(f"device: {device}; {args.sites} sites of {args.size}x{args.size} uint16, 2 ch x 3 z; best of {args.repeats}")
    print(f"{'step (one 3-plane stack)':34} {'numpy s':>9} {'cupy s':>9} {'ratio':>7}")
    for name, row in step_rows:
        gpu_s = row.get(CUPY)
        ratio = f"{row[NUMPY] / gpu_s:7.1f}" if gpu_s else "      -"
        print(f"{name:34} {row[NUMPY]:9.4f} {gpu_s if gpu_s else float('nan'):9.4f} {ratio}")
    gpu_site = whole.get(CUPY)
    segment = dict(next((row for name, row in step_rows if name == "segment_nuclei"), {}))
    print(
        f"{'whole pipeline per site':34} {whole[NUMPY]:9.4f} {gpu_site if gpu_site else float('nan'):9.4f} "
        f"{(whole[NUMPY] / gpu_site) if gpu_site else float('nan'):7.1f}"
    )
    print(
        f"{'first pass per site (cold kernels)':34} {first_pass[NUMPY]:9.4f} {first_pass.get(CUPY, float('nan')):9.4f}"
    )
    if transfer_s is not None:
        print(f"{'upload+download of one site (6 planes)':34} {transfer_s:9.4f}")
    for memory_type, times in per_site.items():
        print(f"per site, {memory_type}: " + " ".join(f"{t:.3f}" for t in times))
    print(f"objects: {counts}")
    if on_gpu and counts[NUMPY] != counts[CUPY]:
        print("WARNING: object counts differ between numpy and cupy")
    print(
        json.dumps(
            {
                "device": device,
                "site_s_numpy": round(whole[NUMPY], 4),
                "site_s_cupy": round(gpu_site, 4) if gpu_site else None,
                "gpu_speedup_ratio": round(whole[NUMPY] / gpu_site, 2) if gpu_site else None,
                "site_s_cupy_first_pass": round(first_pass[CUPY], 4) if on_gpu else None,
                "site_transfer_s": round(transfer_s, 4) if transfer_s is not None else None,
                "segment_s_numpy": round(segment[NUMPY], 4) if NUMPY in segment else None,
                "segment_s_cupy": round(segment[CUPY], 4) if CUPY in segment else None,
                "segment_speedup_ratio": round(segment[NUMPY] / segment[CUPY], 2) if segment.get(CUPY) else None,
                "objects_numpy": counts[NUMPY],
                "objects_cupy": counts.get(CUPY),
                "image_size_px": args.size,
            }
        )
    )


if __name__ == "__main__":
    main()
