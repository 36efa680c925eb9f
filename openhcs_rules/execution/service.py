"""What the execution server does for a user, whatever the transport: the ZMQ channels and the HTTP API
both call this one class, so the two cannot disagree on who may see, cancel or resume a run.

Every method takes the requesting user (a name from :mod:`openhcs_rules.execution.users` or from an HTTP
token) and returns plain JSON-ready values; refusals raise :class:`RunNotVisible` (the same for a run that
does not exist and one the user may not see, so ids cannot be probed), :class:`SubmissionError` (naming
every problem) or another :class:`~openhcs_rules.errors.OpenHCSError` (e.g. resuming a running run).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from openhcs_rules.execution.runner import RunSupervisor, log_tail
from openhcs_rules.execution.states import CancelMode, Event, RunRecord
from openhcs_rules.execution.store import RunStore, UnknownRun
from openhcs_rules.execution.submission import ServerPolicy, SubmissionError, check_run_id, prepare_run
from openhcs_rules.messaging.errors import MessageError

#: result entries listed at most
MAX_RESULT_FILES = 10_000
#: events returned per request at most
MAX_EVENTS = 1000


class RunNotVisible(MessageError):
    """No run of that id that this user may see (unknown and someone else's look the same)."""

    code = "unknown_run"


class RunService:
    """Submit, list, inspect, cancel and resume runs on behalf of a user."""

    def __init__(self, policy: ServerPolicy, store: RunStore, supervisor: RunSupervisor, operators: Any) -> None:
        self.policy = policy
        self.store = store
        self.supervisor = supervisor
        self._is_operator = operators  # a callable: user name -> bool

    def is_operator(self, user: str) -> bool:
        return bool(self._is_operator(user))

    def visible_run(self, run_id: str, user: str) -> RunRecord:
        """The run, if this user may see it (its owner, or an operator)."""
        try:
            check_run_id(run_id)
            record = self.store.get(run_id)
        except (UnknownRun, SubmissionError):
            record = None
        if record is None or not (record.owner == user or self.is_operator(user)):
            raise RunNotVisible(f"no run {run_id!r} that you may see")
        return record

    def describe(self, record: RunRecord) -> dict[str, Any]:
        described = record.to_dict()
        described["queue_position"] = self.supervisor.queue_position(record.run_id)
        return described

    # -- requests -------------------------------------------------------------------------------------------
    def submit(
        self, user: str, config: str, pipeline: str | None = None, pipeline_name: str | None = None
    ) -> dict[str, Any]:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]
        prepared = prepare_run(self.policy, run_id, config, pipeline, pipeline_name)
        self.store.create_run(run_id, user, str(prepared.folder), list(prepared.plates))
        self.supervisor.enqueue(run_id)
        return self.describe(self.store.get(run_id))

    def runs(self, user: str, everyone: bool = False) -> list[dict[str, Any]]:
        owner = None if everyone and self.is_operator(user) else user
        return [self.describe(record) for record in self.store.list_runs(owner)]

    def run(self, user: str, run_id: str) -> dict[str, Any]:
        return self.describe(self.visible_run(run_id, user))

    def events(self, user: str, run_id: str, after: int = 0, limit: int = MAX_EVENTS) -> list[Event]:
        record = self.visible_run(run_id, user)
        return self.store.events_since(record.run_id, max(0, after), max(1, min(limit, MAX_EVENTS)))

    def cancel(self, user: str, run_id: str, mode: str = CancelMode.DRAIN.value) -> dict[str, Any]:
        record = self.visible_run(run_id, user)
        return self.describe(self.supervisor.cancel(record.run_id, CancelMode(mode)))

    def resume(self, user: str, run_id: str) -> dict[str, Any]:
        record = self.visible_run(run_id, user)
        return self.describe(self.supervisor.resume(record.run_id))

    def logs(self, user: str, run_id: str, tail: int | None = None) -> str:
        record = self.visible_run(run_id, user)
        return log_tail(Path(record.folder) / ".openhcs" / "snakemake.log", tail)

    def results(self, user: str, run_id: str) -> list[dict[str, Any]]:
        record = self.visible_run(run_id, user)
        return result_files(Path(record.folder) / "results")

    def result_path(self, user: str, run_id: str, relative: str) -> Path:
        """A result file of the run to send back: inside its ``results/`` (links not followed), or refused."""
        record = self.visible_run(run_id, user)
        results = (Path(record.folder) / "results").resolve()
        candidate = Path(record.folder) / relative
        if candidate.is_symlink() or ".." in Path(relative).parts or Path(relative).is_absolute():
            raise RunNotVisible(f"no result {relative!r} in run {run_id!r}")
        resolved = candidate.resolve()
        if results not in resolved.parents or not resolved.is_file():
            raise RunNotVisible(f"no result {relative!r} in run {run_id!r}")
        return resolved

    def pipelines(self) -> list[str]:
        return self.policy.library_pipelines()

    def counts(self) -> dict[str, int]:
        by_state: dict[str, int] = {}
        for record in self.store.list_runs():
            by_state[record.state.value] = by_state.get(record.state.value, 0) + 1
        return by_state


def result_files(folder: Path) -> list[dict[str, Any]]:
    """The run's results (path relative to the run folder): files with their size, and each OME-Zarr
    store as one entry (its thousands of chunk files say nothing to a person); links are not followed."""
    if not folder.is_dir():
        return []
    found: list[dict[str, Any]] = []
    pending = [folder]
    while pending and len(found) < MAX_RESULT_FILES:
        current = pending.pop()
        for path in sorted(current.iterdir(), reverse=True):
            relative = str(path.relative_to(folder.parent))
            if path.is_symlink():
                continue
            if path.is_dir():
                if path.suffix == ".zarr":
                    found.append({"path": relative, "kind": "ome-zarr"})
                else:
                    pending.append(path)
            elif path.is_file():
                found.append({"path": relative, "kind": "file", "bytes": path.stat().st_size})
    return sorted(found, key=lambda entry: entry["path"])[:MAX_RESULT_FILES]
