"""The supervisor of runs: starts queued runs as Snakemake processes, collects their events, cancels,
resumes, and picks live runs up again after a server restart.

Processes
---------
A run is one Snakemake process, in its own folder, started through the launch wrapper
(``python -m openhcs_rules.execution.launch``, see its docstring) with ``start_new_session=True``::

    supervisor ──Popen──> launch wrapper  (session + process-group leader: pgid = pid = RunRecord.pid)
                             └── python -m snakemake -s <Snakefile> --directory <folder> --configfile screen.yaml
                                    └── jobs (shells, python -m openhcs_rules ...)   all in the same group

Only lists of arguments are run, never a shell command line of ours. Snakemake's stdout and stderr (and
the wrapper's few lines) go to ``<folder>/.openhcs/snakemake.log`` (appended, one attempt after another).
The run's events folder is given to Snakemake and its jobs in ``OPENHCS_RULES_EVENTS_DIR``.

* **Drain** (:attr:`CancelMode.DRAIN`): SIGTERM to the wrapper, which forwards it to Snakemake alone:
  running jobs finish, no new job starts, Snakemake exits.
* **Abort** (:attr:`CancelMode.ABORT`): SIGTERM to the process group: the jobs die, Snakemake removes their
  partial outputs and exits; finished wells stay. If the wrapper still lives ``grace_s`` later, SIGKILL to
  the group. A SIGKILLed Snakemake leaves its lock; the wrapper clears a stale lock (``--unlock``) before
  the next attempt in that folder, so :meth:`RunSupervisor.resume` just queues the run again.
* **A Snakemake that hangs on its own signal handler.** Snakemake 9.27's SIGTERM handler takes the job
  scheduler's lock, which is not reentrant: a SIGTERM that lands while the main thread holds that lock (a job
  just ended) deadlocks Snakemake for ever (seen: about one abort in three, and drains too). A cancelled run
  whose Snakemake has had no job process for :data:`STUCK_S` seconds is therefore SIGKILLed with its group
  (a healthy Snakemake exits within a second once its last job has ended); its finished wells stay valid and
  resume clears the lock it leaves.
* **Final state** from the exit: the wrapper writes ``<folder>/.openhcs/exit_status.json`` when Snakemake
  ends; the supervisor reads it (also for a run it did not start). A cancel asked: CANCELLED; exit 0:
  SUCCEEDED; else FAILED, with the last lines of the Snakemake log as the message. No status at all (the
  wrapper was SIGKILLed): CANCELLED after a cancel, else FAILED (seen ending) or INTERRUPTED (found gone).
* **Restart**: :meth:`RunSupervisor.stop` leaves the processes alone. :meth:`RunSupervisor.start` re-adopts
  every run in an active state whose pid is alive with the creation time stored with it (a reused pid is
  not adopted); it then polls the process (it is no child of this one) and reads the exit status file. A run
  whose process is gone gets its final state from the status file, or INTERRUPTED when there is none.
  QUEUED runs simply stay queued: the queue is the store's. Before starting a queued run the supervisor
  checks ``<folder>/.openhcs/launcher.json`` (written by the wrapper) and adopts a live wrapper it finds,
  in case a server died between starting a wrapper and storing its pid: never two Snakemakes in a folder.
* **GPUs** (:mod:`openhcs_rules.execution.gpus`): the supervisor lends its ``gpus`` to runs. A run starts
  only when its devices are free (the queue stays first come, first served: a run that waits for a GPU
  also holds back the runs behind it, so a large run is never starved by small ones); it sees them, and
  only them, in ``CUDA_VISIBLE_DEVICES`` (empty for a run that needs none), and its Snakemake gets
  ``--resources gpu=N``. The devices a run holds are written to ``<folder>/.openhcs/gpus.json`` so that a
  re-adopted run keeps them. A run needing more devices than the server has fails at once (submissions
  asking for that are refused before: ``RunService.submit``).
* **Events**: an :class:`EventTailer` per active run, its offsets stored with the events
  (``RunStore.append_events``); collected on every poll and once more after the process ends.

One scheduler thread does the starting, polling, collecting and ending; :meth:`cancel`, :meth:`resume` and
:meth:`enqueue` may be called from any thread (a lock orders them with the scheduler's end of a run).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

import openhcs_rules
from openhcs_rules.errors import OpenHCSError
from openhcs_rules.execution.gpus import VISIBLE_ENV, gpu_demand
from openhcs_rules.execution.launch import read_json, write_json_atomic
from openhcs_rules.execution.states import EVENT_TYPES, CancelMode, RunRecord, RunState
from openhcs_rules.execution.store import RunStore
from openhcs_rules.progress.files import EVENTS_DIR_ENV, EVENTS_SUBDIR
from openhcs_rules.progress.reader import EventTailer

log = logging.getLogger(__name__)

#: the server's files in a run folder (next to the events folder)
OPENHCS_SUBDIR = Path(".openhcs")
#: the screen config every run folder holds
CONFIG_NAME = "screen.yaml"
#: a resumable run's states
RESUMABLE = frozenset({RunState.CANCELLED, RunState.FAILED, RunState.INTERRUPTED})
#: lines of the Snakemake log a FAILED run's message quotes
LOG_TAIL_LINES = 20
#: the most of a log that is read back (a client's log request, the lines of a failure)
MAX_LOG_BYTES = 256 * 1024
#: events stored per run and poll, at most (a flood is taken over several polls, other runs still move)
EVENTS_PER_POLL = 5000
#: a cancelled run whose Snakemake has had no job process for this long is stuck (module docstring)
STUCK_S = 5.0


class RunStateError(OpenHCSError):
    """The run is not in a state that allows this (resume a running run, cancel a finished one...)."""


def default_snakefile() -> Path:
    """The workflow's Snakefile: ``workflow/Snakefile`` next to the package (a checkout or an editable install;
    the config schema is found the same way, ``config/validate.py``)."""
    return Path(openhcs_rules.__file__).resolve().parents[1] / "workflow" / "Snakefile"


def run_paths(folder: str | Path) -> dict[str, Path]:
    """The server's files in a run folder: ``events``, ``log``, ``status``, ``launcher``."""
    base = Path(folder) / OPENHCS_SUBDIR
    return {
        "events": Path(folder) / EVENTS_SUBDIR,
        "log": base / "snakemake.log",
        "status": base / "exit_status.json",
        "launcher": base / "launcher.json",
        "gpus": base / "gpus.json",
    }


