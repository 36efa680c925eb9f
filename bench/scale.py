"""Benchmark: planning big screens, submissions per plate, and Snakemake's cost per job.

1. `snakemake -n` wall time and peak memory for 1, 10, 100 and 1,000 plates of 384 wells (and one
   1536-well plate), each the median (and min-max) of ``BENCH_REPEATS`` (default 3) plans of one screen
   folder. Plate structures are synthetic `plate.json` files (no pixels), as the discover checkpoint
   leaves them, so the plan covers every well job.
   Each plan is made with the default `wells_per_job: auto` (a plate in at most 16 jobs up to 250 plates;
   4 jobs at 1,000 plates, at most 4,000 well jobs in all: openhcs_rules/plate/chunks.py) and, up to 100
   plates, with one job per well (`wells_per_job: 1`, the baseline; 384,000 jobs at 1,000 plates would
   take most of an hour to plan). Besides the wall time, the CPU time (user + sys) of each plan: the wall
   time also holds waits that are no work of planning (e.g. the Slurm executor plugin asks `scontrol` for
   its settings when Snakemake starts: 9 s where a Slurm client is installed but no controller answers).
2. Scheduler submissions per 384-well plate, read off the plan's job counts: discover + flat field +
   assemble, plus one per well job (every job is one submission under the cluster profiles).
   tests/test_cluster.py checks this against a real Slurm (3 wells, 2 per job -> 2 well submissions).
3. Snakemake's overhead per job: 48 trivial `shell: "true"` jobs, --cores 2, wall time per job.
4. Discovery of a 1536-well ImageXpress plate with 9 sites x 5 channels (69,120 files): bench/discovery.py
   (``--skip-discovery`` leaves it out).

Goals (issue #15): 1,000 x 384 wells planned in under 30 s and 1 GB; that discovery in under 10 s.
Run: python bench/scale.py            (or --run-1536 / --run-100x384 to really run such a screen instead;
     BENCH_CORES sets --cores, default all cores)
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _paths  # noqa: F401  (the repository root on sys.path, for openhcs_rules_testkit)

from openhcs_rules_testkit.workflow import PIPELINE, snakemake_command, snakemake_env


def make_screen(folder: Path, plates: int, wells_per_plate: int, wells_per_job: int | str = "auto") -> Path:
    """Config + discovered plate.json files for ``plates`` plates (one site/channel/plane per well)."""
    from openhcs_rules.plate.model import ChannelInfo, ImageKey, ImageStructure, PlateStructure, build_wells
    from openhcs_rules.plate.naming import layout_for_well_count, well_name

    rows, columns = layout_for_well_count(wells_per_plate)
    lines = ["plates:"]
    for index in range(plates):
        name = f"plate{index:03d}"
        data = folder / "data" / name
        data.mkdir(parents=True, exist_ok=True)
        images = [
            ImageStructure(ImageKey(well_name(r, c), 1, 1, 1, 1), f"{name}_{well_name(r, c)}.tif")
            for r in range(rows)
            for c in range(columns)
        ]
        plate = PlateStructure(
            name,
            "imagexpress",
            str(data),
            rows,
            columns,
            [ChannelInfo(1, "DAPI")],
            build_wells(images),
            image_shape=(64, 64),
            dtype="uint16",
        )
        plate.save_json(folder / "results" / name / "plate.json")
        lines.append(f"  {name}: {{source: disk, path: {data}}}")
    lines.append(f"pipeline: {PIPELINE}")
    lines.append(f"wells_per_job: {wells_per_job}")
    config = folder / "screen.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


def timed_dry_runs(
    folder: Path, config: Path, repeats: int
) -> tuple[list[float], list[float], dict[str, int], list[float]]:
    """Wall s and peak MB of ``repeats`` plans of one screen folder, the planned jobs per rule, and CPU s."""
    walls, peaks, counts, cpus = [], [], {}, []
    for _ in range(repeats):
        wall, peak, counts, cpu = timed_dry_run(folder, config)
        walls.append(wall)
        peaks.append(peak)
        cpus.append(cpu)
    return walls, peaks, counts, cpus


def timed_dry_run(folder: Path, config: Path) -> tuple[float, float, dict[str, int], float]:
    """(wall s, peak RSS MB of snakemake, planned jobs per rule and 'total', CPU s) for `snakemake -n`."""
    command = [
        "/usr/bin/time",
        "-f",
        "%M %U %S",
        *snakemake_command(folder, config, "-n", "--quiet", "rules", cores=2),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=snakemake_env())
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    peak_kb, user_s, sys_s = done.stderr.strip().splitlines()[-1].split()
    counts = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return wall, int(peak_kb) / 1024, counts, float(user_s) + float(sys_s)


def measure_discovery() -> dict[str, float]:
    """bench/discovery.py's figures for the 1536-well, 9-site, 5-channel plate (its table printed here too)."""
    from discovery import measure

    return measure(1536, 9, 5, int(os.environ.get("BENCH_REPEATS", "3")))


