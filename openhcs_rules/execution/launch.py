"""The process a run's Snakemake runs under: ``python -m openhcs_rules.execution.launch ... -- <snakemake argv>``.

Why a wrapper and not Snakemake itself (``runner.py`` says how the server uses it):

* **The exit code survives the server.** A restarted server re-adopts a live run, but it cannot ``wait()`` on a
  process that is not its child, so it would never learn how the run ended. The wrapper waits for Snakemake
  (its child) and writes ``{"exit_code", "signal", ...}`` to the ``--status`` file (atomically: a temporary
  file renamed over it) before it exits with the same code; whoever watches, child or not, reads the file.
* **One process group per run.** The server starts the wrapper with ``start_new_session=True``: the wrapper
  leads a new session and process group (pgid = its pid) that Snakemake and every job Snakemake starts
  inherit. Abort is ``killpg(pid, SIGTERM)``: Snakemake and its running jobs get SIGTERM at once (running
  jobs die, Snakemake removes their partial outputs and stops); SIGKILL to the group ends everything.
* **Drain is one signal to one process.** SIGTERM to Snakemake alone lets running jobs finish and starts no
  new one; the wrapper forwards a SIGTERM it receives to Snakemake (and only to it). On abort the wrapper
  gets the group's SIGTERM too and forwards it again: harmless, Snakemake's SIGTERM handler only sets a flag.
  SIGINT and SIGHUP are caught and ignored here (SIGINT to Snakemake *alone* would leave incomplete markers;
  the wrapper must outlive Snakemake to record its exit): only SIGKILL ends the wrapper early.
* **A stale lock is cleared first.** With ``--unlock-if-locked FOLDER``, when ``FOLDER/.snakemake/locks`` holds a
  lock (left by a Snakemake that was SIGKILLed) the wrapper runs ``<argv> --unlock`` before the run itself.
  Safe because the server starts at most one process per run folder (it checks the ``--launcher`` file).
* **Who runs is on disk.** The wrapper writes ``{"pid", "create_time"}`` to the ``--launcher`` file when it
  starts, so a server that died between starting it and storing its pid can still find it.

Standard library, psutil and ``core.files`` (itself standard library only): it starts before every run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from openhcs_rules.core.files import atomic_write_text

#: a lock left in a run folder by a Snakemake that could not clean up (SIGKILL)
LOCKS_SUBDIR = Path(".snakemake") / "locks"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """``data`` as ``path``, written through a temporary file renamed over it (``core.files``)."""
    atomic_write_text(path, json.dumps(data))


def read_json(path: Path) -> dict[str, Any] | None:
    """A small JSON object written by :func:`write_json_atomic`, or None if absent or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_locked(folder: Path) -> bool:
    """Whether a Snakemake lock is present in ``folder`` (a clean exit removes the locks folder's files)."""
    try:
        return any(os.scandir(folder / LOCKS_SUBDIR))
    except FileNotFoundError:
        return False


def exit_code_of(returncode: int) -> int:
    """A child's ``returncode`` as a shell would report it: a death by signal N is 128 + N."""
    return returncode if returncode >= 0 else 128 - returncode


class _Launcher:
    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.child: subprocess.Popen[bytes] | None = None
        self.terminate = False

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.terminate = True
        child = self.child
        if child is not None and child.returncode is None:
            child.send_signal(signal.SIGTERM)

    def run(self, command: list[str]) -> int:
        """Run one command as a child (same process group); its exit code."""
        if self.terminate:
            return 128 + signal.SIGTERM
        self.child = subprocess.Popen(command)
        if self.terminate:  # a SIGTERM that came while Popen ran (the handler saw no child yet)
            self.child.send_signal(signal.SIGTERM)
        returncode = self.child.wait()
        self.child = None
        return returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openhcs_rules.execution.launch", description=__doc__)
    parser.add_argument("--status", required=True, type=Path, help="where the exit status is written at the end")
    parser.add_argument("--launcher", type=Path, help="where this process's pid and start time are written")
    parser.add_argument("--unlock-if-locked", type=Path, metavar="FOLDER", help="run <command> --unlock first")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the Snakemake command line")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command after --")

    launcher = _Launcher(command)
    signal.signal(signal.SIGTERM, launcher.on_sigterm)
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    signal.signal(signal.SIGHUP, lambda signum, frame: None)
    if args.launcher is not None:
        me = psutil.Process()
        write_json_atomic(args.launcher, {"pid": me.pid, "create_time": me.create_time()})

    status: dict[str, Any] = {"launcher_pid": os.getpid(), "started_at": time.time()}
    returncode = 0
    try:
        if args.unlock_if_locked is not None and is_locked(args.unlock_if_locked):
            print("openhcs-rules launch: a stale Snakemake lock is present; running --unlock", flush=True)
            returncode = launcher.run([*command, "--unlock"])
            status["unlocked"] = returncode == 0
        if returncode == 0:
            returncode = launcher.run(command)
    except OSError as exc:  # the command could not be started at all
        print(f"openhcs-rules launch: cannot run {command[0]}: {exc}", flush=True)
        returncode = 127
        status["error"] = str(exc)
    code = exit_code_of(returncode)
    status.update(exit_code=code, signal=-returncode if returncode < 0 else None, ended_at=time.time())
    write_json_atomic(args.status, status)
    print(f"openhcs-rules launch: Snakemake exited with {code}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
