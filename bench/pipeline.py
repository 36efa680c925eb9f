"""Benchmark: the demo pipeline through the whole Snakemake workflow vs. the same kernels in a plain loop.

Data: a synthetic ImageXpress plate of 2048x2048 uint16 images, 4 wells x 4 sites x 2 channels x 3 z
(96 images), generated once into bench/.data/ (reused by later runs).

Configurations, all in this one process run, on the same files, each repeated (``--repeats``, default 3)
and the repeats interleaved (floor, cores 1, cores 2, one job, then again), so that a slow spell of the
machine lands on every configuration rather than on one:
  floor     the pipeline's kernels (flat-field estimate, then per site: read, flat-field, background,
            max projection, denoise, segmentation, measurement) called in a plain Python loop, one process,
            no Snakemake, no output files;
  cores1    `snakemake --cores 1` on a screen config naming that plate (with profiles/default's --force-use-threads,
            as a run from the repository root has it; since session 8): discovery, illumination, the well
            jobs (wells_per_job auto: one well per job for 4 wells) writing OME-Zarr/CSV, plate assembly;
  cores2    the same with --cores 2;
  one_job   --cores 1 with all 4 wells in one job (`wells_per_job: 4`): the per-job start-up paid once;
  one_process  the jobs of the cores1 run (discover, illumination, each chunk's process-wells, assemble),
            same commands and arguments as the rules give them, called one after another in one fresh
            Python process without Snakemake: every output written, but one interpreter start and one
            heap. cores1 / one_process is what a process per job and Snakemake cost; one_process / floor is
            what writing the outputs (and discovery, assembly) costs. It is the bound for a long-lived
            worker that would run every local job.
Before every run the plate's files are read once, untimed, so that each run starts with them in the page cache:
this VM's kernel pages out files left unread for about a minute (DAMON), which made whichever run came first
after a pause up to twice as slow (a floor of 58.7 s against 24.4 s in the same sitting).
Each figure is the median over the repeats, with its min..max; workflow_overhead_ratio = median cores1 /
median floor (goal <= 1.10). Where a --cores 1 run's time goes comes from the rules' `benchmark:` files
(each job's wall seconds); "snakemake" is the run's wall time less its jobs' (start-up, DAG, scheduling,
the gaps between jobs). Peak memory per job is the largest max_rss of the process_wells jobs.

Run: python bench/pipeline.py [--size 2048] [--repeats 3] [--only floor,cores1] [--snakemake-args ARGS]
The last line printed is one JSON object with the headline figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _paths import REPO

from openhcs_rules_testkit.workflow import PIPELINE, snakemake_command, snakemake_env

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

WELLS = ["B02", "B03", "C02", "C03"]
CONFIGS = ("floor", "cores1", "cores2", "one_job", "one_process")
#: rule -> the benchmark files (under benchmarks/bench_plate/) of its jobs
RULE_BENCHMARKS = {
    "discover": "discover.tsv",
    "illumination": "estimate_illumination.tsv",
    "process_wells": "chunks/*.tsv",
    "assemble": "assemble_plate.tsv",
}


def make_plate(size: int) -> Path:
    from openhcs_rules.demo.synthetic import generate_imagexpress_plate

    folder = REPO / "bench" / ".data" / f"bench_plate_{size}"
    if not (folder / "ground_truth.csv").exists():
        shutil.rmtree(folder, ignore_errors=True)
        generate_imagexpress_plate(
            folder, plate_name="bench_plate", wells=WELLS, sites=4, channels=2, z_planes=3, shape=(size, size), seed=1
        )
    return folder


@dataclass
class Run:
    """One run of one configuration: wall seconds, objects found, and (workflow runs) its jobs' figures."""

    wall: float
    objects: int
    job_seconds: dict[str, float] = field(default_factory=dict)  # rule -> its jobs' wall seconds, summed
    rss_mb: list[float] = field(default_factory=list)  # max_rss of each process_wells job


