"""Live viewers as rule-managed services (workflow/rules/viewers.smk), through the real Snakemake CLI.

The headless ``record`` viewer stands in for napari/Fiji: a real viewer process, started detached by the
local rule ``ensure_viewer`` (check -> connect -> start), that keeps every frame the well jobs stream.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from openhcs_rules.messaging.addresses import find_free_base_port
from openhcs_rules.messaging.client import ControlClient
from openhcs_rules.messaging.instance import ServerSpec, probe, stop_server
from openhcs_rules.streaming.ensure import VIEWER_SETTINGS, settings_text, viewer_records, write_settings
from openhcs_rules_testkit.workflow import snakemake, write_config

pytestmark = [pytest.mark.workflow, pytest.mark.viewer]

SPEC = {"wells": ["B02", "C03"], "sites": 1, "z_planes": 2, "size": 64, "seed": 1}


@pytest.fixture
def port():
    """A free base port for a record viewer; whatever answers there is stopped at the end."""
    base = find_free_base_port()
    yield base
    try:
        stop_server(ServerSpec(kind="record", port=base))
    except Exception:  # noqa: BLE001 - cleanup: the test's own assertions matter, not this
        pass


def _screen(tmp_path: Path, port: int | None, **extra) -> Path:
    streaming = {"record": {"port": port}} if port else {}
    return write_config(
        tmp_path, {"plates": {"demo": {"source": "synthetic", "synthetic": SPEC}}, "streaming": streaming, **extra}
    )


def _run(tmp_path: Path, config: Path, *extra: str, module: str = "snakemake"):
    # viewer logs under the test's folder, not ~/.cache (the started viewer inherits the job's environment)
    done = snakemake(tmp_path, config, *extra, env={"XDG_CACHE_HOME": str(tmp_path / "cache")}, module=module)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def _jobs(done) -> list[str]:
    """The rules of the jobs Snakemake ran (or would run, with -n), in the order it printed them."""
    return re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):", done.stdout + done.stderr, re.MULTILINE)


def _record(tmp_path: Path, port: int) -> dict:
    return json.loads((tmp_path / ".openhcs" / "viewers" / f"record-{port}.json").read_text())["record"]


def _kill(pid: int, port: int) -> None:
    """The viewer dies (SIGKILL: no goodbye), and nothing answers on its port any more."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while True:
        if probe(ServerSpec(kind="record", port=port), timeout_s=0.2) is None:
            return  # a connection the kill tears down mid-handshake reads as no answer, not a failed authentication
        assert time.monotonic() < deadline, "the killed viewer still answers"
        time.sleep(0.1)


