"""The launch wrapper a run's Snakemake runs under: the exit status on disk, drain and abort signals, the unlock.

A small stand-in command replaces Snakemake here (the real one: tests/integration/execution).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from openhcs_rules.execution.launch import is_locked, read_json

#: stands in for Snakemake: records how it was called; "drain" traps SIGTERM like Snakemake's scheduler does
FAKE = """
import json, os, shutil, signal, sys, time
from pathlib import Path
record = Path(os.environ["FAKE_RECORD"])
with open(record, "a") as handle:
    handle.write(json.dumps({"argv": sys.argv[1:], "pid": os.getpid(), "pgid": os.getpgid(0)}) + "\\n")
if "--unlock" in sys.argv:
    shutil.rmtree(".snakemake/locks")
    sys.exit(0)
mode = sys.argv[1]
if mode == "exit":
    sys.exit(int(sys.argv[2]))
stop = []
if mode == "drain":
    signal.signal(signal.SIGTERM, lambda *args: stop.append(1))
Path("ready").touch()
deadline = time.time() + 60
while not stop and time.time() < deadline:
    time.sleep(0.01)
Path("drained").touch()
"""


def launch(tmp_path: Path, *command: str) -> subprocess.Popen[bytes]:
    fake = tmp_path / "fake.py"
    fake.write_text(FAKE)
    wrapper = [sys.executable, "-m", "openhcs_rules.execution.launch", "--status", str(tmp_path / "status.json")]
    wrapper += ["--launcher", str(tmp_path / "launcher.json"), "--unlock-if-locked", str(tmp_path)]
    return subprocess.Popen(
        [*wrapper, "--", sys.executable, str(fake), *command],
        cwd=tmp_path,
        env={**os.environ, "FAKE_RECORD": str(tmp_path / "record.jsonl")},
        start_new_session=True,
    )


def calls(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "record.jsonl").read_text().splitlines()]


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_the_exit_code_is_passed_on_and_written_down(tmp_path):
    wrapper = launch(tmp_path, "exit", "3")
    assert wrapper.wait(timeout=60) == 3
    status = read_json(tmp_path / "status.json")
    assert status is not None
    assert (status["exit_code"], status["signal"], status["launcher_pid"]) == (3, None, wrapper.pid)
    launcher = read_json(tmp_path / "launcher.json")
    assert launcher is not None and launcher["pid"] == wrapper.pid
    [call] = calls(tmp_path)
    assert call["argv"] == ["exit", "3"]  # no lock: no --unlock
    assert call["pgid"] == wrapper.pid  # the command runs in the wrapper's process group


def test_sigterm_to_the_wrapper_reaches_the_command_alone_and_the_wrapper_records_its_end(tmp_path):
    wrapper = launch(tmp_path, "drain")
    wait_for(tmp_path / "ready")
    launcher = read_json(tmp_path / "launcher.json")
    assert launcher is not None
    assert launcher["create_time"] == pytest.approx(psutil.Process(wrapper.pid).create_time(), abs=0.05)
    os.kill(wrapper.pid, signal.SIGTERM)  # drain
    assert wrapper.wait(timeout=60) == 0
    assert (tmp_path / "drained").exists()
    status = read_json(tmp_path / "status.json")
    assert status is not None and status["exit_code"] == 0


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 128 + signal.SIGINT)]
)
def test_a_signal_to_the_group_ends_the_command_and_the_wrapper_outlives_it(tmp_path, signum, code):
    wrapper = launch(tmp_path, "hang")
    wait_for(tmp_path / "ready")
    os.killpg(wrapper.pid, signum)  # abort (SIGTERM); SIGINT kills the command too
    assert wrapper.wait(timeout=60) == code
    status = read_json(tmp_path / "status.json")
    assert status is not None and status["exit_code"] == code
    assert not (tmp_path / "drained").exists()


def test_a_stale_lock_is_cleared_before_the_run(tmp_path):
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("x")
    assert is_locked(tmp_path)
    wrapper = launch(tmp_path, "exit", "0")
    assert wrapper.wait(timeout=60) == 0
    assert [call["argv"] for call in calls(tmp_path)] == [["exit", "0", "--unlock"], ["exit", "0"]]
    assert not is_locked(tmp_path)
    status = read_json(tmp_path / "status.json")
    assert status is not None and status["unlocked"] is True


def test_a_command_that_cannot_start_is_exit_127(tmp_path):
    status_file = tmp_path / "status.json"
    module = [sys.executable, "-m", "openhcs_rules.execution.launch", "--status", str(status_file)]
    done = subprocess.run([*module, "--", str(tmp_path / "no-such-program")], capture_output=True, timeout=60)
    assert done.returncode == 127
    status = read_json(status_file)
    assert status is not None and status["exit_code"] == 127 and "no-such-program" in status["error"]
