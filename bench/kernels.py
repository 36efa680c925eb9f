"""Benchmark: the CPU kernels of the default pipeline, before (a baseline revision) and after, on one core.

Data: synthetic sites of SIZE x SIZE uint16 (``synthesize_site``: 2 channels x 3 z, ~70 nuclei of 48-120 px at
2048 px, the demo screen's shape, as bench/gpu.py and bench/pipeline.py use), generated in memory, plus one
2048x2048 field of ~1,100 small (24 px) crowded nuclei (``realistic_nuclei.synthesize_field``, the accuracy
benchmark's timing site), where the nucleus-diameter estimate runs at full resolution.

Figures, numpy on one core (OMP_NUM_THREADS=1, as a well job runs), median and min..max over ``--repeats``:

* per step of config/pipelines/nuclei_count.py, one site's nuclei stack (3 planes; the denoise and segment
  steps get the 1-plane best-focus projection, as in the pipeline), averaged over the sites; every version
  gets the same input (the current version's output of the step before);
* the whole pipeline per site: both channels through flat field, background, best focus and denoise, the
  nuclei channel segmented, both channels measured (``measure_objects``): what a well job computes per site;
* segmentation of the crowded 24-px field.

Baseline ("before"): the seven kernel modules (``_stack``, ``_resample``, ``projection``, ``background``,
``denoise``, ``illumination``, ``segmentation``) as of git revision ``--baseline`` (default: de70f3f, the last
revision before this benchmark's kernels changed), loaded from ``git show`` into a package of their own so that
they import each other and not the working tree. The labels of both versions are compared pixel by pixel.

``--openhcs PYTHON`` additionally times OpenHCS's CPU kernels in that interpreter (one with ``openhcs`` installed, e.g.
a throwaway venv: it is never a dependency of this project) on the same sites, flat-field corrected with this
project's profile (OpenHCS's numpy flat field, BaSiC, estimates a profile per stack) and handed over as .npy files:
``tophat``, ``select_best_focus``, ``gaussian_blur``, its demo pipeline's ``count_cells_single_channel`` (watershed)
and its CellProfiler port ``identify_primary_objects``, each given the nuclei's size range; the counts are compared
with the true ones.

Run: python bench/kernels.py [--size 2048] [--sites 4] [--repeats 3] [--baseline REV] [--openhcs PYTHON]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from _paths import REPO  # noqa: E402

from openhcs_rules.demo.realistic_nuclei import synthesize_field  # noqa: E402
from openhcs_rules.demo.synthetic import synthesize_site  # noqa: E402
from openhcs_rules.functions.measurement import measure_objects  # noqa: E402

#: the kernel modules compared; each may import the others (``openhcs_rules.functions.<name>``)
MODULES = ("_stack", "_resample", "projection", "background", "denoise", "illumination", "segmentation")
DEFAULT_BASELINE = "de70f3f"
CHANNELS = ("DAPI", "FITC")


def load_baseline(revision: str) -> SimpleNamespace:
    """The kernel modules of ``revision`` as one namespace (git show into a temporary package)."""
    folder = Path(tempfile.mkdtemp())
    package = folder / "kernels_baseline"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in MODULES:
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{revision}:openhcs_rules/functions/{name}.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for other in MODULES:
            source = source.replace(f"openhcs_rules.functions.{other} ", f"kernels_baseline.{other} ")
        (package / f"{name}.py").write_text(source)
    sys.path.insert(0, str(folder))
    try:
        modules = {name: importlib.import_module(f"kernels_baseline.{name}") for name in MODULES}
    finally:
        sys.path.remove(str(folder))
    for name, module in modules.items():
        if module.__file__ is None or not module.__file__.startswith(str(folder)):
            raise RuntimeError(f"baseline module {name} did not load from {folder}")
    shutil.rmtree(folder, ignore_errors=True)  # imported: the files are no longer read
    return kernels(modules)


def kernels(modules: dict[str, Any]) -> SimpleNamespace:
    """The pipeline's functions from one set of modules."""
    return SimpleNamespace(
        flatfield_correct=modules["illumination"].flatfield_correct,
        estimate_illumination=modules["illumination"].estimate_illumination,
        subtract_background=modules["background"].subtract_background,
        project_z=modules["projection"].project_z,
        denoise=modules["denoise"].denoise,
        segment_nuclei=modules["segmentation"].segment_nuclei,
    )


# the working tree's modules (by module path: the package re-exports functions under some of the same names)
CURRENT = kernels({name: importlib.import_module(f"openhcs_rules.functions.{name}") for name in MODULES})


