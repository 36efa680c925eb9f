"""Benchmark: streaming frames to a viewer process, against memcpy and raw pyzmq, in one run.

Paths, each through the real sender (openhcs_rules.streaming.sender) into a real viewer process (the
headless record viewer: the same ViewerServer as napari and Fiji; it keeps every frame the way napari
keeps an image plane, a large shared-memory frame as the sender's slot itself, on loan, given back when
the next frame for the same plane replaces it):
  shm               same host: the sender copies the frame into a pooled slot, the message names it
  inline            same host, pixels inside the message, uncompressed
  inline_compressed pixels inside the message, Blosc2-LZ4 + byte shuffle (what crosses hosts)
Sizes: 512x512, 2048x2048 (8 MiB: the headline, a real plane of the pipeline benchmark's plate if it was
generated) and 4096x4096 uint16.
Latency: p50/p99 over paced frames (send, wait for the ack), from the call to send() to the frame's array
in the viewer process (receive, as this benchmark always measured it), to the viewer's display returning
with the frame (display-ready), and to the ack back at the sender (the sender's own clock: comparable with
any viewer version); CLOCK_MONOTONIC is shared by processes on one host.
Throughput: frames sent back to back until the last ack (an ack leaves after the display had the frame).
Baselines in the same run: numpy copies of the same frame - into buffers rotating over more than the L3
(memory-bound: a stream of distinct frames cannot stay in cache; the shm path must reach 0.8x of it), into
shared-memory slots rotating the same way (the destination the shm path writes: 4 KiB pages, where numpy's
large buffers get transparent huge pages), ``frame.copy()`` and ``np.copyto`` into one buffer (both
L3-resident for 8 MiB here: the same 16 MiB again and again) - and raw pyzmq ``copy=False`` on the same
kind of socket as the inline path (a DEALER here, a ROUTER in another process over tcp loopback, one small
reply per message, as the viewer acks). Every figure is the median of ``--repeats`` runs with its min-max.
Handshake: new client, connect, ping/pong. Start to ready: spawn a viewer until it answers ping.

Run: python bench/streaming.py [--frames-mib 800] [--repeats 5] [--sizes 512,2048,4096] [--no-gui]
The last line is JSON (shm_vs_memcpy_ratio, shm_p99_ms, inline_vs_pyzmq_ratio, ...).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _paths import REPO

from openhcs_rules.messaging.addresses import find_free_base_port
from openhcs_rules.messaging.client import ControlClient
from openhcs_rules.messaging.instance import ServerSpec, ensure_server, stop_server
from openhcs_rules.streaming.frames import FrameMeta
from openhcs_rules.streaming.sender import FrameSender

HEADLINE = 2048
META = FrameMeta("bench", "B02", 1, 1, 1, 1, 0, "raw")
LOGS = Path(tempfile.mkdtemp(prefix="openhcs-bench-"))
L3_BYTES = 32 << 20  # this machine's; the DRAM-bound memcpy rotates over 3x this at least


def test_image(side: int) -> np.ndarray:
    """A real plane of the pipeline benchmark's plate if it was generated (2048), else a smooth field with noise."""
    shape = (side, side)
    if side == 2048:
        tiffs = sorted((REPO / "bench" / ".data" / "bench_plate_2048").rglob("*_w1.TIF"))
        if tiffs:
            import tifffile

            image = tifffile.imread(tiffs[0])
            if image.shape == shape and image.dtype == np.uint16:
                return image
    y, x = np.mgrid[0:side, 0:side]
    rng = np.random.default_rng(0)
    field = 1000 + 400 * np.sin(x / 90.0) * np.cos(y / 70.0) + rng.normal(0, 25, shape)
    return field.clip(0, 65535).astype(np.uint16)


def gbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e9


