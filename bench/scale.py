"""Benchmark: planning big screens, submissions per plate, and Snakemake's cost per job.

1. `snakemake -n` wall time and peak memory for 1, 10 and 100 plates of 384 wells (and one 1536-well
   plate). Plate structures are synthetic `plate.json` files (no pixels), as the discover checkpoint
   leaves them, so the plan covers every well job.
2. Scheduler submissions per 384-well plate with and without the cluster profiles' well groups
   (group-components 24): discover + flat field + assemble, plus one submission per well or per 24 wells.
   tests/test_cluster.py checks this arithmetic against a real Slurm (3 wells, 2 per group -> 2).
3. Snakemake's overhead per job: 48 trivial `shell: "true"` jobs, --cores 2, wall time per job.

Baseline for (1): the goal of 30 s for 100 x 384 wells on this 2-core machine.
Run: python bench/scale.py            (add --run-1536 to really run a 1536-well plate instead)
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GROUP_SIZE = 24


def make_screen(folder: Path, plates: int, wells_per_plate: int) -> Path:
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
    lines.append(f"pipeline: {REPO / 'config' / 'pipelines' / 'nuclei_count.py'}")
    config = folder / "screen.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


def timed_dry_run(folder: Path, config: Path) -> tuple[float, float, int]:
    """(wall s, peak RSS MB of snakemake, planned jobs) for `snakemake -n`."""
    command = [
        "/usr/bin/time",
        "-f",
        "%M",
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "workflow" / "Snakefile"),
        "--directory",
        str(folder),
        "--configfile",
        str(config),
        "-n",
        "--quiet",
        "rules",
        "--cores",
        "2",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    total = next(int(line.split()[-1]) for line in done.stdout.splitlines() if line.startswith("total"))
    return wall, peak_kb / 1024, total


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


def run_1536(folder: Path) -> dict[str, float]:
    """Really run a 1536-well plate (96x96 px, one site/channel/plane per well) with --cores 2."""
    from openhcs_rules.demo.synthetic import generate_imagexpress_plate
    from openhcs_rules.plate.naming import well_name

    wells = [well_name(r, c) for r in range(32) for c in range(48)]
    start = time.perf_counter()
    generate_imagexpress_plate(
        folder / "plate1536", "plate1536", wells=wells, sites=1, channels=1, z_planes=1, shape=(96, 96), seed=4
    )
    generated = time.perf_counter() - start
    config = folder / "screen.yaml"
    config.write_text(
        f"plates:\n  plate1536: {{source: disk, path: {folder / 'plate1536'}}}\n"
        f"pipeline: {REPO / 'config' / 'pipelines' / 'nuclei_count.py'}\n"
    )
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "workflow" / "Snakefile"),
        "--directory",
        str(folder),
        "--configfile",
        str(config),
        "--cores",
        "2",
        "--quiet",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    wall = time.perf_counter() - start
    rows = (folder / "results" / "plate1536" / "wells.csv").read_text().strip().splitlines()[1:]
    return {"run_1536_s": round(wall, 1), "run_1536_wells": len(rows), "generate_1536_s": round(generated, 1)}


def main() -> None:
    if "--run-1536" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            result = run_1536(Path(tmp))
        print(
            f"1536-well plate run end to end with --cores 2: {result['run_1536_s']} s, "
            f"{result['run_1536_wells']} wells in wells.csv"
        )
        print(json.dumps(result))
        return
    rows = []
    for plates, wells in ((1, 384), (10, 384), (100, 384), (1, 1536)):
        with tempfile.TemporaryDirectory() as tmp:
            config = make_screen(Path(tmp), plates, wells)
            wall, peak, jobs = timed_dry_run(Path(tmp), config)
        rows.append((plates, wells, jobs, wall, peak))
    ungrouped = 384 + 3
    grouped = math.ceil(384 / GROUP_SIZE) + 3
    overhead = per_job_overhead()

    print(f"{'plates':>6} {'wells/plate':>11} {'jobs planned':>12} {'dry-run s':>10} {'peak MB':>8}")
    for plates, wells, jobs, wall, peak in rows:
        print(f"{plates:6d} {wells:11d} {jobs:12d} {wall:10.2f} {peak:8.0f}")
    plan_100 = next(r for r in rows if r[0] == 100)
    print(f"100 x 384 plan: {plan_100[3]:.1f} s vs goal 30 s (ratio {plan_100[3] / 30:.2f})")
    print(
        f"submissions per 384-well plate: {ungrouped} ungrouped, {grouped} with groups of {GROUP_SIZE} wells "
        f"({ungrouped / grouped:.1f}x fewer)"
    )
    print(f"snakemake overhead per trivial job (48 jobs, --cores 2): {overhead * 1000:.0f} ms")
    print(
        json.dumps(
            {
                "plan_s_1x384": round(rows[0][3], 2),
                "plan_s_10x384": round(rows[1][3], 2),
                "plan_s_100x384": round(plan_100[3], 2),
                "plan_peak_mb_100x384": round(plan_100[4], 1),
                "plan_s_1x1536": round(rows[3][3], 2),
                "submissions_per_plate_ungrouped": ungrouped,
                "submissions_per_plate_grouped": grouped,
                "snakemake_overhead_ms_per_trivial_job": round(overhead * 1000, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
