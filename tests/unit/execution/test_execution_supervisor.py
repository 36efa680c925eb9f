"""The run supervisor's own logic with a stand-in for Snakemake (fast): the command it runs, the end states,
the SIGKILL after a stuck abort, settling runs at start, never two processes in one folder.

The stand-in is a ``python`` given to the supervisor: ``-m snakemake`` does what ``FAKE_SNAKEMAKE`` says; any
other use (the launch wrapper) runs the real interpreter. Real Snakemake runs: tests/integration/execution.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from openhcs_rules.execution.launch import write_json_atomic
from openhcs_rules.execution.runner import RunStateError, RunSupervisor, run_paths
from openhcs_rules.execution.states import CancelMode, RunRecord, RunState
from openhcs_rules.execution.store import RunStore

FAKE_PYTHON = f"""#!{sys.executable}
import json, os, signal, sys, time
from pathlib import Path
if sys.argv[1:3] != ["-m", "snakemake"]:
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
with open(os.environ["FAKE_RECORD"], "a") as handle:
    handle.write(json.dumps({{"argv": sys.argv[3:], "events": os.environ.get("OPENHCS_RULES_EVENTS_DIR")}}) + "\\n")
os.makedirs(".snakemake", exist_ok=True)
mode = os.environ["FAKE_SNAKEMAKE"]
if mode == "stuck":  # ignores SIGTERM: only SIGKILL ends it
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path("ready").touch()
    time.sleep(120)
events = Path(os.environ["OPENHCS_RULES_EVENTS_DIR"])
with open(events / f"fake-{{os.getpid()}}.jsonl", "a") as handle:
    handle.write(json.dumps({{"time": time.time(), "type": "progress", "body": {{"done": 1, "total": 1}}}}) + "\\n")
print("the last words of a fake snakemake", flush=True)
sys.exit(int(mode))
"""


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    python = tmp_path / "fake-python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    monkeypatch.setenv("FAKE_RECORD", str(tmp_path / "record.jsonl"))
    return python


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    with RunStore(tmp_path / "runs.sqlite") as opened:
        yield opened
    with RunStore(tmp_path / "runs.sqlite") as reopened:
        records = reopened.list_runs()
    for record in records:  # nothing outlives a failed test (only a run's own group: some pids here are fake)
        try:
            process = psutil.Process(record.pid)
            ours = (
                abs(process.create_time() - (record.pid_started_at or 0)) < 0.05
                and os.getpgid(process.pid) == process.pid
            )
        except (psutil.Error, ValueError, ProcessLookupError):
            continue
        if ours and process.pid != os.getpid():
            os.killpg(process.pid, signal.SIGKILL)


def new_run(store: RunStore, tmp_path: Path, run_id: str) -> Path:
    folder = tmp_path / run_id
    folder.mkdir()
    (folder / "screen.yaml").write_text("plates: {}\n")
    store.create_run(run_id, "alice", folder)
    return folder


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def live_members(pgid: int | None) -> list[int]:
    """The pids of a process group's live (not zombie) processes."""
    found = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except (psutil.Error, ProcessLookupError):
            continue
    return found


def finished(store: RunStore, run_id: str) -> RunRecord:
    wait_until(lambda: store.get(run_id).state.terminal, 30, f"{run_id} to end")
    return store.get(run_id)


def calls(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "record.jsonl").read_text().splitlines()]


