"""Benchmark: discovering a 1536-well ImageXpress plate of 9 sites x 5 channels (69,120 files).

The plate is a MetaXpress export (an ``.HTD`` and ``TimePoint_1/<plate>_<well>_s<site>_w<channel>.TIF``),
made once under ``bench/.data/`` (gitignored). Discovery reads names, not pixels: it opens one file per
channel (name, shape, dtype, pixel size) and, on a plate this big, the first well's files for the stage
positions. So well A01's 45 files are real 64x64 TIFFs with MetaSeries tags, and every other file is a hard
link to A01's file of the same site and channel: 69,120 names (what discovery pays for) in 45 inodes.

Timed, ``--repeats`` times (median and min-max; the folder listing is in the page cache after the first):
``discover_plate`` (detection + parsing, in this process), ``jobs.discover.discover`` (that plus the
checks and writing ``plate.json``), and the ``discover`` job as the workflow runs it
(``python -m openhcs_rules discover ... --pipeline <bundled>``: interpreter start and imports included).

Run: python bench/discovery.py [--wells 1536] [--sites 9] [--channels 5] [--repeats 3]
Last line: JSON with ``discover_s_<wells>x<sites>x<channels>`` (discover_plate),
``discover_write_s_...`` (discover + plate.json), ``discover_job_s_...`` and ``plate_json_mb_...``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _paths import REPO

from openhcs_rules_testkit.workflow import PIPELINE, snakemake_env

DATA = REPO / "bench" / ".data"
PLATE_NAME = "bench1536"


def make_plate(folder: Path, wells: int, sites: int, channels: int) -> int:
    """Write the plate into ``folder`` unless a finished one is there; returns its number of image files."""
    from openhcs_rules.core.files import atomic_write_text
    from openhcs_rules.demo.synthetic import _htd_text, _plane_xml, _write_tiff, image_path
    from openhcs_rules.plate.naming import layout_for_well_count, well_name

    done = folder / "complete.json"
    spec = {"wells": wells, "sites": sites, "channels": channels}
    if done.exists() and json.loads(done.read_text()) == spec:
        return wells * sites * channels
    if folder.exists():  # an unfinished or different plate: start again
        import shutil

        shutil.rmtree(folder)
    rows, columns = layout_for_well_count(wells)
    names = [well_name(r, c) for r in range(rows) for c in range(columns)]
    atomic_write_text(folder / f"{PLATE_NAME}.HTD", _htd_text(PLATE_NAME, names, sites, channels, 1, 1, 0))
    pixels = np.random.default_rng(0).integers(100, 4000, (64, 64), dtype=np.uint16)
    first: dict[tuple[int, int], Path] = {}
    for site in range(1, sites + 1):
        for channel in range(1, channels + 1):
            path = image_path(folder, PLATE_NAME, names[0], site, channel, 1, 1, 1)
            _write_tiff(path, pixels, _plane_xml(names[0], site, channel, 1, (64, 64), 0.65, sites))
            first[site, channel] = path
    for well in names[1:]:
        for (site, channel), source in first.items():
            os.link(source, image_path(folder, PLATE_NAME, well, site, channel, 1, 1, 1))
    done.write_text(json.dumps(spec))
    return wells * sites * channels


def timed(repeats: int, action: Callable[[], object]) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``action``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def measure(wells: int = 1536, sites: int = 9, channels: int = 5, repeats: int = 3) -> dict[str, float]:
    """Make (once) and discover the plate; headline figures keyed ``..._<wells>x<sites>x<channels>``."""
    from openhcs_rules.formats.registry import discover_plate
    from openhcs_rules.jobs.discover import discover

    folder = DATA / f"imagexpress_{wells}x{sites}x{channels}"
    start = time.perf_counter()
    files = make_plate(folder, wells, sites, channels)
    made = time.perf_counter() - start
    tag = f"{wells}x{sites}x{channels}"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "plate.json"
        plate = discover_plate(folder, PLATE_NAME)  # warm: the folder listing into the page cache
        assert len(plate.images()) == files, (len(plate.images()), files)
        parse = timed(repeats, lambda: discover_plate(folder, PLATE_NAME))
        write = timed(repeats, lambda: discover(PLATE_NAME, folder, out, pipeline_path=PIPELINE))
        size_mb = out.stat().st_size / 1e6
        command = [sys.executable, "-m", "openhcs_rules", "discover", "--name", PLATE_NAME, "--path", str(folder)]
        command += ["--format", "auto", "--pipeline", str(PIPELINE), "--out", str(out)]
        env = snakemake_env()
        job = timed(repeats, lambda: subprocess.run(command, check=True, capture_output=True, env=env))
    rows = [("discover_plate (detect + parse)", parse), ("discover() + plate.json", write), ("discover job", job)]
    print(f"plate: {wells} wells x {sites} sites x {channels} channels = {files} files ({made:.1f} s to make/check)")
    print(f"{'step':<32} {'median s':>9} {'min s':>7} {'max s':>7}")
    for label, times in rows:
        print(f"{label:<32} {statistics.median(times):9.2f} {min(times):7.2f} {max(times):7.2f}")
    print(f"plate.json: {size_mb:.1f} MB; goal: discovery under 10 s")
    return {
        f"discover_s_{tag}": round(statistics.median(parse), 2),
        f"discover_write_s_{tag}": round(statistics.median(write), 2),
        f"discover_job_s_{tag}": round(statistics.median(job), 2),
        f"plate_json_mb_{tag}": round(size_mb, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wells", type=int, default=1536)
    parser.add_argument("--sites", type=int, default=9)
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(args.wells, args.sites, args.channels, args.repeats)))


if __name__ == "__main__":
    main()
