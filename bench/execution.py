"""Benchmark: the execution server against running the same screen with the `snakemake` CLI directly.

All in one process, on the same synthetic screen (a tiny plate the workflow generates: wells x 1 site x
1 channel x 96 px, so orchestration, not pixels, dominates), against an in-process server on loopback:

  submit        client `submit` to its reply (YAML read, pipeline parsed, run folder, store, queue), ms;
                each submitted run is cancelled at once (measured: the request, not the run)
  progress      a well's `well_finished` event: from the time its job wrote it to the time the watching
                client received it (same clock), ms, over every well of the measured runs (p50/p99)
  serialize     a 20-step pipeline to code and parsed back (allow-list parser), ms
  server/cli    the screen submitted and watched to its end, vs `snakemake` run directly with the same
                arguments (`--cores 2`), wall seconds; baseline: the direct CLI run (goal ratio <= 1.05)
  status        `status` requests answered per second with 20 clients asking at once for 2 s

Run: python bench/execution.py [--repeats 3] [--wells 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _paths  # noqa: F401 - the repository root on sys.path

from openhcs_rules_testkit.execution import execution_server, tiny_screen
from openhcs_rules_testkit.workflow import PIPELINE

WELLS = ["B02", "B03", "B04", "B05", "C02", "C03", "C04", "C05", "D02", "D03", "D04", "D05"]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):9.2f} ({min(values):.2f}..{max(values):.2f})"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def twenty_step_pipeline_ms(repeats: int = 200) -> list[float]:
    from openhcs_rules.pipeline.model import Pipeline, Step
    from openhcs_rules.pipeline.serialize import parse_pipeline, pipeline_to_code

    steps = [
        Step(name=f"step_{i}", func="subtract_background" if i % 2 else "denoise", kwargs={"radius": 10 + i})
        if i % 2
        else Step(name=f"step_{i}", func="denoise", kwargs={"sigma": 0.5 + i / 10})
        for i in range(20)
    ]
    pipeline = Pipeline(name="twenty", steps=steps)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        back = parse_pipeline(pipeline_to_code(pipeline))
        times.append((time.perf_counter() - start) * 1000)
        if back != pipeline:
            raise SystemExit("the 20-step pipeline did not round-trip")
    return times


def direct_cli_s(workdir: Path, config_text: str) -> float:
    """The same screen through `snakemake` directly, as the supervisor runs it (same Snakefile and cores)."""
    from openhcs_rules.execution.runner import default_snakefile

    workdir.mkdir(parents=True)
    (workdir / "pipeline.py").write_text(PIPELINE.read_text())
    (workdir / "screen.yaml").write_text(config_text + "pipeline: pipeline.py\n")
    command = [
        sys.executable, "-m", "snakemake", "-s", str(default_snakefile()), "--directory", str(workdir),
        "--configfile", str(workdir / "screen.yaml"), "--cores", "2",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--wells", type=int, default=8)
    args = parser.parse_args()

    from openhcs_rules.execution.client import ExecutionClient

    pipeline_text = PIPELINE.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = execution_server(root, max_concurrent=1, poll_s=0.1)
        server.start()
        try:
            with ExecutionClient("127.0.0.1", server.port, timeout_s=60) as client:
                # submit latency (each run cancelled at once: the request is measured, not the run)
                submit_ms = []
                for seed in range(10):
                    start = time.perf_counter()
                    run = client.submit(tiny_screen(100 + seed, WELLS[: args.wells]), pipeline=pipeline_text)
                    submit_ms.append((time.perf_counter() - start) * 1000)
                    client.cancel(run["run_id"], mode="abort")
                for run in client.runs():  # wait until the cancelled ones are settled
                    list(client.watch(run["run_id"]))

                # the screen through the server vs the CLI directly; progress latency from the server runs
                server_s, cli_s, progress_ms = [], [], []
                for repeat in range(args.repeats):
                    config = tiny_screen(repeat, WELLS[: args.wells])
                    start = time.perf_counter()
                    run = client.submit(config, pipeline=pipeline_text)
                    for event in client.watch(run["run_id"]):
                        if event["type"] == "well_finished":
                            progress_ms.append((time.time() - event["time"]) * 1000)
                    server_s.append(time.perf_counter() - start)
                    if client.run(run["run_id"])["state"] != "succeeded":
                        raise SystemExit(f"run {run['run_id']} did not succeed: {client.logs(run['run_id'], 30)}")
                    cli_s.append(direct_cli_s(root / f"direct_{repeat}", config))

                # status requests per second, 20 clients at once
                counts = [0] * 20
                stop_at = time.perf_counter() + 2.0

                def ask(index: int) -> None:
                    with ExecutionClient("127.0.0.1", server.port, timeout_s=30) as own:
                        while time.perf_counter() < stop_at:
                            own.call("status")
                            counts[index] += 1

                threads = [threading.Thread(target=ask, args=(i,)) for i in range(20)]
                began = time.perf_counter()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                status_per_s = sum(counts) / (time.perf_counter() - began)
        finally:
            server.stop()
    serialize_ms = twenty_step_pipeline_ms()
    ratio = statistics.median(server_s) / statistics.median(cli_s)

    print(f"screen: 1 synthetic plate, {args.wells} wells x 1 site x 1 channel, 96 px; {args.repeats} repeats")
    print(f"{'figure':44} {'median (min..max)':>24}")
    print(f"{'submit to reply, ms (10)':44} {spread(submit_ms):>24}")
    print(f"{'well finished -> client, ms (' + str(len(progress_ms)) + ' wells)':44} {spread(progress_ms):>24}")
    print(f"{'  p50 / p99, ms':44} {statistics.median(progress_ms):12.2f} / {percentile(progress_ms, 99):.2f}")
    print(f"{'20-step pipeline to code and back, ms (200)':44} {spread(serialize_ms):>24}")
    print(f"{'screen via server, s':44} {spread(server_s):>24}")
    print(f"{'screen via snakemake CLI (baseline), s':44} {spread(cli_s):>24}")
    print(f"{'server / CLI (goal <= 1.05)':44} {ratio:24.3f}")
    print(f"{'status requests/s, 20 clients':44} {status_per_s:24.0f}")
    print(
        json.dumps(
            {
                "submit_ms": round(statistics.median(submit_ms), 2),
                "progress_p50_ms": round(statistics.median(progress_ms), 2),
                "progress_p99_ms": round(percentile(progress_ms, 99), 2),
                "serialize_roundtrip_ms": round(statistics.median(serialize_ms), 3),
                "server_vs_cli_ratio": round(ratio, 3),
                "server_run_s": round(statistics.median(server_s), 2),
                "cli_run_s": round(statistics.median(cli_s), 2),
                "status_requests_per_s_20_clients": round(status_per_s),
            }
        )
    )


if __name__ == "__main__":
    main()