def step_calls(k: SimpleNamespace, profile: np.ndarray) -> list[tuple[str, Callable[[np.ndarray], Any]]]:
    """The pipeline's image steps in order (config/pipelines/nuclei_count.py's arguments)."""
    return [
        ("flatfield_correct", lambda s: k.flatfield_correct(s, profile)),
        ("subtract_background (r 50)", lambda s: k.subtract_background(s, radius=50)),
        ("project_z (best focus)", lambda s: k.project_z(s, method="best_focus")),
        ("denoise (gaussian 0.5)", lambda s: k.denoise(s, sigma=0.5)),
        ("segment_nuclei", lambda s: k.segment_nuclei(s)),
    ]


def site_pipeline(k: SimpleNamespace, site: np.ndarray, profiles: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """One site (channels, z, y, x) through the pipeline: the nuclei labels and the number of object rows."""
    projected = []
    for channel in range(site.shape[0]):
        stack = k.flatfield_correct(site[channel], profiles[channel])
        stack = k.subtract_background(stack, radius=50)
        stack = k.project_z(stack, method="best_focus")
        projected.append(k.denoise(stack, sigma=0.5)[0])
    labels = np.asarray(k.segment_nuclei(projected[0][None]))[0]
    rows = measure_objects(labels, np.stack(projected), list(CHANNELS))
    return labels, len(rows)


def spread(values: list[float]) -> str:
    return f"{np.median(values):8.4f} ({min(values):.4f}..{max(values):.4f})"


#: run by ``--openhcs PYTHON`` in that interpreter: OpenHCS's CPU kernels (numpy/scikit-image/OpenCV; numba
#: compiles on the first call, so every kernel is called once before it is timed) on the flat-field corrected sites.
OPENHCS_SCRIPT = r"""
import json, sys, time
from pathlib import Path
import numpy as np
import cv2
cv2.setNumThreads(1)
import openhcs
from openhcs.processing.backends.processors.numpy_processor import gaussian_blur, tophat
from openhcs.processing.backends.analysis.focus_analyzer import FocusAnalyzer
from openhcs.processing.backends.analysis.cell_counting_cpu import DetectionMethod, count_cells_single_channel
from openhcs.processing.backends.cellprofiler.primary_objects import identify_primary_objects

folder, repeats = Path(sys.argv[1]), int(sys.argv[2])
truth = json.loads((folder / "truth.json").read_text())
sites = [np.load(folder / f"site{i}.npy") for i in range(len(truth))]
side = sites[0].shape[-1]
scale = side / 512.0  # the synthetic nuclei are 12-30 px wide at 512 px, scaled with the image
AREA = (int(np.pi * (6 * scale) ** 2), int(np.pi * (16 * scale) ** 2))  # smallest .. largest nucleus, a margin each


def background(stack):
    return tophat(stack, selem_radius=50)


def focus(stack):
    return FocusAnalyzer.select_best_focus(stack.astype(np.float64), metric="combined")[0].astype(np.float32)


def blur(plane):
    return gaussian_blur(plane, sigma=0.5)


def count_cells(plane):
    result = count_cells_single_channel(
        plane, detection_method=DetectionMethod.WATERSHED, min_cell_area=AREA[0], max_cell_area=AREA[1]
    )
    return result[1].rows[0].cell_count


def primary_objects(plane):
    # CellProfiler reads a 16-bit image as value / 65535; its threshold bounds are on that scale
    out = identify_primary_objects(
        plane[0] / 65535.0, min_diameter=int(10 * scale), max_diameter=int(32 * scale), exclude_border_objects=False
    )
    return int(np.unique(np.asarray(out[2].labels)).size - 1)


def site_pipeline(site):
    planes = [blur(focus(background(site[c]))) for c in range(site.shape[0])]
    return count_cells(planes[0])


# inputs of each step: the chain of OpenHCS's own outputs
bg = [background(site[0]) for site in sites]
fo = [focus(stack) for stack in bg]
de = [blur(plane) for plane in fo]
steps = {
    "tophat (r 50, 4x downsampled), 3 planes": (background, [site[0] for site in sites]),
    "select_best_focus (combined), 3 planes": (focus, bg),
    "gaussian_blur (sigma 0.5), 1 plane": (blur, fo),
    "count_cells_single_channel (watershed), 1 plane": (count_cells, de),
    "identify_primary_objects (CellProfiler), 1 plane": (primary_objects, de),
}
times, counts = {}, {}
for name, (function, inputs) in steps.items():
    counts[name] = [function(x) for x in inputs]  # warm-up (numba compiles) and the counts
    times[name] = []
    for _ in range(repeats):
        start = time.perf_counter()
        for x in inputs:
            function(x)
        times[name].append((time.perf_counter() - start) / len(inputs))
site_times = []
for _ in range(repeats):
    start = time.perf_counter()
    for site in sites:
        site_pipeline(site)
    site_times.append((time.perf_counter() - start) / len(sites))
print(f"OpenHCS {openhcs.__version__}, numpy {np.__version__}, one core; median (min..max) of {repeats}")
for name, values in times.items():
    extra = ""
    if name.startswith(("count_cells", "identify")):
        errors = [(c - t) / t for c, t in zip(counts[name], truth)]
        extra = f"  objects {counts[name]} (true {truth}), median count error {np.median(errors):+.3f}"
    print(f"| {name:48} | {np.median(values):8.4f} ({min(values):.4f}..{max(values):.4f}) |{extra}")
print(f"| {'pipeline per site (2 ch: tophat, focus, blur; count_cells)':48} | "
      f"{np.median(site_times):8.4f} ({min(site_times):.4f}..{max(site_times):.4f}) |")
segmenters = [n for n in counts if n.startswith(("count", "ident"))]
count_errors = {n: float(np.median([(c - t) / t for c, t in zip(counts[n], truth)])) for n in segmenters}
print(json.dumps({
    "openhcs_version": openhcs.__version__,
    "pipeline_s_per_site": round(float(np.median(site_times)), 4),
    "steps_s": {n: round(float(np.median(v)), 4) for n, v in times.items()},
    "count_error": {n: round(e, 4) for n, e in count_errors.items()},
}))
"""


def run_openhcs(python: str, sites: list[np.ndarray], truth: list[int], repeats: int) -> dict[str, Any] | None:
    """OpenHCS's CPU kernels on the same (flat-field corrected) sites, in ``python`` (its own venv); None when it
    cannot run there."""
    with tempfile.TemporaryDirectory() as folder:
        for index, site in enumerate(sites):
            np.save(Path(folder) / f"site{index}.npy", site)
        (Path(folder) / "truth.json").write_text(json.dumps(truth))
        script = Path(folder) / "openhcs_kernels.py"
        script.write_text(OPENHCS_SCRIPT)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
        env.pop("PYTHONPATH", None)
        done = subprocess.run(
            [python, str(script), folder, str(repeats)], capture_output=True, text=True, env=env, check=False
        )
    if done.returncode != 0:
        print(f"OpenHCS run failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return None
    print(done.stdout.rstrip())
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision of the 'before' kernels")
    parser.add_argument("--openhcs", default=None, help="a Python with openhcs installed: time its kernels too")
    args = parser.parse_args()

    data = [
        synthesize_site("B02", s, shape=(args.size, args.size), channels=2, z_planes=3)
        for s in range(1, 1 + args.sites)
    ]
    sites = [d.images for d in data]
    truth = [d.count for d in data]
    before = load_baseline(args.baseline)
    versions = {"before": before, "after": CURRENT}
    # one flat-field profile per channel from every plane of the sites (as the plate's illumination job does);
    # the same profile for both versions
    profiles = [
        np.asarray(CURRENT.estimate_illumination([plane for site in sites for plane in site[c]])) for c in range(2)
    ]

    # per step: the current version's chain of outputs is every version's input
    inputs: list[list[np.ndarray]] = []
    stacks = [site[0] for site in sites]
    for name, call in step_calls(CURRENT, profiles[0]):
        inputs.append(stacks)
        if name != "segment_nuclei":
            stacks = [np.asarray(call(s)) for s in stacks]
    step_times: dict[str, dict[str, list[float]]] = {}
    for version, k in versions.items():
        for (name, call), stack_list in zip(step_calls(k, profiles[0]), inputs, strict=True):
            call(stack_list[0])  # warm-up (imports, caches)
            step_times.setdefault(name, {})[version] = []
    for _ in range(args.repeats):
        for version, k in versions.items():
            for (name, call), stack_list in zip(step_calls(k, profiles[0]), inputs, strict=True):
                start = time.perf_counter()
                for stack in stack_list:
                    call(stack)
                step_times[name][version].append((time.perf_counter() - start) / len(stack_list))

    # the whole pipeline per site, versions interleaved per repeat
    site_times: dict[str, list[float]] = {version: [] for version in versions}
    labels: dict[str, list[np.ndarray]] = {}
    rows: dict[str, int] = {}
    for version, k in versions.items():
        results = [site_pipeline(k, site, profiles) for site in sites]  # warm-up, and the labels compared
        labels[version] = [lab for lab, _ in results]
        rows[version] = sum(n for _, n in results)
    for _ in range(args.repeats):
        for version, k in versions.items():
            start = time.perf_counter()
            for site in sites:
                site_pipeline(k, site, profiles)
            site_times[version].append((time.perf_counter() - start) / len(sites))
    identical = sum(int(np.array_equal(a, b)) for a, b in zip(labels["before"], labels["after"], strict=True))
    counts = {version: [int(lab.max()) for lab in labs] for version, labs in labels.items()}

    # the crowded small-nuclei field (the accuracy benchmark's timing site)
    crowded = synthesize_field(0, shape=(2048, 2048), diameter=24.0)
    crowded_stack = CURRENT.denoise(CURRENT.subtract_background(crowded.image[None], radius=50), sigma=0.5)
    crowded_times: dict[str, list[float]] = {}
    crowded_labels: dict[str, np.ndarray] = {}
    for version, k in versions.items():
        crowded_labels[version] = np.asarray(k.segment_nuclei(crowded_stack))[0]
        crowded_times[version] = []
    for _ in range(args.repeats):
        for version, k in versions.items():
            start = time.perf_counter()
            k.segment_nuclei(crowded_stack)
            crowded_times[version].append(time.perf_counter() - start)
    crowded_identical = bool(np.array_equal(crowded_labels["before"], crowded_labels["after"]))

    median = {key: {v: float(np.median(t)) for v, t in row.items()} for key, row in step_times.items()}
    site_median = {v: float(np.median(t)) for v, t in site_times.items()}
    crowded_median = {v: float(np.median(t)) for v, t in crowded_times.items()}
    print(
        f"{args.sites} sites of {args.size}x{args.size} uint16, 2 ch x 3 z (true nuclei {truth}); numpy, one core "
        f"(OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}); median (min..max) of {args.repeats} repeats; "
        f"baseline {args.baseline}"
    )
    print(f"| {'step':50} | {'before s':26} | {'after s':26} | speed-up |")
    print(f"|{'-' * 52}|{'-' * 28}|{'-' * 28}|----------|")
    for name, row in step_times.items():
        what = f"{name}, per stack" + (" (1 plane)" if name.startswith(("denoise", "segment")) else " (3 planes)")
        print(
            f"| {what:50} | {spread(row['before']):26} | {spread(row['after']):26} | "
            f"{median[name]['before'] / median[name]['after']:7.2f}x |"
        )
    print(
        f"| {'whole pipeline per site (2 ch, measurement)':50} | {spread(site_times['before']):26} | "
        f"{spread(site_times['after']):26} | {site_median['before'] / site_median['after']:7.2f}x |"
    )
    print(
        f"| {'segment_nuclei, 2048^2 field of 24-px nuclei':50} | {spread(crowded_times['before']):26} | "
        f"{spread(crowded_times['after']):26} | {crowded_median['before'] / crowded_median['after']:7.2f}x |"
    )
    count_error = float(np.median([(c - t) / t for c, t in zip(counts["after"], truth, strict=True)]))
    print(f"objects per site: before {counts['before']}, after {counts['after']}; true {truth}")
    print(f"median count error (after): {count_error:+.3f}")
    print(f"labels identical: {identical} of {len(sites)} sites; crowded field: {crowded_identical}")
    print(f"object rows measured: before {rows['before']}, after {rows['after']}")

    summary: dict[str, Any] = {
        "segment_s_per_stack": round(median["segment_nuclei"]["after"], 4),
        "segment_s_per_stack_before": round(median["segment_nuclei"]["before"], 4),
        "pipeline_s_per_site": round(site_median["after"], 4),
        "pipeline_s_per_site_before": round(site_median["before"], 4),
        "speedup_vs_before": round(site_median["before"] / site_median["after"], 3),
        "best_focus_s_per_stack": round(median["project_z (best focus)"]["after"], 4),
        "background_s_per_stack": round(median["subtract_background (r 50)"]["after"], 4),
        "denoise_s_per_plane": round(median["denoise (gaussian 0.5)"]["after"], 4),
        "flatfield_s_per_stack": round(median["flatfield_correct"]["after"], 4),
        "segment_s_crowded_2048": round(crowded_median["after"], 4),
        "segment_s_crowded_2048_before": round(crowded_median["before"], 4),
        "labels_identical_sites": identical,
        "labels_identical_crowded": crowded_identical,
        "objects_after": sum(counts["after"]),
        "count_error_median": round(count_error, 4),
        "objects_before": sum(counts["before"]),
        "image_size_px": args.size,
    }
    if args.openhcs:
        corrected = [np.stack([CURRENT.flatfield_correct(site[c], profiles[c]) for c in range(2)]) for site in sites]
        openhcs = run_openhcs(args.openhcs, corrected, truth, args.repeats)
        if openhcs is not None:
            summary["openhcs_pipeline_s_per_site"] = openhcs.get("pipeline_s_per_site")
            summary["openhcs_count_error"] = openhcs.get("count_error")
            summary["speedup_vs_openhcs"] = (
                round(openhcs["pipeline_s_per_site"] / site_median["after"], 3)
                if openhcs.get("pipeline_s_per_site")
                else None
            )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
