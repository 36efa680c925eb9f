"""Benchmark: the demo pipeline through the whole Snakemake workflow vs. the same kernels in a plain loop.

Data: a synthetic ImageXpress plate of 2048x2048 uint16 images, 4 wells x 4 sites x 2 channels x 3 z
(96 images), generated once into bench/.data/ (reused by later runs).

Figures, all in this one process run, on the same files:
  floor     the pipeline's kernels (flat-field estimate, then per site: read, flat-field, background,
            max projection, denoise, segmentation, measurement) called in a plain Python loop, one process,
            no Snakemake, no output files;
  workflow  `snakemake --cores 1` (and --cores 2) on a screen config naming that plate: discovery,
            illumination, one job per well (wells_per_job auto: 1 for 4 wells) writing OME-Zarr/CSV, plate assembly.
workflow_overhead_ratio = workflow wall time at --cores 1 / floor wall time (goal < 1.15).
A last run puts all 4 wells in one job (`wells_per_job: 4`, --cores 1): the per-job start-up is paid once.
Peak memory per job is the max_rss Snakemake's `benchmark:` recorded for the process_wells jobs.

Run: python bench/pipeline.py [--size 2048] [--keep]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from _paths import REPO

from openhcs_rules_testkit.workflow import PIPELINE, snakemake_command, snakemake_env

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

WELLS = ["B02", "B03", "C02", "C03"]


def make_plate(size: int) -> Path:
    from openhcs_rules.demo.synthetic import generate_imagexpress_plate

    folder = REPO / "bench" / ".data" / f"bench_plate_{size}"
    if not (folder / "ground_truth.csv").exists():
        shutil.rmtree(folder, ignore_errors=True)
        generate_imagexpress_plate(
            folder, plate_name="bench_plate", wells=WELLS, sites=4, channels=2, z_planes=3, shape=(size, size), seed=1
        )
    return folder


def floor(plate_dir: Path) -> tuple[float, int]:
    """The kernels alone: what the workflow would cost with zero orchestration and zero output."""
    import numpy as np

    from openhcs_rules.formats.registry import discover_plate, read_plane
    from openhcs_rules.functions.illumination import estimate_illumination
    from openhcs_rules.jobs.illumination import sample_images
    from openhcs_rules.pipeline.executor import RunContext, run_pipeline
    from openhcs_rules.pipeline.serialize import load_pipeline

    start = time.perf_counter()
    plate = discover_plate(plate_dir)
    pipeline = load_pipeline(PIPELINE)
    profiles = {
        c: np.asarray(estimate_illumination([read_plane(plate, i) for i in sample_images(plate, c, 64)]))
        for c in plate.channel_indices
    }
    context = RunContext({i: plate.channel(i).name for i in plate.channel_indices}, illumination=profiles)
    objects = 0
    for well in plate.well_names:
        for site in plate.wells[well].sites:
            planes = {
                (i.key.site, i.key.channel, i.key.z, i.key.t): read_plane(plate, i)
                for i in plate.wells[well].images
                if i.key.site == site
            }
            objects += len(run_pipeline(pipeline, planes, context).objects)
    return time.perf_counter() - start, objects


def workflow(
    plate_dir: Path, cores: int, workdir: Path, wells_per_job: int | str = "auto"
) -> tuple[float, list[float], int]:
    import yaml

    config = {
        "plates": {"bench_plate": {"source": "disk", "path": str(plate_dir)}},
        "pipeline": str(PIPELINE),
        "resources": {"threads": 1, "mem_mb": 2000},
        "wells_per_job": wells_per_job,
    }
    (workdir / "screen.yaml").write_text(yaml.safe_dump(config))
    command = snakemake_command(workdir, workdir / "screen.yaml", "--quiet", "all", cores=cores)
    env = snakemake_env()
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=workdir, capture_output=True)
    wall = time.perf_counter() - start
    rss = []
    for tsv in (workdir / "benchmarks" / "bench_plate" / "chunks").glob("*.tsv"):
        with tsv.open() as handle:
            rss.extend(float(row["max_rss"]) for row in csv.DictReader(handle, delimiter="\t"))
    with (workdir / "results" / "bench_plate" / "wells.csv").open() as handle:
        objects = sum(int(row["n_objects"]) for row in csv.DictReader(handle))
    return wall, rss, objects


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    plate_dir = make_plate(args.size)
    n_images = len(WELLS) * 4 * 2 * 3

    floor_s, floor_objects = floor(plate_dir)
    runs = {}
    for cores in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            runs[cores] = workflow(plate_dir, cores, Path(tmp))
    with tempfile.TemporaryDirectory() as tmp:
        one_job_s, _, one_job_objects = workflow(plate_dir, 1, Path(tmp), wells_per_job=len(WELLS))
    wf1_s, rss, wf_objects = runs[1]
    wf2_s = runs[2][0]
    for objects in (wf_objects, one_job_objects):
        if objects != floor_objects:
            raise SystemExit(f"workflow found {objects} objects, the plain loop {floor_objects}: results differ")

    rows = [
        ("plain loop, 1 process (floor)", floor_s, n_images / floor_s, n_images / floor_s),
        ("snakemake --cores 1", wf1_s, n_images / wf1_s, n_images / wf1_s),
        ("snakemake --cores 2", wf2_s, n_images / wf2_s, n_images / wf2_s / 2),
        (f"snakemake --cores 1, wells_per_job {len(WELLS)}", one_job_s, n_images / one_job_s, n_images / one_job_s),
    ]
    print(
        f"{n_images} images of {args.size}x{args.size} uint16 ({len(WELLS)} wells x 4 sites x 2 ch x 3 z), "
        f"{floor_objects} objects"
    )
    print(f"{'run':34} {'wall s':>8} {'images/s':>9} {'images/s/core':>14}")
    for name, wall, ips, ipspc in rows:
        print(f"{name:34} {wall:8.2f} {ips:9.2f} {ipspc:14.2f}")
    ratio = wf1_s / floor_s
    print(f"workflow overhead ratio (cores 1 / floor): {ratio:.3f}  (goal < 1.15)")
    print(f"  with all wells in one job (wells_per_job {len(WELLS)}): {one_job_s / floor_s:.3f}")
    print(f"peak RSS per process_wells job: max {max(rss):.0f} MB, mean {sum(rss) / len(rss):.0f} MB")
    print(
        json.dumps(
            {
                "workflow_overhead_ratio": round(ratio, 4),
                "workflow_overhead_ratio_one_job": round(one_job_s / floor_s, 4),
                "images_per_s_per_core": round(n_images / wf2_s / 2, 3),
                "images_per_s_per_core_cores1": round(n_images / wf1_s, 3),
                "floor_images_per_s": round(n_images / floor_s, 3),
                "peak_rss_mb_per_job": round(max(rss), 1),
                "image_size_px": args.size,
                "images": n_images,
            }
        )
    )


if __name__ == "__main__":
    main()