def test_the_command_the_state_and_the_last_events(tmp_path, fake, store, monkeypatch):
    monkeypatch.setenv("FAKE_SNAKEMAKE", "0")
    folder = new_run(store, tmp_path, "r")
    options = {"python": str(fake), "poll_s": 0.05, "snakemake_args": ["--cores", "3"], "logger_plugin": "openhcs"}
    with RunSupervisor(store, **options) as supervisor:
        supervisor.enqueue("r")
        record = finished(store, "r")
        assert (record.state, record.exit_code, record.message) == (RunState.SUCCEEDED, 0, "")
        [call] = calls(tmp_path)
        argv = call["argv"]
        assert argv[argv.index("--directory") + 1] == str(folder)
        assert argv[argv.index("--configfile") + 1] == str(folder / "screen.yaml")
        assert argv[argv.index("-s") + 1] == str(supervisor.snakefile)
        assert argv[argv.index("--cores") + 1] == "3"
        assert argv[argv.index("--logger") + 1] == "openhcs"
        assert "--rerun-incomplete" not in argv  # a first attempt
        assert call["events"] == str(run_paths(folder)["events"])
        # the event written just before the exit was collected after it
        assert [e.body for e in store.events_since("r") if e.type == "progress"] == [{"done": 1, "total": 1}]
        assert [e.type for e in store.events_since("r")][:3] == ["run_queued", "run_state", "run_started"]

        monkeypatch.setenv("FAKE_SNAKEMAKE", "2")
        with pytest.raises(RunStateError):
            supervisor.resume("r")  # succeeded: nothing to resume
        store.update("r", state=RunState.FAILED)
        supervisor.resume("r")
        record = finished(store, "r")
        assert (record.state, record.exit_code) == (RunState.FAILED, 2)
        assert "the last words of a fake snakemake" in record.message and "exited with 2" in record.message
        assert "--rerun-incomplete" in calls(tmp_path)[-1]["argv"]  # an attempt ran in this folder before


def test_a_stuck_abort_is_killed_after_the_grace_time(tmp_path, fake, store, monkeypatch):
    monkeypatch.setenv("FAKE_SNAKEMAKE", "stuck")
    folder = new_run(store, tmp_path, "r")
    with RunSupervisor(store, python=str(fake), poll_s=0.05, grace_s=1.0) as supervisor:
        supervisor.enqueue("r")
        wait_until(lambda: (folder / "ready").exists(), 30, "the fake to run")
        pid = store.get("r").pid
        supervisor.cancel("r", CancelMode.DRAIN)  # ignored by the stuck process
        time.sleep(0.3)
        assert store.get("r").state is RunState.DRAINING
        asked = time.monotonic()
        assert supervisor.cancel("r", CancelMode.ABORT).state is RunState.ABORTING  # escalates a drain
        assert supervisor.cancel("r", CancelMode.DRAIN).state is RunState.ABORTING  # never back down
        record = finished(store, "r")
        assert 1.0 <= time.monotonic() - asked < 10
        assert record.state is RunState.CANCELLED and record.cancel is CancelMode.ABORT
        assert "killed" in record.message
        wait_until(lambda: not live_members(pid), 10, "the group to be gone")  # zombies may wait for init
        with pytest.raises(RunStateError):
            supervisor.cancel("r", CancelMode.ABORT)


def test_a_drained_snakemake_that_hangs_after_its_jobs_is_killed(tmp_path, fake, store, monkeypatch):
    """Snakemake 9.27 can deadlock in its own SIGTERM handler (runner's docstring): a cancelled run whose
    Snakemake lives on without any job process is killed after STUCK_S, and says why."""
    import openhcs_rules.execution.runner as runner

    monkeypatch.setattr(runner, "STUCK_S", 0.5)
    monkeypatch.setenv("FAKE_SNAKEMAKE", "stuck")  # ignores SIGTERM and has no job: what the deadlock looks like
    folder = new_run(store, tmp_path, "r")
    with RunSupervisor(store, python=str(fake), poll_s=0.05, grace_s=60.0) as supervisor:
        supervisor.enqueue("r")
        wait_until(lambda: (folder / "ready").exists(), 30, "the fake to run")
        asked = time.monotonic()
        supervisor.cancel("r", CancelMode.DRAIN)
        record = finished(store, "r")
        assert time.monotonic() - asked < 10  # not the 60 s grace of an abort
        assert record.state is RunState.CANCELLED and "hung after its jobs ended" in record.message


