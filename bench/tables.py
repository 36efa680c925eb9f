"""Benchmark: writing the plate's per-object table (Parquet and CSV) and computing one site's features.

Data: a synthetic per-object table of ``--rows`` objects (default 1,000,000) x 200 feature columns (float64,
CellProfiler names) plus the identifying ``Metadata_*`` columns (plate, well, site, timepoint, object
number), built once in memory; the features figure is :mod:`bench.features`'s (one 2048x2048 site, ~300
nuclei, 3 compartments x 4 channels).

Timed, ``--repeats`` times (median and min-max): ``tables.write_table`` writing the Parquet (zstd) and the
CSV of the whole table, each atomically, as the plate's assembly does. Baseline, on the first
``--baseline-rows`` rows of the same table (the whole table would take minutes): Python's ``csv`` module
writing dict rows, which is how the plate tables were written before; the ratio is the rows per second of
our CSV writer over the baseline's.

Run: python bench/tables.py [--rows 1000000] [--repeats 3] [--baseline-rows 100000] [--skip-features]
Last line: JSON with ``parquet_write_s_1m``, ``csv_write_s_1m`` (scaled to 1M rows when --rows differs),
``csv_vs_baseline_speedup`` and ``features_s_per_site_numpy`` (and ``_cupy`` where a device is present).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
from _paths import REPO

from openhcs_rules.jobs.tables import write_table

N_FEATURES = 200


def object_table(rows: int, seed: int = 0) -> pa.Table:
    """``rows`` objects: Metadata columns, then 200 float features with CellProfiler-like names."""
    rng = np.random.default_rng(seed)
    wells = np.array([f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25)])
    columns: dict[str, pa.Array] = {
        "Metadata_Plate": pa.array(np.full(rows, "plate_001")),
        "Metadata_Well": pa.array(wells[rng.integers(0, len(wells), rows)]),
        "Metadata_Site": pa.array(rng.integers(1, 10, rows)),
        "Metadata_Timepoint": pa.array(np.ones(rows, dtype=np.int64)),
        "Metadata_ObjectNumber": pa.array(np.arange(1, rows + 1)),
    }
    groups = ("AreaShape", "Intensity", "Texture")
    for index in range(N_FEATURES):
        name = f"Nuclei_{groups[index % 3]}_Feature{index:03d}_DNA"
        columns[name] = pa.array(rng.normal(100.0, 15.0, rows))
    return pa.table(columns)


def timed(function: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def baseline_csv(rows: list[dict[str, object]], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def features_figures() -> dict[str, float]:
    """bench/features.py's last JSON line (its own process: it pins one thread before numpy loads)."""
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "features.py"), "--repeats", "3"],
        capture_output=True,
        text=True,
        check=True,
    )
    print(done.stdout.rstrip())
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-rows", type=int, default=100_000)
    parser.add_argument("--skip-features", action="store_true")
    args = parser.parse_args()
    repeats = max(3, args.repeats)
    table = object_table(args.rows)
    small = table.slice(0, min(args.baseline_rows, args.rows))
    small_rows = small.to_pylist()
    scale = 1_000_000 / args.rows
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        parquet = timed(lambda: write_table(table, out / "objects.parquet", None), repeats)
        csv_times = timed(lambda: write_table(table, None, out / "objects.csv"), repeats)
        sizes = ((out / "objects.parquet").stat().st_size, (out / "objects.csv").stat().st_size)
        ours_small = timed(lambda: write_table(small, None, out / "small.csv"), repeats)
        theirs_small = timed(lambda: baseline_csv(small_rows, out / "baseline.csv"), repeats)

    def line(name: str, times: list[float], rows: int) -> str:
        median = statistics.median(times)
        spread = f"{min(times):6.2f}-{max(times):6.2f}"
        return f"| {name:<44} | {rows:>9,} | {median:8.2f} | {spread} | {rows / median:>12,.0f} |"

    print(
        f"per-object table: {args.rows:,} rows x {table.num_columns} columns ({N_FEATURES} features), {repeats} repeats"
    )
    print("| what                                         |      rows | median s |   min-max s |       rows/s |")
    print("|----------------------------------------------|-----------|----------|-------------|--------------|")
    print(line("Parquet (zstd), tables.write_table", parquet, args.rows))
    print(line("CSV, tables.write_table (pyarrow)", csv_times, args.rows))
    print(line("CSV, tables.write_table, baseline rows", ours_small, small.num_rows))
    print(line("baseline: csv.DictWriter of dict rows", theirs_small, small.num_rows))
    speedup = statistics.median(theirs_small) / statistics.median(ours_small)
    print(
        f"sizes: Parquet {sizes[0] / 1e6:.0f} MB, CSV {sizes[1] / 1e6:.0f} MB; "
        f"CSV writer vs baseline: {speedup:.1f}x faster"
    )
    figures = {
        "parquet_write_s_1m": round(statistics.median(parquet) * scale, 3),
        "csv_write_s_1m": round(statistics.median(csv_times) * scale, 3),
        "csv_vs_baseline_speedup": round(speedup, 2),
    }
    if not args.skip_features:
        figures.update({k: v for k, v in features_figures().items() if k.startswith("features_s_per_site")})
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
