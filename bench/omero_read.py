"""OMERO reads: omero_local's direct path vs plain tifffile, and server calls for discovery and API reads.

    python bench/omero_read.py                 # default plate: 8 wells x 2 fields x 2 channels x 3 z, 1024^2
    python bench/omero_read.py --size 2048 --repeats 5

No OMERO server can run here, so the plate is imported into the test stand-in
(openhcs_rules_testkit/omero_standin): its managed repository holds a real OME-TIFF, which the direct path
reads exactly as it would next to a real server, and its call counter counts every service call (a round
trip on a real server).

- direct read: every plane of the plate through ``OmeroLocalBackend.load_image`` (virtual path -> plane), with
  a new backend per run as in a new well job (open, memory-map, page faults included), against tifffile
  reading the same series from the same file opened once (no openhcs code). Both read from the page cache
  (a warm-up pass runs first); the best of ``--repeats`` runs is compared.
  "read + use" (the headline, ``direct_read_ratio``) reads every plane and reduces it once, as a job uses a
  plane: the memory-mapped plane is never copied, tifffile's is decoded into a new buffer. "into own buffer"
  (``direct_copy_ratio``) forces a private copy of every mapped plane, against tifffile's plain load.
- discovery: server calls to build the plate structure, for this plate and for a 1536-well plate.
- API reads: server calls per image when every plane is read through the API (one store per image).
The last line is JSON (direct_read_ratio, discovery_calls_per_plate, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import _paths  # noqa: F401  (the repository root on sys.path, for openhcs_rules_testkit)
import numpy as np


def _best(fn, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wells", type=int, default=8)
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--z", type=int, default=3)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import tifffile

    from openhcs_rules.io.omero_local import OmeroLocalBackend
    from openhcs_rules.omero.params import OmeroParams
    from openhcs_rules.omero.reader import PlaneReader
    from openhcs_rules.omero.structure import clear_cache, image_info, load_plate_structure
    from openhcs_rules.plate.naming import well_name
    from openhcs_rules_testkit.omero_standin import StandInServer

    tmp = tempfile.TemporaryDirectory(prefix="omero-bench-")
    server = StandInServer.create(Path(tmp.name) / "omero", users={"root": "bench"})
    os.environ.update(server.environ())
    os.environ["OMERO_PASSWORD"] = "bench"
    params = OmeroParams(data_dir=str(server.data_dir))

    rng = np.random.default_rng(0)
    names = [well_name(i // 12, i % 12) for i in range(args.wells)]
    shape = (1, args.channels, args.z, args.size, args.size)
    fields = {w: [rng.integers(0, 4096, shape, dtype=np.uint16) for _ in range(args.sites)] for w in names}
    imported = server.import_plate("bench", 8, 12, fields, channel_names=[f"ch{c}" for c in range(args.channels)])
    del fields
    planes_total = args.wells * args.sites * args.channels * args.z
    megabytes = planes_total * args.size * args.size * 2 / 1e6

    # -- discovery: server calls per plate (this plate, and a full 1536-well plate) ----------------------
    before = server.calls()
    plate = load_plate_structure(params, imported.plate_id, "bench")
    discovery_calls = server.calls() - before
    every = [well_name(r, c) for r in range(32) for c in range(48)]
    big = server.import_plate("big", 32, 48, {w: [np.zeros((1, 1, 1, 4, 4), np.uint16)] for w in every})
    clear_cache()
    before = server.calls()
    load_plate_structure(params, big.plate_id, "big")
    discovery_calls_1536 = server.calls() - before

    # -- direct path vs tifffile -------------------------------------------------------------------------
    paths = [OmeroLocalBackend(plate).generate_filename(image.key) for image in plate.images()]
    ome_file = imported.files[0]
    series_count = len(imported.image_ids)

    def ours(use: str) -> None:
        """A fresh backend each time, as in a new well job: opens, maps and faults the file in again."""
        fresh = OmeroLocalBackend(plate, pixel_path="direct")
        for path in paths:
            plane = fresh.load_image(path)
            if use == "sum":
                plane.sum()
            elif use == "copy":
                np.array(plane)
        assert fresh.reader.stats["api"] == 0, "the benchmark must measure the direct path"
        fresh.close()

    def plain_tifffile(use: str) -> None:
        with tifffile.TiffFile(ome_file) as tif:
            for index in range(series_count):
                stack = tif.series[index].asarray()
                if use == "sum":
                    for plane in stack.reshape(-1, *stack.shape[-2:]):
                        plane.sum()

    for use in ("sum", "copy"):
        ours(use)
        plain_tifffile(use)  # warm the page cache and both code paths
    direct_s = _best(lambda: ours("sum"), args.repeats)
    tifffile_s = _best(lambda: plain_tifffile("sum"), args.repeats)
    copy_s = _best(lambda: ours("copy"), args.repeats)
    tifffile_load_s = _best(lambda: plain_tifffile("load"), args.repeats)

    # -- API path: server calls per image ----------------------------------------------------------------
    reader = PlaneReader(params, imported.plate_id, path="api")
    before = server.calls()
    start = time.perf_counter()
    for image in plate.images():
        t, c, z = image.index
        reader.read(image_info(plate, image), z, c, t)
    api_s = time.perf_counter() - start
    api_calls = server.calls() - before
    reader.close()
    api_calls_per_image = api_calls / series_count
    planes_per_image = planes_total / series_count

    rows = [
        ("plate", f"{args.wells} wells x {args.sites} fields x {args.channels} ch x {args.z} z, {args.size}^2 uint16"),
        ("planes / data", f"{planes_total} planes, {megabytes:.0f} MB"),
        ("read + use: omero_local direct", f"{direct_s * 1000:.1f} ms  ({megabytes / direct_s / 1000:.2f} GB/s)"),
        ("read + use: tifffile", f"{tifffile_s * 1000:.1f} ms  ({megabytes / tifffile_s / 1000:.2f} GB/s)"),
        ("read + use ratio", f"{direct_s / tifffile_s:.3f}  (goal <= 1.10)"),
        ("into own buffer: direct", f"{copy_s * 1000:.1f} ms  ({megabytes / copy_s / 1000:.2f} GB/s)"),
        (
            "into own buffer: tifffile",
            f"{tifffile_load_s * 1000:.1f} ms  ({megabytes / tifffile_load_s / 1000:.2f} GB/s)",
        ),
        ("into own buffer ratio", f"{copy_s / tifffile_load_s:.3f}"),
        (
            "discovery calls / plate",
            f"{discovery_calls} ({len(plate.wells)} wells), {discovery_calls_1536} (1536 wells)",
        ),
        ("API calls / image", f"{api_calls_per_image:.1f} for {planes_per_image:.0f} planes ({api_s * 1000:.0f} ms)"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'measure'.ljust(width)} | value")
    print(f"{'-' * width}-+-{'-' * 50}")
    for key, value in rows:
        print(f"{key.ljust(width)} | {value}")
    result = {
        "direct_read_ratio": round(direct_s / tifffile_s, 4),
        "direct_read_s": round(direct_s, 5),
        "tifffile_read_s": round(tifffile_s, 5),
        "direct_copy_ratio": round(copy_s / tifffile_load_s, 4),
        "direct_copy_s": round(copy_s, 5),
        "tifffile_load_s": round(tifffile_load_s, 5),
        "planes": planes_total,
        "megabytes": round(megabytes, 1),
        "discovery_calls_per_plate": discovery_calls,
        "discovery_calls_per_plate_1536_wells": discovery_calls_1536,
        "api_calls_per_image": round(api_calls_per_image, 2),
        "planes_per_image": planes_per_image,
        "api_read_s": round(api_s, 4),
    }
    tmp.cleanup()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
