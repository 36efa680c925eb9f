"""The supervisor lends its GPUs to runs, one run per device at a time, on real Snakemake runs.

No GPU is needed: the devices are names the supervisor hands out through CUDA_VISIBLE_DEVICES, and the runs
use numpy (``gpu: numpy``) while their jobs ask for a device (``resources.gpu``), which is what makes them
hold one. Each run is one 96-pixel well (a few seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import yaml

from openhcs_rules.execution.runner import RunSupervisor, run_paths
from openhcs_rules.execution.service import RunService
from openhcs_rules.execution.states import RunState
from openhcs_rules.execution.store import RunStore
from openhcs_rules.execution.submission import ServerPolicy, SubmissionError
from openhcs_rules_testkit.execution import tiny_screen
from openhcs_rules_testkit.workflow import PIPELINE

pytestmark = pytest.mark.workflow


def run_folder(root: Path, name: str, **extra: object) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    config = yaml.safe_load(tiny_screen(wells=["B02"], plate=name))
    config.update({"pipeline": str(PIPELINE), "gpu": "numpy", **extra})
    (folder / "screen.yaml").write_text(yaml.safe_dump(config))
    return folder


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def visible_devices(store: RunStore, run_id: str) -> str | None:
    """CUDA_VISIBLE_DEVICES of the run's wrapper process (what its Snakemake and jobs inherit)."""
    record = store.get(run_id)
    try:
        return psutil.Process(record.pid).environ().get("CUDA_VISIBLE_DEVICES")
    except psutil.Error:
        return None


def test_a_device_is_held_by_one_run_at_a_time_and_the_queue_stays_in_order(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    folders = {
        "first": run_folder(tmp_path, "first", resources={"gpu": 1}),
        "second": run_folder(tmp_path, "second", resources={"gpu": 1}),
        "cpu": run_folder(tmp_path, "cpu"),
    }
    for run_id, folder in folders.items():
        store.create_run(run_id, "alice", str(folder), [run_id])
    supervisor = RunSupervisor(store, max_concurrent=2, gpus=("7",), poll_s=0.05, logger_plugin="openhcs")
    seen: dict[str, str | None] = {}
    overlap = False
    with supervisor:
        wait_until(lambda: store.get("first").state is RunState.RUNNING, 60, "the first run to start")
        seen["first"] = visible_devices(store, "first")
        assert supervisor.gpus_of("first") == ("7",)
        # the second waits for the device, and the CPU run behind it waits its turn: first come, first served
        assert store.get("second").state is RunState.QUEUED
        assert store.get("cpu").state is RunState.QUEUED
        assert [supervisor.queue_position(run_id) for run_id in ("second", "cpu")] == [1, 2]
        while store.get("first").state is RunState.RUNNING:
            overlap |= store.get("second").state is RunState.RUNNING
            time.sleep(0.05)
        wait_until(lambda: store.get("cpu").state is not RunState.QUEUED, 60, "the CPU run to start")
        seen["cpu"] = visible_devices(store, "cpu")
        if store.get("second").state is RunState.RUNNING:
            seen["second"] = visible_devices(store, "second")
        wait_until(lambda: all(store.get(r).state.terminal for r in folders), 120, "every run to end")
    states = {run_id: store.get(run_id).state for run_id in folders}
    assert states == dict.fromkeys(folders, RunState.SUCCEEDED), {r: store.get(r).message for r in folders}
    assert not overlap
    assert seen["first"] == "7"
    assert seen["cpu"] == ""  # a run that needs no GPU sees none, even on a GPU server
    assert seen.get("second") in (None, "7")  # None: it had ended already when looked at
    assert yaml.safe_load(run_paths(folders["second"])["gpus"].read_text()) == {"devices": ["7"]}
    assert yaml.safe_load(run_paths(folders["cpu"])["gpus"].read_text()) == {"devices": []}
    store.close()


def test_a_screen_needing_more_gpus_than_the_server_lends_is_refused_at_submit(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    supervisor = RunSupervisor(store, gpus=("0",))
    service = RunService(ServerPolicy(runs_root=tmp_path / "runs"), store, supervisor, lambda user: False)
    config = tiny_screen().rstrip() + "\nresources: {gpu: 2}\n"
    with pytest.raises(SubmissionError, match="needs 2 GPU"):
        service.submit("alice", config, pipeline_name="nuclei_count")
    cupy_without_gpus = RunService(
        ServerPolicy(runs_root=tmp_path / "runs"), store, RunSupervisor(store), lambda user: False
    )
    with pytest.raises(SubmissionError, match="gpu: numpy"):
        cupy_without_gpus.submit("alice", tiny_screen().rstrip() + "\ngpu: cupy\n", pipeline_name="nuclei_count")
    assert store.list_runs() == []
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    store.close()