def per_job_overhead(jobs: int = 48) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        snakefile = Path(tmp) / "Snakefile"
        snakefile.write_text(
            f'rule all:\n    input: expand("out/{{i}}.txt", i=range({jobs}))\n\n'
            'rule one:\n    output: "out/{i}.txt"\n    shell: "touch {output}"\n'
        )
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", tmp, "--cores", "2", "--quiet"],
            check=True,
            capture_output=True,
        )
        return (time.perf_counter() - start) / jobs


def run_screen(folder: Path, plates: int, wells: int, cores: int) -> dict[str, float]:
    """Really run ``plates`` plates of ``wells`` tiny wells (96x96 px, one site/channel/plane) end to end.

    BENCH_GPU sets the config's gpu (default auto); BENCH_TIME_LIMIT_S stops the run there and reports the
    wells done so far (run_finished false).

    One plate folder is generated and named ``plates`` times in the config: each plate is still discovered,
    flat-fielded, processed and assembled on its own.
    """
    from openhcs_rules.demo.synthetic import generate_imagexpress_plate
    from openhcs_rules.plate.naming import layout_for_well_count, well_name

    rows, columns = layout_for_well_count(wells)
    names = [well_name(r, c) for r in range(rows) for c in range(columns)]
    start = time.perf_counter()
    data = folder / "plate_data"
    generate_imagexpress_plate(data, "scale", wells=names, sites=1, channels=1, z_planes=1, shape=(96, 96), seed=4)
    generated = time.perf_counter() - start
    config = folder / "screen.yaml"
    entries = "".join(f"  plate{i:03d}: {{source: disk, path: {data}}}\n" for i in range(plates))
    gpu = os.environ.get("BENCH_GPU", "auto")
    config.write_text(f"plates:\n{entries}pipeline: {PIPELINE}\ngpu: {gpu}\n")
    command = snakemake_command(folder, config, "--quiet", cores=cores)
    limit = float(os.environ.get("BENCH_TIME_LIMIT_S", "0")) or None
    start = time.perf_counter()
    # its own process group, so a time limit stops Snakemake *and* its running jobs
    run = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=snakemake_env(), start_new_session=True
    )
    try:
        _, stderr = run.communicate(timeout=limit)
        finished = run.returncode == 0
    except subprocess.TimeoutExpired:  # report how far it got instead of nothing
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        finished, stderr = False, b""
    if run.returncode not in (0, -signal.SIGKILL):  # say why, with the failed jobs' logs
        errors = [p for p in (folder / "logs").rglob("*.log") if "Error" in p.read_text()]
        logs = "".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in errors[:3])
        raise SystemExit(f"snakemake failed:\n{stderr.decode()[-3000:]}\n{logs}")
    wall = time.perf_counter() - start
    done = len(list((folder / "results").glob("*/wells/*/summary.json")))
    plates_done = len(list((folder / "results").glob("*/wells.csv")))
    logs = [path.read_text() for path in (folder / "logs").glob("*/chunks/*.log")]
    slots = [int(m) for text in logs for m in re.findall(r"claimed GPU \d+ of \d+ \(slot(\d+)", text)]
    return {
        "run_s": round(wall, 1),
        "run_jobs_on_gpu": len(slots),
        "run_max_jobs_per_gpu": max(slots) + 1 if slots else 0,
        "run_finished": finished,
        "run_plates_assembled": plates_done,
        "run_wells": done,
        "run_wells_per_s": round(done / wall, 2),
        "run_cores": cores,
        "generate_s": round(generated, 1),
    }


