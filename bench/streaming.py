"""Benchmark: streaming 2048x2048 uint16 frames to a viewer process, against raw pyzmq and memcpy.

Paths, each through the real sender (openhcs_rules.streaming.sender) into a real viewer process (the
headless record viewer: the same ViewerServer as napari and Fiji; it copies every frame into its own
memory before the frame is acknowledged, as napari copies into a layer):
  shm               same host: pixels copied into a shared-memory slot, the message names it
  inline            same host, pixels inside the message, uncompressed
  inline_compressed pixels inside the message, Blosc2-LZ4 + byte shuffle (what crosses hosts)
Latency: p50/p99 over paced frames (send, wait for the ack), from the call to send() to the moment the
viewer process holds the frame as an array (shm: a view of the slot, before its copy; inline: decoded),
CLOCK_MONOTONIC being shared by processes on one host.
Throughput: frames sent back to back until the last ack (so including the viewer's own copy), GB/s.
Baselines in the same run: raw pyzmq PUSH/PULL copy=False between two processes (tcp loopback), and
memcpy of the same 8 MiB (hot: the same two buffers, L3-resident; dram: rotating over buffers larger
than the L3 cache, what a stream of distinct frames costs). Handshake: new client, connect, ping/pong.
Start to ready: spawn a viewer process until it answers ping (napari/Fiji on a private Xvfb if present).

Run: python bench/streaming.py [--frames 100] [--no-gui]
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

import numpy as np
from _paths import REPO

from openhcs_rules.messaging.addresses import find_free_base_port
from openhcs_rules.messaging.client import ControlClient
from openhcs_rules.messaging.instance import ServerSpec, ensure_server, stop_server
from openhcs_rules.streaming.frames import FrameMeta
from openhcs_rules.streaming.sender import FrameSender

SHAPE = (2048, 2048)
META = FrameMeta("bench", "B02", 1, 1, 1, 1, 0, "raw")
LOGS = Path(tempfile.mkdtemp(prefix="openhcs-bench-"))


def test_image() -> np.ndarray:
    """A real plane of the pipeline benchmark's plate if it was generated, else a smooth field with noise."""
    tiffs = sorted((REPO / "bench" / ".data" / "bench_plate_2048").rglob("*_w1.TIF"))
    if tiffs:
        import tifffile

        image = tifffile.imread(tiffs[0])
        if image.shape == SHAPE and image.dtype == np.uint16:
            return image
    y, x = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    rng = np.random.default_rng(0)
    field = 1000 + 400 * np.sin(x / 90.0) * np.cos(y / 70.0) + rng.normal(0, 25, SHAPE)
    return field.clip(0, 65535).astype(np.uint16)


def gbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e9


def memcpy(image: np.ndarray, repeats: int) -> tuple[float, float]:
    dst = np.empty_like(image)
    np.copyto(dst, image)
    start = time.perf_counter()
    for _ in range(repeats):
        np.copyto(dst, image)
    hot = gbps(image.nbytes * repeats, time.perf_counter() - start)
    sources = [image.copy() for _ in range(4)]
    targets = [np.empty_like(image) for _ in range(8)]  # 96 MiB in all: larger than any L3 here
    for target in targets:
        target.fill(0)
    start = time.perf_counter()
    for i in range(repeats):
        np.copyto(targets[i % 8], sources[i % 4])
    return hot, gbps(image.nbytes * repeats, time.perf_counter() - start)


_PULL = """
import sys, zmq
ctx = zmq.Context(); pull = ctx.socket(zmq.PULL); pull.bind(sys.argv[1]); done = ctx.socket(zmq.PUSH)
done.connect(sys.argv[2]); n = int(sys.argv[3])
while True:
    for _ in range(n):
        frame = pull.recv(copy=False)
    done.send(b"ok")
"""