def read_into_page_cache(folder: Path) -> None:
    """Read every file of ``folder`` once (the module docstring says why), so a run does not pay for the disk."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with path.open("rb") as handle:
                while handle.read(1 << 24):
                    pass


def floor(plate_dir: Path) -> Run:
    """The kernels alone: what the workflow would cost with zero orchestration and zero output."""
    import numpy as np

    from openhcs_rules.formats.registry import discover_plate, read_plane
    from openhcs_rules.functions.illumination import estimate_illumination
    from openhcs_rules.jobs.illumination import sample_images
    from openhcs_rules.pipeline.executor import PlaneKey, RunContext, run_pipeline
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
                PlaneKey(i.key.site, i.key.channel, i.key.z, i.key.t): read_plane(plate, i)
                for i in plate.wells[well].images
                if i.key.site == site
            }
            objects += len(run_pipeline(pipeline, planes, context).objects)
    return Run(time.perf_counter() - start, objects)


def workflow(plate_dir: Path, cores: int, wells_per_job: int | str = "auto", extra: tuple[str, ...] = ()) -> Run:
    """One Snakemake run of the whole screen in a fresh folder (``extra``: more Snakemake arguments)."""
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config = {
            "plates": {"bench_plate": {"source": "disk", "path": str(plate_dir)}},
            "pipeline": str(PIPELINE),
            "resources": {"threads": 1, "mem_mb": 2000},
            "wells_per_job": wells_per_job,
        }
        (workdir / "screen.yaml").write_text(yaml.safe_dump(config))
        command = snakemake_command(workdir, workdir / "screen.yaml", "--quiet", *extra, "all", cores=cores)
        start = time.perf_counter()
        done = subprocess.run(command, env=snakemake_env(), cwd=workdir, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"snakemake failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        benchmarks = workdir / "benchmarks" / "bench_plate"
        seconds, rss = {}, []
        for rule, pattern in RULE_BENCHMARKS.items():
            rows = [row for tsv in sorted(benchmarks.glob(pattern)) for row in _tsv_rows(tsv)]
            seconds[rule] = sum(float(row["s"]) for row in rows)
            if rule == "process_wells":
                rss = [float(row["max_rss"]) for row in rows]
        with (workdir / "results" / "bench_plate" / "wells.csv").open() as handle:
            objects = sum(int(float(row["Nuclei_Count"])) for row in csv.DictReader(handle))
    return Run(wall, objects, seconds, rss)


def one_process(plate_dir: Path) -> Run:
    """The cores1 run's jobs in one fresh Python process, without Snakemake (module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, "--jobs-in-this-process", str(workdir), "--plate", str(plate_dir)],
            env=snakemake_env(),
            cwd=workdir,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"jobs in one process failed ({done.returncode}):\n{done.stderr[-3000:]}")
        with (workdir / "results" / "bench_plate" / "wells.csv").open() as handle:
            objects = sum(int(float(row["Nuclei_Count"])) for row in csv.DictReader(handle))
    return Run(wall, objects)


def run_jobs_in_this_process(workdir: Path, plate_dir: Path) -> None:
    """Discovery, illumination, every chunk's well job and assembly through the console script's ``main``,
    with the arguments the rules give for :func:`workflow`'s config (``wells_per_job: auto``), read from the
    validated config as the rules read them, not repeated here."""
    from openhcs_rules.cli import main as run_command
    from openhcs_rules.config import check_screen
    from openhcs_rules.jobs.options import WellJobOptions
    from openhcs_rules.plate.chunks import PlateChunks

    os.chdir(workdir)
    screen = check_screen(
        {"plates": {"bench_plate": {"source": "disk", "path": str(plate_dir)}}, "pipeline": str(PIPELINE)}
    )
    out = Path(screen["output"]["dir"]) / "bench_plate"
    plate_json, illumination, wells = str(out / "plate.json"), str(out / "illumination.npz"), str(out / "wells")

    def run(*command: str) -> None:
        if run_command(list(command)) != 0:
            raise SystemExit(f"{command[0]} failed")

    plate_format = screen["plates"]["bench_plate"]["format"]
    run(
        *("discover", "--name", "bench_plate", "--path", str(plate_dir), "--format", plate_format),
        *("--pipeline", str(PIPELINE), "--out", plate_json),
    )
    max_images = str(screen["illumination"]["max_images"])
    run("illumination", "--plate-json", plate_json, "--out", illumination, "--max-images", max_images)
    options = WellJobOptions.from_screen(screen, "bench_plate", illumination=illumination).to_argv()
    for chunk in PlateChunks(screen["wells_per_job"])(plate_json):
        manifest = str(out / "chunks" / f"{chunk}.json")
        run(
            *("process-wells", "--plate-json", plate_json, "--chunk", chunk, "--pipeline", str(PIPELINE)),
            *("--wells-dir", wells, "--manifest", manifest, *options),
        )
    run(
        *("assemble", "--plate-json", plate_json, "--wells-dir", wells, "--out-dir", str(out)),
        *("--backend", screen["output"]["backend"]),
        *("--control-feature", screen["controls"]["feature"], "--illumination", illumination),
    )