def main() -> None:
    run = {"--run-1536": (1, 1536), "--run-100x384": (100, 384)}
    for flag, (plates, wells) in run.items():
        if flag in sys.argv:
            cores = int(os.environ.get("BENCH_CORES", os.cpu_count() or 2))
            # printed before the folder is removed: deleting a big screen's files takes minutes
            with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
                result = run_screen(Path(tmp), plates, wells, cores)
                print(
                    f"{'plates':>6} {'wells/plate':>11} {'cores':>5} {'wall s':>8} {'wells done':>10} {'wells/s':>8} "
                    f"{'plates assembled':>16} finished"
                )
                print(
                    f"{plates:6d} {wells:11d} {cores:5d} {result['run_s']:8.1f} {result['run_wells']:10d} "
                    f"{result['run_wells_per_s']:8.2f} {result['run_plates_assembled']:16d} {result['run_finished']}"
                )
                print(json.dumps({f"{key}_{plates}x{wells}": value for key, value in result.items()}), flush=True)
            return
    repeats = int(os.environ.get("BENCH_REPEATS", "3"))
    rows = []
    for plates, wells in ((1, 384), (10, 384), (100, 384), (1000, 384), (1, 1536)):
        for wells_per_job in ("auto", 1) if plates <= 100 else ("auto",):
            with tempfile.TemporaryDirectory() as tmp:
                config = make_screen(Path(tmp), plates, wells, wells_per_job)
                walls, peaks, counts, cpus = timed_dry_runs(Path(tmp), config, repeats)
            rows.append((plates, wells, wells_per_job, counts, walls, peaks, cpus))
    overhead = per_job_overhead()
    discovery = {} if "--skip-discovery" in sys.argv else measure_discovery()

    def row(plates: int, wells: int, wells_per_job: int | str) -> tuple:
        return next(r for r in rows if r[:3] == (plates, wells, wells_per_job))

    def submissions(plates: int, wells: int, wells_per_job: int | str) -> float:
        counts = row(plates, wells, wells_per_job)[3]
        # plate.json already exists here, so discovery is not planned; a fresh screen runs it once per plate
        return (counts["total"] - counts.get("all", 0)) / plates + (0 if "discover" in counts else 1)

    def wall(plates: int, wells: int, wells_per_job: int | str = "auto") -> float:
        return statistics.median(row(plates, wells, wells_per_job)[4])

    def peak(plates: int, wells: int, wells_per_job: int | str = "auto") -> float:
        return statistics.median(row(plates, wells, wells_per_job)[5])

    def cpu(plates: int, wells: int, wells_per_job: int | str = "auto") -> float:
        return statistics.median(row(plates, wells, wells_per_job)[6])

    print(
        f"{'plates':>6} {'wells/plate':>11} {'wells/job':>9} {'jobs planned':>12} {'dry-run s':>10} "
        f"{'min-max s':>13} {'CPU s':>6} {'peak MB':>8} {'min-max MB':>11}   ({repeats} plans each)"
    )
    for plates, wells, wells_per_job, counts, walls, peaks, cpus in rows:
        print(
            f"{plates:6d} {wells:11d} {wells_per_job!s:>9} {counts['total']:12d} {statistics.median(walls):10.2f} "
            f"{f'{min(walls):.2f}-{max(walls):.2f}':>13} {statistics.median(cpus):6.1f} "
            f"{statistics.median(peaks):8.0f} {f'{min(peaks):.0f}-{max(peaks):.0f}':>11}"
        )
    print(
        f"100 x 384 plan: {wall(100, 384):.1f} s with wells_per_job auto, {wall(100, 384, 1):.1f} s with one job per "
        f"well (ratio {wall(100, 384) / wall(100, 384, 1):.3f})"
    )
    print(
        f"1000 x 384 plan: {wall(1000, 384):.1f} s ({cpu(1000, 384):.1f} s CPU), {peak(1000, 384):.0f} MB peak; "
        f"goal 30 s and 1 GB (ratios {wall(1000, 384) / 30:.2f}, {peak(1000, 384) / 1024:.2f})"
    )
    grouped, ungrouped = submissions(1, 384, "auto"), submissions(1, 384, 1)
    print(
        f"submissions per 384-well plate: {ungrouped:.0f} with one job per well, {grouped:.0f} with "
        f"wells_per_job auto ({ungrouped / grouped:.1f}x fewer); 1536-well plate: {submissions(1, 1536, 'auto'):.0f}"
    )
    print(f"snakemake overhead per trivial job (48 jobs, --cores 2): {overhead * 1000:.0f} ms")
    print(
        json.dumps(
            {
                "plan_s_1x384": round(wall(1, 384), 2),
                "plan_s_10x384": round(wall(10, 384), 2),
                "plan_s_100x384": round(wall(100, 384), 2),
                "plan_peak_mb_100x384": round(peak(100, 384), 1),
                "plan_s_100x384_one_job_per_well": round(wall(100, 384, 1), 2),
                "plan_peak_mb_100x384_one_job_per_well": round(peak(100, 384, 1), 1),
                "plan_s_1000x384": round(wall(1000, 384), 2),
                "plan_cpu_s_1000x384": round(cpu(1000, 384), 2),
                "plan_cpu_s_1x384": round(cpu(1, 384), 2),
                "plan_peak_mb_1000x384": round(peak(1000, 384), 1),
                "plan_s_1x1536": round(wall(1, 1536), 2),
                "submissions_per_plate_ungrouped": round(ungrouped),
                "submissions_per_plate_grouped": round(grouped),
                "snakemake_overhead_ms_per_trivial_job": round(overhead * 1000, 1),
                **discovery,
            }
        )
    )


if __name__ == "__main__":
    main()