def summary(values: list[float]) -> dict[str, float]:
    """Median and spread (min, max) of repeated measurements."""
    return {"median": float(np.median(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def memcpy(image: np.ndarray, frames: int, repeats: int) -> dict[str, dict[str, float]]:
    """numpy copies of the same frame: ``copy()`` (allocates), ``copyto`` one buffer (hot), rotating (DRAM);
    and ``copyto`` into shared-memory slots rotating the same way (4 KiB pages where /dev/shm has no huge
    pages: the destination the shm path must write, while numpy's large buffers get transparent huge pages)."""
    from openhcs_rules.streaming import shm

    dst = np.empty_like(image)
    count = max(2, -(-3 * L3_BYTES // image.nbytes))
    sources = [image.copy() for _ in range(2)]
    targets = [np.zeros_like(image) for _ in range(count)]
    pool = shm.SegmentPool(max_bytes=count * image.nbytes)
    slots = [pool.acquire(image.nbytes) for _ in range(count)]
    results: dict[str, list[float]] = {"copy": [], "hot": [], "dram": [], "dram_shm": []}
    image.copy()
    np.copyto(dst, image)
    for slot in slots:
        assert slot is not None
        slot.write(image)
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(frames):
            image.copy()
        results["copy"].append(gbps(image.nbytes * frames, time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(frames):
            np.copyto(dst, image)
        results["hot"].append(gbps(image.nbytes * frames, time.perf_counter() - start))
        start = time.perf_counter()
        for i in range(frames):
            np.copyto(targets[i % count], sources[i % 2])
        results["dram"].append(gbps(image.nbytes * frames, time.perf_counter() - start))
        start = time.perf_counter()
        for i in range(frames):
            slots[i % count].write(sources[i % 2])  # type: ignore[union-attr]
        results["dram_shm"].append(gbps(image.nbytes * frames, time.perf_counter() - start))
    pool.close()
    return {name: summary(values) for name, values in results.items()}


_ROUTER = """
import sys, zmq
ctx = zmq.Context()
router = ctx.socket(zmq.ROUTER)
router.setsockopt(zmq.LINGER, 0)
router.setsockopt(zmq.RCVHWM, 256)
router.setsockopt(zmq.MAXMSGSIZE, 1 << 31)
port = router.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
while True:
    parts = router.recv_multipart(copy=False)
    router.send_multipart([parts[0].bytes, b"ok"])
"""


def raw_zmq(images: dict[int, np.ndarray], frames: dict[int, int], repeats: int) -> dict[int, dict[str, float]]:
    """[header, pixels] DEALER -> ROUTER copy=False over tcp loopback, one reply each: the inline path's ceiling."""
    import zmq

    receiver = subprocess.Popen([sys.executable, "-c", _ROUTER], stdout=subprocess.PIPE, text=True)
    ctx = zmq.Context()
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.SNDHWM, 16)  # as FrameSender
        dealer.connect(f"tcp://127.0.0.1:{port}")
        header = b'{"v":1,"type":"frame"}' + b" " * 300  # about the size of a frame header
        results = {}
        for side, image in images.items():
            rates = []
            for attempt in range(repeats + 1):  # the first round warms the connection up
                start = time.perf_counter()
                for _ in range(frames[side]):
                    dealer.send_multipart([header, image], copy=False)
                for _ in range(frames[side]):
                    dealer.recv()
                if attempt:
                    rates.append(gbps(image.nbytes * frames[side], time.perf_counter() - start))
            results[side] = summary(rates)
        return results
    finally:
        receiver.kill()
        ctx.destroy(linger=0)


def start_viewer(kind: str, extra: list[str]) -> tuple[ServerSpec, float]:
    port = find_free_base_port()
    command = [sys.executable, "-m", f"openhcs_rules.viewers.{kind}_viewer", "--port", str(port), *extra]
    spec = ServerSpec(kind, port, command=command, log_path=LOGS / f"{kind}.log")
    start = time.perf_counter()
    ensure_server(spec, timeout_s=120)
    return spec, time.perf_counter() - start


def _latencies(client: ControlClient, seen: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Receive and display-ready latencies (ms) after the first ``seen`` frames (display-ready: nan where the
    viewer predates it)."""
    stats = client.call("stats")
    received = np.array(stats["latencies_ns"][seen:]) / 1e6
    shown = np.array(stats.get("shown_latencies_ns", [])[seen:]) / 1e6
    return received, shown if len(shown) else np.full(len(received), np.nan), len(stats["latencies_ns"])


def stream(
    spec: ServerSpec, image: np.ndarray, transport: str, codec: str, frames: int, repeats: int
) -> dict[str, Any]:
    with ControlClient("127.0.0.1", spec.port, timeout_s=60) as client:
        sender = FrameSender("127.0.0.1", spec.port, transport=transport, codec=codec, ack_timeout_s=60)
        for _ in range(5):  # warm-up: connection, first slots, first mappings
            sender.send(META, image)
        sender.flush()
        _, _, seen = _latencies(client, 0)
        p50, p99, pooled, ack50, ack99, shown50, shown99 = [], [], [], [], [], [], []
        for _ in range(repeats):
            round_trips = []
            for _ in range(frames):
                start = time.perf_counter()
                sender.send(META, image)
                sender.flush()
                round_trips.append((time.perf_counter() - start) * 1e3)
            latencies, shown, seen = _latencies(client, seen)
            p50.append(float(np.percentile(latencies, 50)))
            p99.append(float(np.percentile(latencies, 99)))
            pooled.extend(latencies)
            shown50.append(float(np.percentile(shown, 50)))
            shown99.append(float(np.percentile(shown, 99)))
            ack50.append(float(np.percentile(round_trips, 50)))
            ack99.append(float(np.percentile(round_trips, 99)))
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(frames):
                sender.send(META, image)
            sender.flush()
            rates.append(gbps(image.nbytes * frames, time.perf_counter() - start))
        counters = {
            "sent": sender.sent,
            "dropped": sender.dropped,
            "fallbacks": getattr(sender, "fallbacks", 0),
            "held_at_end": getattr(sender, "held", 0),
        }
        sender.close()
        client.call("clear")
    size = len(codecs_payload(image, codec)) if transport == "inline" else image.nbytes
    return {
        "p50_ms": summary(p50),
        "p99_ms": summary(p99),
        "p99_pooled_ms": float(np.percentile(pooled, 99)),
        "shown_p50_ms": summary(shown50),  # send() called -> the viewer's display returned with the frame
        "shown_p99_ms": summary(shown99),
        "ack_p50_ms": summary(ack50),  # the sender's view: send() called -> ack received (any viewer version)
        "ack_p99_ms": summary(ack99),
        "gbps": summary(rates),
        "ratio": image.nbytes / size,
        **counters,
    }


def codecs_payload(image: np.ndarray, codec: str) -> bytes | memoryview:
    from openhcs_rules.streaming.codec import encode

    return encode(image, codec)


def handshake(port: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with ControlClient("127.0.0.1", port) as client:
            client.ping()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def gui_start(kind: str) -> float | None:
    if shutil.which("Xvfb") is None:
        return None
    try:
        spec, seconds = start_viewer(kind, ["--xvfb"])
    except Exception as exc:  # noqa: BLE001 - a missing GUI stack is reported, not fatal
        print(f"{kind}: not measured ({exc.__class__.__name__}: {str(exc).splitlines()[0]})")
        return None
    stop_server(spec)
    return seconds


def _fmt(s: dict[str, float], digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames-mib", type=float, default=800, help="MiB moved per figure and repeat (800)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per figure, median and min-max (>= 3)")
    parser.add_argument("--sizes", default="512,2048,4096", help="square uint16 frame sides")
    parser.add_argument("--no-gui", action="store_true", help="skip napari/Fiji start-up timing")
    args = parser.parse_args()
    repeats = max(3, args.repeats)
    sides = [int(s) for s in args.sizes.split(",")]
    if HEADLINE not in sides:
        sides.append(HEADLINE)
    images = {side: test_image(side) for side in sides}
    frames = {side: int(min(400, max(20, args.frames_mib * 2**20 // images[side].nbytes))) for side in sides}
    print(f"sizes {sides} uint16, frames per figure {frames}, {repeats} repeats; logs in {LOGS}")

    copies = {side: memcpy(images[side], frames[side], repeats) for side in sides}
    zmq_raw = raw_zmq(images, frames, repeats)
    spec, record_start = start_viewer("record", ["--keep", "all"])
    paths: dict[int, dict[str, dict[str, Any]]] = {}
    try:
        hand = handshake(spec.port, 50)
        for side in sides:
            image, n = images[side], frames[side]
            paths[side] = {
                "shm": stream(spec, image, "shm", "raw", n, repeats),
                "inline": stream(spec, image, "inline", "raw", n, repeats),
            }
            if side == HEADLINE:
                paths[side]["inline_compressed"] = stream(spec, image, "inline", "blosc2-lz4", max(20, n // 3), repeats)
    finally:
        stop_server(spec)
    starts: dict[str, float | None] = {"record": record_start}
    if not args.no_gui:
        starts["napari"] = gui_start("napari")
        starts["fiji"] = gui_start("fiji")

    print()
    baselines = ("dram", "dram_shm", "copy", "hot")
    print(
        "| frame | path | receive p50 ms | receive p99 ms | display-ready p50/p99 ms | ack p50/p99 ms "
        "| GB/s median [min-max] "
        "| x memcpy dram | x memcpy dram shm | x memcpy copy() | x memcpy hot |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for side in sides:
        mib = images[side].nbytes / 2**20
        base = {name: copies[side][name]["median"] for name in baselines}
        rows: list[tuple[str, dict[str, float], str, str, str, str]] = [
            (
                name,
                r["gbps"],
                _fmt(r["p50_ms"]),
                _fmt(r["p99_ms"]),
                f"{r['shown_p50_ms']['median']:.2f} / {r['shown_p99_ms']['median']:.2f}",
                f"{r['ack_p50_ms']['median']:.2f} / {r['ack_p99_ms']['median']:.2f}",
            )
            for name, r in paths[side].items()
        ]
        rows.append(("raw pyzmq DEALER->ROUTER copy=False (tcp, acked)", zmq_raw[side], "", "", "", ""))
        rows += [(f"memcpy {name}", copies[side][name], "", "", "", "") for name in baselines]
        for name, rate, p50, p99, shown, ack in rows:
            ratios = " | ".join(f"{rate['median'] / base[b]:.2f}" for b in baselines)
            print(
                f"| {side}x{side} ({mib:g} MiB) | {name} | {p50} | {p99} | {shown} | {ack} | {_fmt(rate)} | {ratios} |"
            )
    print()
    print(f"handshake (new client, connect, ping/pong) p50: {hand:.2f} ms")
    for kind, seconds in starts.items():
        print(f"viewer start to ready, {kind}: " + ("not measured" if seconds is None else f"{seconds:.2f} s"))

    head = paths[HEADLINE]
    shm, inline = head["shm"], head["inline"]
    memcpy_head = copies[HEADLINE]
    shm_ratio = shm["gbps"]["median"] / memcpy_head["dram"]["median"]
    inline_ratio = inline["gbps"]["median"] / zmq_raw[HEADLINE]["median"]
    print()
    print(f"targets ({HEADLINE}x{HEADLINE} uint16, 8 MiB):")
    print(f"  shm vs memory-bound memcpy {shm_ratio:.2f}x: {'met' if shm_ratio >= 0.8 else 'NOT met'} (>= 0.8)")
    for label, key in (("receive", "p99_ms"), ("display-ready", "shown_p99_ms"), ("ack at the sender", "ack_p99_ms")):
        p99 = shm[key]["median"]
        print(f"  shm p99 {label} {p99:.2f} ms: {'met' if p99 < 2 else 'NOT met'} (< 2 ms)")
    print(f"  inline vs raw pyzmq {inline_ratio:.2f}x: {'met' if inline_ratio >= 0.5 else 'NOT met'} (within 2x)")
    print(f"  handshake {hand:.2f} ms: {'met' if hand < 10 else 'NOT met'} (< 10 ms)")
    result: dict[str, Any] = {
        "shm_vs_memcpy_ratio": round(shm_ratio, 3),
        "shm_vs_memcpy_shm_ratio": round(shm["gbps"]["median"] / memcpy_head["dram_shm"]["median"], 3),
        "shm_vs_memcpy_copy_ratio": round(shm["gbps"]["median"] / memcpy_head["copy"]["median"], 3),
        "shm_vs_memcpy_hot_ratio": round(shm["gbps"]["median"] / memcpy_head["hot"]["median"], 3),
        "shm_p50_ms": round(shm["p50_ms"]["median"], 3),
        "shm_p99_ms": round(shm["p99_ms"]["median"], 3),
        "shm_p99_ms_max": round(shm["p99_ms"]["max"], 3),
        "shm_shown_p50_ms": round(shm["shown_p50_ms"]["median"], 3),
        "shm_shown_p99_ms": round(shm["shown_p99_ms"]["median"], 3),
        "shm_ack_p50_ms": round(shm["ack_p50_ms"]["median"], 3),
        "shm_ack_p99_ms": round(shm["ack_p99_ms"]["median"], 3),
        "shm_gbps": round(shm["gbps"]["median"], 3),
        "shm_gbps_min": round(shm["gbps"]["min"], 3),
        "shm_gbps_max": round(shm["gbps"]["max"], 3),
        "shm_fallbacks": shm["fallbacks"],
        "shm_dropped": shm["dropped"],
        "inline_vs_pyzmq_ratio": round(inline_ratio, 3),
        "inline_p50_ms": round(inline["p50_ms"]["median"], 3),
        "inline_p99_ms": round(inline["p99_ms"]["median"], 3),
        "inline_gbps": round(inline["gbps"]["median"], 3),
        "inline_compressed_p50_ms": round(head["inline_compressed"]["p50_ms"]["median"], 3),
        "inline_compressed_gbps": round(head["inline_compressed"]["gbps"]["median"], 3),
        "compression_ratio": round(head["inline_compressed"]["ratio"], 3),
        "zmq_raw_gbps": round(zmq_raw[HEADLINE]["median"], 3),
        "memcpy_gbps": round(memcpy_head["dram"]["median"], 3),
        "memcpy_dram_shm_gbps": round(memcpy_head["dram_shm"]["median"], 3),
        "memcpy_copy_gbps": round(memcpy_head["copy"]["median"], 3),
        "memcpy_hot_gbps": round(memcpy_head["hot"]["median"], 3),
        "handshake_ms": round(hand, 3),
        "repeats": repeats,
        **{
            f"shm_vs_memcpy_ratio_{side}": round(
                paths[side]["shm"]["gbps"]["median"] / copies[side]["dram"]["median"], 3
            )
            for side in sides
        },
        **{f"shm_p99_ms_{side}": round(paths[side]["shm"]["p99_ms"]["median"], 3) for side in sides},
        **{
            f"inline_vs_pyzmq_ratio_{side}": round(paths[side]["inline"]["gbps"]["median"] / zmq_raw[side]["median"], 3)
            for side in sides
        },
        **{f"start_{kind}_s": (None if s is None else round(s, 3)) for kind, s in starts.items()},
    }
    print(json.dumps({k: None if isinstance(v, float) and np.isnan(v) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
