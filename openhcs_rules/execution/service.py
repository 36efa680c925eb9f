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
from openhcs_rules.execution.submission import (
    ServerPolicy,
    SubmissionError,
    check_run_id,
    ensure_stream_keys,
    prepare_run,
    read_submitted_config,
)
from openhcs_rules.messaging.errors import MessageError

#: result entries listed at most
MAX_RESULT_FILES = 10_000
#: events returned per request at most
MAX_EVENTS = 1000


class RunNotVisible(MessageError):
    """No run of that id that this user may see (unknown and someone else's look the same)."""

    code = "unknown_run"


class OutOfScope(MessageError):
    """A submission naming plates its credentials do not cover (a signed token's OMERO plates)."""

    code = "forbidden"


def check_plate_scope(config_text: str, omero_plates: frozenset[int], limit: int) -> None:
    """Refuse (OutOfScope) a config naming any plate but OMERO plates among ``omero_plates``.

    Why: a signed token (:mod:`openhcs_rules.execution.signed_tokens`) says which OMERO plates its user may
    read, as OMERO.web checked; the server reads plates with its own OMERO account, so without this check an
    OMERO user could have the server process (and show them results of) plates they cannot see. Disk and
    synthetic plates are refused too: such a user was never given the server's data roots.
    """
    plates = read_submitted_config(config_text, limit).get("plates")
    if not isinstance(plates, dict):
        return  # prepare_run names the problem
    for name, plate in plates.items():
        plate_id = plate.get("plate_id") if isinstance(plate, dict) else None
        if not (isinstance(plate, dict) and plate.get("source") == "omero"):
            raise OutOfScope(f"plates.{name}: your token allows only OMERO plates {sorted(omero_plates)}")
        if not isinstance(plate_id, int) or isinstance(plate_id, bool) or plate_id not in omero_plates:
            raise OutOfScope(
                f"plates.{name}: OMERO plate {plate_id!r} is not one your token allows ({sorted(omero_plates)}); "
                "open the plate in OMERO.web and submit from its panel"
            )


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
        described["gpus"] = list(self.supervisor.gpus_of(record.run_id))
        return described

    # -- requests -------------------------------------------------------------------------------------------
    def submit(
        self,
        user: str,
        config: str,
        pipeline: str | None = None,
        pipeline_name: str | None = None,
        *,
        omero_plates: frozenset[int] | None = None,
        viewer_keys: dict[str, str] | None = None,
        platemaps: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Queue a run; ``omero_plates`` (a signed token's) limits the plates it may name
        (:func:`check_plate_scope`), None for users of the server's own tokens and keys. ``viewer_keys``
        (viewer kind -> public key) are the client's viewers beyond loopback its run streams to."""
        if omero_plates is not None:
            check_plate_scope(config, omero_plates, self.policy.max_config_bytes)
        self.check_gpus(config)
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]
        prepared = prepare_run(
            self.policy, run_id, config, pipeline, pipeline_name, viewer_keys=viewer_keys, platemaps=platemaps
        )
        self.store.create_run(run_id, user, str(prepared.folder), list(prepared.plates))
        self.supervisor.enqueue(run_id)
        return self.describe(self.store.get(run_id))

    def check_gpus(self, config_text: str) -> None:
        """Refuse a screen that needs more GPUs than this server lends: it would wait in the queue for ever."""
        demand = self.supervisor.gpu_demand(read_submitted_config(config_text, self.policy.max_config_bytes))
        lent = len(self.supervisor.gpus)
        if demand > lent:
            raise SubmissionError(
                f"resources.gpu / gpu: the screen needs {demand} GPU(s) and this server lends {lent}; ask for "
                "fewer (resources.gpu), or gpu: numpy to run on the CPU"
            )

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

    def stream_public_key(self) -> str:
        """The server's streaming public key (Z85): what a client authorizes in its viewer's keys folder so
        that this server's runs may stream to it (made on first use)."""
        return ensure_stream_keys(self.policy.stream_keys_folder())

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