def _process(pid: int | None, create_time: float | None) -> psutil.Process | None:
    """The live (not zombie) process ``pid`` if it was created at ``create_time``, else None."""
    if pid is None or create_time is None:
        return None
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - create_time) > 0.05 or process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.Error:
        return None


def log_tail(path: Path, lines: int | None = None, max_bytes: int = MAX_LOG_BYTES) -> str:
    """The last ``lines`` lines of a log (all when None), read from its last ``max_bytes`` only."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - max_bytes))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return text if lines is None else "\n".join(text.splitlines()[-lines:])


def _jobs_running(wrapper_pid: int) -> bool:
    """Whether the run's Snakemake (the wrapper's child) has any child process: a job, or its shell.

    True when it cannot be told (the safe answer: nothing is killed on a guess).
    """
    try:
        for snakemake in psutil.Process(wrapper_pid).children():
            if snakemake.children():
                return True
        return False
    except (psutil.Error, OSError):
        return True


@dataclass
class _Active:
    """A run whose process this supervisor watches."""

    run_id: str
    folder: Path
    pid: int
    create_time: float
    tailer: EventTailer
    popen: subprocess.Popen[bytes] | None = None  # None for a re-adopted process (not our child)
    abort_deadline: float | None = None  # when an abort escalates to SIGKILL
    killed: bool = False
    cancelling: bool = False  # a drain or abort was signalled
    idle_since: float | None = None  # since when a cancelled run's Snakemake has had no job process
    stuck: bool = False  # killed because Snakemake hung after its jobs ended
    gpus: tuple[str, ...] = ()  # the devices lent to the run while it runs

    def ended(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is not None
        return _process(self.pid, self.create_time) is None


class RunSupervisor:
    """Runs the store's queued runs, at most ``max_concurrent`` at a time, and watches them to their end."""

    def __init__(
        self,
        store: RunStore,
        *,
        max_concurrent: int = 1,
        snakemake_args: Sequence[str] = ("--cores", "2"),
        grace_s: float = 30.0,
        poll_s: float = 0.5,
        python: str = sys.executable,
        logger_plugin: str | None = None,
        snakefile: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        gpus: Sequence[str] = (),
    ) -> None:
        """``snakemake_args`` go to every Snakemake (resources, executor, profile...); ``logger_plugin`` names
        a Snakemake logger plugin (``--logger``); ``env`` is added to this process's environment for runs;
        ``gpus`` are the devices lent to runs (module docstring)."""
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if len(set(gpus)) != len(gpus):
            raise ValueError(f"a device is named twice in {list(gpus)}")
        self.gpus = tuple(gpus)
        self.store = store
        self.max_concurrent = max_concurrent
        self.snakemake_args = list(snakemake_args)
        self.grace_s = grace_s
        self.poll_s = poll_s
        self.python = python
        self.logger_plugin = logger_plugin
        self.snakefile = Path(snakefile) if snakefile is not None else default_snakefile()
        self.env = dict(env or {})
        self._lock = threading.RLock()
        self._active: dict[str, _Active] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Re-adopt live runs, settle those whose process is gone, then start the scheduler thread."""
        if self._thread is not None:
            raise RuntimeError("the supervisor is running already")
        if not self.snakefile.is_file():
            raise OpenHCSError(f"no Snakefile at {self.snakefile}: is the workflow/ folder next to the package?")
        with self._lock:
            for record in self.store.list_runs():
                if record.state.active and record.run_id not in self._active:
                    self._readopt(record)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="openhcs-run-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop watching; the runs' processes go on and are re-adopted by the next :meth:`start`."""
        thread, self._thread = self._thread, None
        self._stopping.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            self._active.clear()

    def __enter__(self) -> RunSupervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # requests ------------------------------------------------------------------------------------------------

    def enqueue(self, run_id: str) -> RunRecord:
        """Have a QUEUED run (``RunStore.create_run``) started when a slot is free; returns its record."""
        record = self.store.get(run_id)
        if record.state is not RunState.QUEUED:
            raise RunStateError(f"run {run_id} is {record.state.value}, not queued")
        self._wake.set()
        return record

    def queue_position(self, run_id: str) -> int | None:
        """1 for the next run to start, 2 for the one after...; None when the run is not waiting."""
        ids = [record.run_id for record in self.store.queued()]
        return ids.index(run_id) + 1 if run_id in ids else None

    def gpu_demand(self, config: Mapping[str, object]) -> int:
        """The devices a run of ``config`` holds while it runs, on this supervisor's GPUs."""
        return gpu_demand(config, bool(self.gpus))

    def gpus_of(self, run_id: str) -> tuple[str, ...]:
        """The devices lent to a running run (empty for one that needs none, or is not running)."""
        with self._lock:
            active = self._active.get(run_id)
            return active.gpus if active is not None else ()

    def _free_gpus(self) -> list[str]:
        held = {device for active in self._active.values() for device in active.gpus}
        return [device for device in self.gpus if device not in held]

    def active_runs(self) -> list[str]:
        """The runs whose process this supervisor watches now."""
        with self._lock:
            return list(self._active)

    def cancel(self, run_id: str, mode: CancelMode = CancelMode.DRAIN) -> RunRecord:
        """Cancel a run: a queued one ends at once; a running one drains or aborts (module docstring).

        Asking to abort a draining run escalates; asking to drain an aborting or draining run changes nothing.
        """
        mode = CancelMode(mode)
        with self._lock:
            record = self.store.get(run_id)
            if record.state is RunState.QUEUED:
                return self.store.update(
                    run_id,
                    state=RunState.CANCELLED,
                    cancel=mode,
                    ended_at=time.time(),
                    message="cancelled while queued",
                )
            if record.state.terminal:
                raise RunStateError(f"run {run_id} is {record.state.value} already")
            active = self._active.get(run_id)
            if active is None:
                raise RunStateError(f"run {run_id} is {record.state.value} but not supervised (server starting?)")
            if record.state is RunState.ABORTING or (mode is CancelMode.DRAIN and record.state is RunState.DRAINING):
                return record
            active.cancelling = True
            if mode is CancelMode.DRAIN:
                record = self.store.update(run_id, state=RunState.DRAINING, cancel=mode)
                self._signal(active, signal.SIGTERM, group=False)
            else:
                record = self.store.update(run_id, state=RunState.ABORTING, cancel=mode)
                active.abort_deadline = time.monotonic() + self.grace_s
                self._signal(active, signal.SIGTERM, group=True)
        self._wake.set()
        return record

    def resume(self, run_id: str) -> RunRecord:
        """Queue a cancelled, failed or interrupted run again, in its folder: Snakemake redoes only what is not
        done (``--rerun-incomplete``; a lock a killed attempt left is cleared first)."""
        with self._lock:
            record = self.store.get(run_id)
            if record.state not in RESUMABLE:
                raise RunStateError(
                    f"run {run_id} is {record.state.value}: only a cancelled, failed or interrupted run can be resumed"
                )
            record = self.store.update(
                run_id,
                state=RunState.QUEUED,
                cancel=None,
                exit_code=None,
                message="",
                pid=None,
                pid_started_at=None,
                ended_at=None,
            )
        self._wake.set()
        return record

    # the scheduler -------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._tick()
            except Exception:  # one bad run (a folder removed under it...) must not stop every other
                log.exception("run supervisor: a poll failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _tick(self) -> None:
        with self._lock:
            for active in list(self._active.values()):
                if self._stopping.is_set():
                    return
                self._watch(active)
            for record in self.store.queued():
                if len(self._active) >= self.max_concurrent or self._stopping.is_set():
                    break
                if not self._launch(record):
                    break  # its GPUs are busy: first come, first served (module docstring)

    def _watch(self, active: _Active) -> None:
        self._collect(active)
        if active.ended():
            self._finish(active)
        elif active.abort_deadline is not None and time.monotonic() > active.abort_deadline and not active.killed:
            log.warning(
                "run %s: still running %.0f s after abort, killing its process group", active.run_id, self.grace_s
            )
            self._signal(active, signal.SIGKILL, group=True)
            active.killed = True
        elif active.cancelling and not active.killed:
            now = time.monotonic()
            if _jobs_running(active.pid):
                active.idle_since = None
            elif active.idle_since is None:
                active.idle_since = now
            elif now - active.idle_since > STUCK_S:
                log.warning(
                    "run %s: Snakemake has not exited %.0f s after its last job ended (it hangs in its signal "
                    "handler); killing its process group",
                    active.run_id,
                    STUCK_S,
                )
                self._signal(active, signal.SIGKILL, group=True)
                active.killed = active.stuck = True

    def _collect(self, active: _Active) -> None:
        """Store the run's new events with the offsets they were read up to (one transaction per batch)."""
        stored = 0
        while stored < EVENTS_PER_POLL:
            events = active.tailer.read_new(max_events=1000)
            if not events:
                return
            self.store.append_events(active.run_id, events, offsets=active.tailer.offsets)
            stored += len(events)

    def _signal(self, active: _Active, signum: int, *, group: bool) -> None:
        """``signum`` to the wrapper (or its whole group), unless it is gone (a reused pid is never signalled)."""
        if active.popen is not None:
            if active.popen.poll() is not None and not group:
                return
        elif _process(active.pid, active.create_time) is None:
            return
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(active.pid, signum)
            else:
                os.kill(active.pid, signum)

    def _command(self, folder: Path, gpus: int = 0) -> list[str]:
        paths = run_paths(folder)
        snakemake = [self.python, "-m", "snakemake", "-s", str(self.snakefile), "--directory", str(folder)]
        snakemake += ["--configfile", str(folder / CONFIG_NAME), *self.snakemake_args]
        # profiles/default's force-use-threads, which Snakemake reads only from the folder it is started in (a
        # run folder here, never the repository): the one `run:` job (well_folders, a mkdir) then runs in a thread
        # instead of a new Snakemake process that parses the whole workflow again (~2-3 s of a core per run)
        snakemake.append("--force-use-threads")
        if gpus:
            snakemake += ["--resources", f"gpu={gpus}"]
        if self.logger_plugin:
            snakemake += ["--logger", self.logger_plugin]
        if (folder / ".snakemake").exists():  # an attempt ran here: redo what it left incomplete
            snakemake.append("--rerun-incomplete")
        wrapper = [self.python, "-m", "openhcs_rules.execution.launch", "--status", str(paths["status"])]
        wrapper += ["--launcher", str(paths["launcher"]), "--unlock-if-locked", str(folder)]
        return [*wrapper, "--", *snakemake]

    def _held_gpus(self, folder: Path) -> tuple[str, ...]:
        """The devices a run started earlier holds (its ``gpus.json``), those of this supervisor only."""
        held = (read_json(run_paths(folder)["gpus"]) or {}).get("devices")
        return tuple(d for d in held if d in self.gpus) if isinstance(held, list) else ()

    def _fail(self, run_id: str, message: str) -> None:
        self.store.update(run_id, state=RunState.FAILED, ended_at=time.time(), message=message)

    def _launch(self, record: RunRecord) -> bool:
        """Start a queued run (or adopt its live wrapper); False when it must wait for its GPUs."""
        folder = Path(record.folder)
        paths = run_paths(folder)
        tailer = EventTailer(paths["events"], self.store.offsets(record.run_id), EVENT_TYPES)
        launcher = read_json(paths["launcher"]) or {}
        pid, create_time = launcher.get("pid"), launcher.get("create_time")
        if isinstance(pid, int) and isinstance(create_time, float) and _process(pid, create_time) is not None:
            log.warning("run %s: its wrapper (pid %d) is running already; adopting it", record.run_id, pid)
            gpus = self._held_gpus(folder)
            self._active[record.run_id] = _Active(record.run_id, folder, pid, create_time, tailer, gpus=gpus)
            self.store.update(record.run_id, state=RunState.RUNNING, pid=pid, pid_started_at=create_time)
            return True
        if not folder.is_dir():
            self._fail(record.run_id, f"no folder {folder}")
            return True
        try:
            config = yaml.safe_load((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            self._fail(record.run_id, f"its config {folder / CONFIG_NAME} cannot be read: {exc}")
            return True
        demand = self.gpu_demand(config if isinstance(config, dict) else {})
        if demand > len(self.gpus):
            self._fail(record.run_id, f"it needs {demand} GPU(s); this server lends {len(self.gpus)}")
            return True
        free = self._free_gpus()
        if demand > len(free):
            return False
        gpus = tuple(free[:demand])
        try:
            paths["events"].mkdir(parents=True, exist_ok=True)
            paths["status"].unlink(missing_ok=True)  # a status file is always this attempt's
            write_json_atomic(paths["gpus"], {"devices": list(gpus)})
            env = {**os.environ, **self.env, EVENTS_DIR_ENV: str(paths["events"]), VISIBLE_ENV: ",".join(gpus)}
            with open(paths["log"], "ab") as output:
                popen = subprocess.Popen(
                    self._command(folder, demand),
                    cwd=folder,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            self._fail(record.run_id, f"the run could not start: {exc}")
            return True
        try:
            create_time = psutil.Process(popen.pid).create_time()
        except psutil.Error:  # gone already (a zombie still has one; this is very unlikely)
            create_time = time.time()
        self._active[record.run_id] = _Active(record.run_id, folder, popen.pid, create_time, tailer, popen, gpus=gpus)
        now = time.time()
        self.store.update(
            record.run_id, state=RunState.RUNNING, pid=popen.pid, pid_started_at=create_time, started_at=now
        )
        self.store.append_events(record.run_id, [("run_started", {"pid": popen.pid, "gpus": list(gpus)}, now)])
        log.info("run %s started (pid %d) in %s, GPUs %s", record.run_id, popen.pid, folder, list(gpus) or "none")
        return True

    def _readopt(self, record: RunRecord) -> None:
        folder = Path(record.folder)
        tailer = EventTailer(run_paths(folder)["events"], self.store.offsets(record.run_id), EVENT_TYPES)
        active = _Active(record.run_id, folder, record.pid or 0, record.pid_started_at or 0.0, tailer)
        active.gpus = self._held_gpus(folder)
        if _process(record.pid, record.pid_started_at) is not None:
            if record.state is RunState.ABORTING:
                active.abort_deadline = time.monotonic() + self.grace_s
            active.cancelling = record.state in (RunState.DRAINING, RunState.ABORTING)
            self._active[record.run_id] = active
            log.info("run %s: re-adopted its running process %s", record.run_id, record.pid)
        else:
            self._finish(active, found_gone=True)

    def _finish(self, active: _Active, *, found_gone: bool = False) -> None:
        """The run's process ended: last events, then its final state from the exit status."""
        self._collect(active)
        self._active.pop(active.run_id, None)
        record = self.store.get(active.run_id)
        if record.cancel is CancelMode.ABORT and active.popen is not None:
            # jobs a killed Snakemake left behind (none normally). Only for our own child, reaped just now: its
            # pid stays reserved while its group has members, so this cannot reach another group. Never for a
            # process found gone at start: its pid may have been reused since.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(active.pid, signal.SIGKILL)
        status = read_json(run_paths(active.folder)["status"])
        if status is not None and status.get("launcher_pid") != active.pid:
            status = None
        exit_code: int | None = None
        if status is not None and isinstance(status.get("exit_code"), int):
            exit_code = status["exit_code"]
        elif active.popen is not None and active.popen.returncode is not None:
            exit_code = active.popen.returncode if active.popen.returncode >= 0 else 128 - active.popen.returncode
        if found_gone and status is None:
            state = RunState.INTERRUPTED
            message = f"its process (pid {record.pid}) was gone when the server started; resume continues it"
            if record.cancel:
                message += f" ({record.cancel.value} had been asked)"
        elif record.cancel is not None:
            state, message = RunState.CANCELLED, f"cancelled ({record.cancel.value})"
            if active.stuck:
                message += ": Snakemake hung after its jobs ended and was killed (finished wells are kept)"
            elif active.killed:
                message += f": killed {self.grace_s:.0f} s after the abort"
        elif exit_code == 0:
            state, message = RunState.SUCCEEDED, ""
        else:
            state = RunState.FAILED
            tail = log_tail(run_paths(active.folder)["log"], LOG_TAIL_LINES, max_bytes=16384)
            how = f"Snakemake exited with {exit_code}" if status is not None else f"killed (exit {exit_code})"
            message = f"{how}:\n{tail}" if tail else how
        self.store.update(active.run_id, state=state, exit_code=exit_code, ended_at=time.time(), message=message)
        log.info("run %s ended: %s (exit %s)", active.run_id, state.value, exit_code)