def test_queued_runs_cancel_at_once_and_the_queue_keeps_its_order(tmp_path, store):
    for run_id in ("a", "b", "c"):
        new_run(store, tmp_path, run_id)
    supervisor = RunSupervisor(store)  # not started: nothing runs
    assert [supervisor.queue_position(r) for r in ("a", "b", "c")] == [1, 2, 3]
    record = supervisor.cancel("b", CancelMode.ABORT)
    assert record.state is RunState.CANCELLED and record.pid is None
    assert [supervisor.queue_position(r) for r in ("a", "b", "c")] == [1, None, 2]
    supervisor.resume("b")
    assert [supervisor.queue_position(r) for r in ("a", "b", "c")] == [1, 3, 2]
    with pytest.raises(RunStateError):
        supervisor.resume("a")  # queued: nothing to resume
    supervisor.cancel("c")
    with pytest.raises(RunStateError):
        supervisor.enqueue("c")  # cancelled: resume it instead


def test_start_settles_runs_whose_process_is_gone(tmp_path, store):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    dead_started = time.time() - 1
    folders = {run_id: new_run(store, tmp_path, run_id) for run_id in ("ok", "failed", "silent", "reused")}
    for run_id in ("ok", "failed", "silent"):
        store.update(run_id, state=RunState.RUNNING, pid=dead.pid, pid_started_at=dead_started)
    store.update("silent", state=RunState.ABORTING, cancel=CancelMode.ABORT)
    for run_id, code in (("ok", 0), ("failed", 1)):
        paths = run_paths(folders[run_id])
        paths["status"].parent.mkdir(parents=True)
        write_json_atomic(paths["status"], {"launcher_pid": dead.pid, "exit_code": code})
        paths["log"].write_text("the end of the log\n")
    # a live pid with another start time: a reused pid, not the run's process
    me = psutil.Process()
    store.update("reused", state=RunState.RUNNING, pid=me.pid, pid_started_at=me.create_time() - 100)

    supervisor = RunSupervisor(store)
    supervisor.start()
    try:
        assert supervisor.active_runs() == []
        ok, failed, silent, reused = (store.get(r) for r in ("ok", "failed", "silent", "reused"))
        assert (ok.state, ok.exit_code) == (RunState.SUCCEEDED, 0)
        assert (failed.state, failed.exit_code) == (RunState.FAILED, 1) and "the end of the log" in failed.message
        assert silent.state is RunState.INTERRUPTED and "abort had been asked" in silent.message
        assert reused.state is RunState.INTERRUPTED and "was gone" in reused.message
    finally:
        supervisor.stop()


def test_a_wrapper_already_running_in_the_folder_is_adopted_not_doubled(tmp_path, fake, store, monkeypatch):
    """A server that died between starting a run's wrapper and storing its pid: the run is still QUEUED, but
    its wrapper runs; the next server adopts it (from launcher.json) instead of starting a second one."""
    monkeypatch.setenv("FAKE_SNAKEMAKE", "stuck")
    folder = new_run(store, tmp_path, "r")
    paths = run_paths(folder)
    paths["events"].mkdir(parents=True)
    command = [str(fake), "-m", "openhcs_rules.execution.launch", "--status", str(paths["status"])]
    command += ["--launcher", str(paths["launcher"]), "--", str(fake), "-m", "snakemake"]
    orphan = subprocess.Popen(
        command,
        cwd=folder,
        env={**os.environ, "OPENHCS_RULES_EVENTS_DIR": str(paths["events"])},
        start_new_session=True,
    )
    wait_until(lambda: (folder / "ready").exists(), 30, "the orphan to run")
    with RunSupervisor(store, python=str(fake), poll_s=0.05, grace_s=1.0) as supervisor:
        wait_until(lambda: store.get("r").state is RunState.RUNNING, 10, "the adoption")
        assert store.get("r").pid == orphan.pid
        assert len(calls(tmp_path)) == 1  # no second Snakemake
        supervisor.cancel("r", CancelMode.ABORT)
        assert finished(store, "r").state is RunState.CANCELLED
    orphan.wait(timeout=10)
