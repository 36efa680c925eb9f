"""Benchmark: CellProfiler-style features of one 2048x2048 site, 3 compartments x 4 channels, numpy (and cupy).

Data: a 2048x2048 site of ~300 nuclei, tiled from four 1024x1024 synthetic sites (4 channels: DNA, a
cell-body stain, two spot channels; in-focus plane only) with their true nucleus labels renumbered so ids
stay unique (a single synthetic site holds ~70 nuclei at any size: the nuclei scale with the image).

Timed, after one warm-up call (cupy compiles its kernels then; the GPU is synchronised before each clock
stops): ``measure_compartments`` with ``cell_channel`` = the cell-body channel and texture on (the whole
measure step: cells grown from the nuclei, cytoplasm, then shape, intensity and Haralick texture for
nuclei, cells and cytoplasm in every channel, and the rows), and its parts: ``grow_cells`` alone and
``object_features`` per compartment. Median and spread (min-max) of ``--repeats`` runs (>= 3).

Baseline: one CPU core (OMP_NUM_THREADS=1, as a well job runs). Without cupy and a CUDA device the cupy
column is empty. The last line is JSON: ``features_s_per_site_numpy`` (and ``_cupy``), the median of the
whole step.

Run: python bench/features.py [--repeats 5] [--no-texture]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from _paths import REPO  # noqa: E402, F401 - puts the repository on sys.path

from openhcs_rules.core.arrays import CUPY, NUMPY, gpu_available, to_memory  # noqa: E402
from openhcs_rules.demo.synthetic import synthesize_site  # noqa: E402
from openhcs_rules.functions.compartments import cytoplasm_labels, grow_cells, measure_compartments  # noqa: E402
from openhcs_rules.functions.features import object_features  # noqa: E402

CHANNELS = ["DNA", "CellBody", "Spots1", "Spots2"]


def tiled_site() -> tuple[np.ndarray, np.ndarray]:
    """(labels (2048, 2048) int32, images (4, 2048, 2048) float32) from four 1024x1024 sites."""
    tiles = [synthesize_site("B02", site, shape=(1024, 1024), channels=4, z_planes=1) for site in range(1, 5)]
    offset = 0
    labels = []
    for tile in tiles:
        labels.append(np.where(tile.labels > 0, tile.labels + offset, 0).astype(np.int32))
        offset += int(tile.labels.max())
    full_labels = np.block([[labels[0], labels[1]], [labels[2], labels[3]]])
    rows = [np.concatenate([tiles[0].images[:, 0], tiles[1].images[:, 0]], axis=2)]
    rows.append(np.concatenate([tiles[2].images[:, 0], tiles[3].images[:, 0]], axis=2))
    return full_labels, np.concatenate(rows, axis=1).astype(np.float32)


def synchronize(memory_type: str) -> None:
    if memory_type == CUPY:
        import cupy

        cupy.cuda.Device().synchronize()


def timings(function: Callable[[], Any], memory_type: str, repeats: int) -> list[float]:
    function()
    synchronize(memory_type)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(memory_type)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-texture", action="store_true", help="leave the Haralick features out")
    args = parser.parse_args()
    repeats = max(3, args.repeats)
    texture = not args.no_texture

    labels, images = tiled_site()
    nuclei_count = len(np.unique(labels)) - 1
    memory_types = [NUMPY, CUPY] if gpu_available() else [NUMPY]
    results: dict[str, dict[str, list[float]]] = {}
    for memory_type in memory_types:
        nuclei = to_memory(labels, memory_type)
        stack = to_memory(images, memory_type)
        cells = grow_cells(nuclei, stack[1])
        compartments = {"nuclei": nuclei, "cells": cells, "cytoplasm": cytoplasm_labels(cells, nuclei)}
        rows: dict[str, list[float]] = {}
        rows["measure_compartments (whole step)"] = timings(
            lambda n=nuclei, s=stack: measure_compartments(n, s, CHANNELS, cell_channel=2, texture=texture),
            memory_type,
            repeats,
        )
        rows["grow_cells"] = timings(lambda n=nuclei, s=stack: grow_cells(n, s[1]), memory_type, repeats)
        for name, compartment in compartments.items():
            rows[f"object_features: {name}"] = timings(
                lambda c=compartment, s=stack: object_features(c, s, CHANNELS, texture=texture), memory_type, repeats
            )
        results[memory_type] = rows

    print(
        f"one {labels.shape[0]}x{labels.shape[1]} site, {nuclei_count} nuclei, 3 compartments x {len(CHANNELS)}"
        f" channels, texture {'on (16 levels, scale 3)' if texture else 'off'}; {repeats} repeats, median [min-max] s"
    )
    header = f"{'what':38}" + "".join(f"{memory_type + ' median [min-max]':>30}" for memory_type in memory_types)
    print(header)
    for name in results[NUMPY]:
        cells_text = []
        for memory_type in memory_types:
            times = results[memory_type][name]
            cells_text.append(f"{statistics.median(times):10.3f} [{min(times):.3f}-{max(times):.3f}]")
        print(f"{name:38}" + "".join(f"{text:>30}" for text in cells_text))
    whole = "measure_compartments (whole step)"
    summary: dict[str, Any] = {
        "features_s_per_site_numpy": round(statistics.median(results[NUMPY][whole]), 3),
        "spread_s_numpy": [round(min(results[NUMPY][whole]), 3), round(max(results[NUMPY][whole]), 3)],
    }
    if CUPY in results:
        summary["features_s_per_site_cupy"] = round(statistics.median(results[CUPY][whole]), 4)
    summary.update({"nuclei": nuclei_count, "channels": len(CHANNELS), "texture": texture, "repeats": repeats})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