def _manifest_times(tmp_path: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results" / "demo" / "chunks").glob("*.json")}


def test_settings_file_holds_the_block_only_when_a_viewer_is_enabled(tmp_path):
    assert settings_text({"napari": False, "fiji": False, "record": False}) == "{}\n"
    block = {"record": {"port": 6123}, "ack_timeout_s": 5.0}
    assert json.loads(settings_text(block)) == block
    assert viewer_records(block) == [".openhcs/viewers/record-6123.json"]
    path = tmp_path / VIEWER_SETTINGS
    assert write_settings(path, {}) is True and path.read_text() == "{}\n"
    assert write_settings(path, {"napari": False}) is False  # same content: not written again


def test_dry_run_shows_the_viewer_rules_only_when_streaming_is_on_and_no_group(tmp_path, port):
    off = _run(tmp_path, _screen(tmp_path, None), "-n")
    assert "ensure_viewer" not in off.stdout + off.stderr and "viewer_settings" not in off.stdout + off.stderr
    assert (tmp_path / VIEWER_SETTINGS).read_text() == "{}\n"  # the wells' input, written at parse time

    on = _run(tmp_path, _screen(tmp_path, port), "-n")
    jobs = _jobs(on)
    assert jobs.count("ensure_viewer") == 1 and jobs.count("viewer_settings") == 1, jobs
    assert f"record-{port}.json" in on.stdout
    assert not re.search(r"\bgroup\b", on.stdout + on.stderr, re.IGNORECASE)  # no group job, no summed resources
    assert probe(ServerSpec(kind="record", port=port)) is None  # a dry run starts nothing


def test_viewers_target_starts_the_viewer_alone_and_returns(tmp_path, port):
    config = _screen(tmp_path, port)
    first = _run(tmp_path, config, "viewers")
    assert _jobs(first) == ["ensure_viewer", "viewer_settings", "viewers"], _jobs(first)
    assert not (tmp_path / "results").exists()  # nothing of the screen ran
    record = _record(tmp_path, port)
    assert record["state"] == "started"
    pong = probe(ServerSpec(kind="record", port=port))
    assert pong is not None and pong["server"]["pid"] == record["pid"]  # it outlives the run
    assert json.loads((tmp_path / VIEWER_SETTINGS).read_text())["record"] == {"port": port}  # the wells' block

    again = _run(tmp_path, config, "viewers")  # runs again (the viewer might have died), finds it up
    assert "ensure_viewer" in _jobs(again)
    assert _record(tmp_path, port)["state"] == "connected" and _record(tmp_path, port)["pid"] == record["pid"]


def test_wells_stream_to_the_viewer_the_rule_started_with_one_core(tmp_path, port):
    done = _run(tmp_path, _screen(tmp_path, port), "--cores", "1")  # a group would need the sum of its jobs
    jobs = _jobs(done)
    assert jobs.index("ensure_viewer") < jobs.index("process_wells"), jobs
    assert _record(tmp_path, port)["state"] == "started"
    with ControlClient("127.0.0.1", port, timeout_s=30) as client:
        frames = client.call("frames")
    assert {f["well"] for f in frames} == {"B02", "C03"}  # every well's job found the viewer up
    assert {f["plate"] for f in frames} == {"demo"} and "segment" in {f["step"] for f in frames}


def test_streaming_switched_on_for_a_finished_screen_reruns_no_well_and_a_dead_viewer_is_restarted(tmp_path, port):
    _run(tmp_path, _screen(tmp_path, None))
    finished = _manifest_times(tmp_path)
    assert len(finished) == 2

    config = _screen(tmp_path, port)
    planned = _run(tmp_path, config, "-n")
    assert sorted(set(_jobs(planned))) == ["all", "ensure_viewer", "viewer_settings"], _jobs(planned)

    switched = _run(tmp_path, config)
    assert "process_wells" not in _jobs(switched) and "assemble_plate" not in _jobs(switched)
    first = _record(tmp_path, port)
    assert first["state"] == "started"
    assert _manifest_times(tmp_path) == finished

    _kill(first["pid"], port)
    rerun = _run(tmp_path, config)
    assert "process_wells" not in _jobs(rerun)
    second = _record(tmp_path, port)
    assert second["state"] == "started" and second["pid"] != first["pid"]
    assert probe(ServerSpec(kind="record", port=port))["server"]["pid"] == second["pid"]

    off = _run(tmp_path, _screen(tmp_path, None))  # and off again: nothing to do, the wells read {}
    assert "Nothing to be done" in off.stdout + off.stderr
    assert (tmp_path / VIEWER_SETTINGS).read_text() == "{}\n"
    assert _manifest_times(tmp_path) == finished


def test_under_slurm_the_viewer_is_ensured_on_the_submit_host_and_jobs_ask_for_one_well(slurm, tmp_path, port):
    from openhcs_rules_testkit.slurm import SLURM_FAST, SLURM_SNAKEMAKE, last_job_id, submissions_since
    from openhcs_rules_testkit.workflow import REPO

    config = _screen(tmp_path, port, wells_per_job=1)
    before = last_job_id()
    done = _run(tmp_path, config, "--profile", str(REPO / "profiles" / "slurm"), *SLURM_FAST, module=SLURM_SNAKEMAKE)
    assert "localrule ensure_viewer:" in done.stdout + done.stderr  # run by the main process, not submitted
    submissions = submissions_since(before, tmp_path)
    # generate + discover + illumination + 2 well chunks + assemble: no viewer job, no group job
    assert len(submissions) == 6, submissions
    assert max(int(cpus) for _, _, cpus in submissions) == 1  # nothing summed
    assert _record(tmp_path, port)["state"] == "started"
    with ControlClient("127.0.0.1", port, timeout_s=30) as client:
        assert {f["well"] for f in client.call("frames")} == {"B02", "C03"}  # the Slurm jobs streamed to it