def _tsv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@dataclass
class Figures:
    """Every repeat of one configuration."""

    runs: list[Run] = field(default_factory=list)

    @property
    def walls(self) -> list[float]:
        return [run.wall for run in self.runs]

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    def spread(self) -> str:
        return f"{min(self.walls):.2f}..{max(self.walls):.2f}"

    def median_of(self, rule: str) -> float:
        return statistics.median(run.job_seconds.get(rule, 0.0) for run in self.runs)

    def snakemake_s(self) -> float:
        """Median over runs of the wall time no job accounts for (meaningful at --cores 1 only)."""
        return statistics.median(run.wall - sum(run.job_seconds.values()) for run in self.runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="image side in pixels (1024 to develop)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration (median, min..max)")
    parser.add_argument("--only", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    parser.add_argument(
        "--snakemake-args", default="", help="more arguments for every Snakemake run, e.g. '--scheduler greedy'"
    )
    parser.add_argument("--jobs-in-this-process", type=Path, help=argparse.SUPPRESS)  # one_process's own run
    parser.add_argument("--plate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jobs_in_this_process:
        run_jobs_in_this_process(args.jobs_in_this_process, args.plate)
        return
    chosen = [name for name in args.only.split(",") if name]
    unknown = set(chosen) - set(CONFIGS)
    if unknown or "floor" not in chosen:
        raise SystemExit(f"--only: choose from {', '.join(CONFIGS)}, floor included (every ratio is to it)")
    plate_dir = make_plate(args.size)
    n_images = len(WELLS) * 4 * 2 * 3
    extra = tuple(shlex.split(args.snakemake_args))
    runners: dict[str, Callable[[], Run]] = {
        "floor": lambda: floor(plate_dir),
        "cores1": lambda: workflow(plate_dir, 1, extra=extra),
        "cores2": lambda: workflow(plate_dir, 2, extra=extra),
        "one_job": lambda: workflow(plate_dir, 1, wells_per_job=len(WELLS), extra=extra),
        "one_process": lambda: one_process(plate_dir),
    }
    figures = {name: Figures() for name in chosen}
    for repeat in range(args.repeats):
        for name in chosen:
            read_into_page_cache(plate_dir)
            run = runners[name]()
            figures[name].runs.append(run)
            print(f"repeat {repeat + 1}/{args.repeats} {name:8} {run.wall:7.2f} s", flush=True)
    floor_objects = figures["floor"].runs[0].objects
    for name, found in figures.items():
        for run in found.runs:
            if run.objects != floor_objects:
                raise SystemExit(f"{name} found {run.objects} objects, the plain loop {floor_objects}: results differ")

    labels = {
        "floor": "plain loop, 1 process (floor)",
        "cores1": "snakemake --cores 1",
        "cores2": "snakemake --cores 2",
        "one_job": f"snakemake --cores 1, wells_per_job {len(WELLS)}",
        "one_process": "cores1's jobs in 1 process, no Snakemake",
    }
    base = figures["floor"].median
    print(
        f"\n{n_images} images of {args.size}x{args.size} uint16 ({len(WELLS)} wells x 4 sites x 2 ch x 3 z), "
        f"{floor_objects} objects; {args.repeats} repeats, median (min..max)"
        + (f"; Snakemake run with {args.snakemake_args}" if extra else "")
    )
    print(f"{'run':40} {'median s':>9} {'min..max s':>14} {'/ floor':>8} {'images/s/core':>14}")
    for name, found in figures.items():
        cores = 2 if name == "cores2" else 1
        print(
            f"{labels[name]:40} {found.median:9.2f} {found.spread():>14} {found.median / base:8.3f} "
            f"{n_images / found.median / cores:14.2f}"
        )
    headline: dict[str, float | int | str] = {}
    if "cores1" in figures:
        cores1 = figures["cores1"]
        parts = {rule: cores1.median_of(rule) for rule in RULE_BENCHMARKS}
        print("\nwhere a --cores 1 run's time goes (median job seconds from the rules' benchmark files):")
        for rule, seconds in parts.items():
            print(f"  {rule:14} {seconds:7.2f} s")
        print(f"  {'snakemake':14} {cores1.snakemake_s():7.2f} s  (wall time outside every job)")
        print(f"  floor          {base:7.2f} s")
        headline["workflow_overhead_ratio"] = round(cores1.median / base, 4)
        headline.update({f"cores1_{rule}_s": round(seconds, 2) for rule, seconds in parts.items()})
        headline["cores1_snakemake_s"] = round(cores1.snakemake_s(), 2)
    if "one_job" in figures:
        headline["workflow_overhead_ratio_one_job"] = round(figures["one_job"].median / base, 4)
    if "one_process" in figures:
        headline["one_process_over_floor"] = round(figures["one_process"].median / base, 4)
        if "cores1" in figures:
            headline["cores1_over_one_process"] = round(figures["cores1"].median / figures["one_process"].median, 4)
    for name, found in figures.items():
        headline[f"{name}_s"] = round(found.median, 2)
        headline[f"{name}_s_min"] = round(min(found.walls), 2)
        headline[f"{name}_s_max"] = round(max(found.walls), 2)
    if "cores2" in figures:
        headline["images_per_s_per_core"] = round(n_images / figures["cores2"].median / 2, 3)
    rss = [mb for found in figures.values() for run in found.runs for mb in run.rss_mb]
    if rss:
        headline["peak_rss_mb_per_job"] = round(max(rss), 1)
    headline.update({"floor_images_per_s": round(n_images / base, 3), "repeats": args.repeats})
    headline.update({"image_size_px": args.size, "images": n_images})
    if extra:
        headline["snakemake_args"] = args.snakemake_args
    print(json.dumps(headline))


if __name__ == "__main__":
    main()