def raw_zmq(image: np.ndarray, frames: int) -> float:
    """PUSH -> PULL copy=False over tcp loopback between two processes: the transport's ceiling."""
    import zmq

    port = find_free_base_port()
    ctx = zmq.Context()
    done = ctx.socket(zmq.PULL)
    done_port = done.bind_to_random_port("tcp://127.0.0.1")
    receiver = subprocess.Popen(
        [sys.executable, "-c", _PULL, f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{done_port}", str(frames)]
    )
    push = ctx.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{port}")
    try:
        results = []
        for _ in range(4):  # the first round warms the connection up
            start = time.perf_counter()
            for _ in range(frames):
                push.send(image, copy=False)
            done.recv()
            results.append(gbps(image.nbytes * frames, time.perf_counter() - start))
        return float(np.median(results[1:]))
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


def stream(spec: ServerSpec, image: np.ndarray, transport: str, codec: str, frames: int) -> dict[str, float]:
    with ControlClient("127.0.0.1", spec.port, timeout_s=30) as client:
        sender = FrameSender("127.0.0.1", spec.port, transport=transport, codec=codec, ack_timeout_s=30)
        for _ in range(5):  # warm-up: connection, first slots, first mappings
            sender.send(META, image)
        sender.flush()
        seen = len(client.call("stats")["latencies_ns"])
        for _ in range(frames):
            sender.send(META, image)
            sender.flush()
        latencies = np.array(client.call("stats")["latencies_ns"][seen:]) / 1e6
        rates = []
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(frames):
                sender.send(META, image)
            sender.flush()
            rates.append(gbps(image.nbytes * frames, time.perf_counter() - start))
        dropped = sender.dropped
        sender.close()
    size = len(codecs_payload(image, codec)) if transport == "inline" else image.nbytes
    return {
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "gbps": float(np.median(rates)),
        "dropped": dropped,
        "ratio": image.nbytes / size,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--no-gui", action="store_true", help="skip napari/Fiji start-up timing")
    args = parser.parse_args()
    image = test_image()
    mb = image.nbytes / 2**20
    print(f"frame: {SHAPE[0]}x{SHAPE[1]} uint16 ({mb:.0f} MiB); {args.frames} frames per figure; logs in {LOGS}")

    hot, dram = memcpy(image, 200)
    zmq_raw = raw_zmq(image, args.frames)
    spec, record_start = start_viewer("record", ["--keep", "all"])  # it copies every frame it is sent
    try:
        hand = handshake(spec.port, 50)
        paths = {
            "shm": stream(spec, image, "shm", "raw", args.frames),
            "inline": stream(spec, image, "inline", "raw", args.frames),
            "inline_compressed": stream(spec, image, "inline", "blosc2-lz4", max(20, args.frames // 3)),
        }
    finally:
        stop_server(spec)
    starts = {"record": record_start}
    if not args.no_gui:
        starts["napari"] = gui_start("napari")
        starts["fiji"] = gui_start("fiji")

    print()
    print("| path | p50 ms | p99 ms | GB/s | x memcpy hot | x memcpy dram | payload ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, r in paths.items():
        print(
            f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['gbps']:.2f} | {r['gbps'] / hot:.2f} | "
            f"{r['gbps'] / dram:.2f} | {r['ratio']:.2f} |"
        )
    raw = f"{zmq_raw:.2f} | {zmq_raw / hot:.2f} | {zmq_raw / dram:.2f}"
    print(f"| raw pyzmq PUSH/PULL copy=False (tcp) | | | {raw} | |")
    print(f"| memcpy 8 MiB hot (L3) | | | {hot:.2f} | 1.00 | {hot / dram:.2f} | |")
    print(f"| memcpy 8 MiB dram (rotating 96 MiB) | | | {dram:.2f} | {dram / hot:.2f} | 1.00 | |")
    print()
    print(f"handshake (new client, connect, ping/pong) p50: {hand:.2f} ms")
    for kind, seconds in starts.items():
        print(f"viewer start to ready, {kind}: " + ("not measured" if seconds is None else f"{seconds:.2f} s"))
    shm = paths["shm"]
    print()
    print("targets: shm within 2x of memcpy-bound throughput, p50 < 5 ms; handshake < 10 ms")
    print(f"  shm p50 {shm['p50_ms']:.2f} ms: {'met' if shm['p50_ms'] < 5 else 'NOT met'}")
    print(f"  shm vs memcpy dram {shm['gbps'] / dram:.2f}x: {'met' if shm['gbps'] * 2 >= dram else 'NOT met'}")
    print(f"  shm vs memcpy hot {shm['gbps'] / hot:.2f}x: {'met' if shm['gbps'] * 2 >= hot else 'NOT met'}")
    print(f"  handshake {hand:.2f} ms: {'met' if hand < 10 else 'NOT met'}")
    print("  seed design (OpenHCS): ~50 ms latency, >1 GB/s")
    summary = {
        "shm_p50_ms": round(shm["p50_ms"], 3),
        "shm_p99_ms": round(shm["p99_ms"], 3),
        "shm_gbps": round(shm["gbps"], 3),
        "inline_p50_ms": round(paths["inline"]["p50_ms"], 3),
        "inline_p99_ms": round(paths["inline"]["p99_ms"], 3),
        "inline_gbps": round(paths["inline"]["gbps"], 3),
        "inline_compressed_p50_ms": round(paths["inline_compressed"]["p50_ms"], 3),
        "inline_compressed_gbps": round(paths["inline_compressed"]["gbps"], 3),
        "compression_ratio": round(paths["inline_compressed"]["ratio"], 3),
        "zmq_raw_gbps": round(zmq_raw, 3),
        "memcpy_gbps": round(hot, 3),
        "memcpy_dram_gbps": round(dram, 3),
        "handshake_ms": round(hand, 3),
        **{f"start_{kind}_s": (None if s is None else round(s, 3)) for kind, s in starts.items()},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
