"""The states of a run and of its events: the vocabulary the server, its store, its clients and the web
page share.

A run's final state comes from its Snakemake process's exit (and the cancel that was asked), never from
events alone: a job that reported success in an event can still be followed by a failed assembly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class RunState(enum.StrEnum):
    """Where a run is. ``str`` values: they are what the store, the messages and the web page carry."""

    QUEUED = "queued"  # accepted, waiting for a free slot (its position is reported)
    RUNNING = "running"  # its Snakemake process is alive
    DRAINING = "draining"  # cancel (drain) asked: running wells finish, no new job starts
    ABORTING = "aborting"  # cancel (abort) asked: running jobs are stopped now, finished wells stay valid
    SUCCEEDED = "succeeded"  # Snakemake exited 0 with no cancel
    FAILED = "failed"  # Snakemake exited non-zero with no cancel (a job or the workflow failed)
    CANCELLED = "cancelled"  # ended after a drain or abort; `resume` redoes only unfinished wells
    INTERRUPTED = "interrupted"  # its process vanished while the server was away; `resume` continues it

    @property
    def terminal(self) -> bool:
        """True for states a run leaves only through `resume`."""
        return self in TERMINAL

    @property
    def active(self) -> bool:
        """True while a Snakemake process belongs to the run (it may need re-adopting after a restart)."""
        return self in (RunState.RUNNING, RunState.DRAINING, RunState.ABORTING)


TERMINAL = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.INTERRUPTED})


class CancelMode(enum.StrEnum):
    """How a run is cancelled (measured Snakemake 9.27 semantics, ../shared/NOTES.md)."""

    DRAIN = "drain"  # SIGTERM to Snakemake alone (the launch wrapper forwards it): running jobs finish, none start
    ABORT = "abort"  # SIGTERM to its process group: running jobs die, their partial outputs are removed


#: event types a run produces. Server events: the run's own lifecycle; workflow events: from the Snakemake
#: logger plugin (main process); well events: from the chunk jobs, one per well as it starts/ends.
EVENT_TYPES = frozenset(
    {
        # server
        "run_queued",
        "run_started",
        "run_state",  # body: {"state": ..., "exit_code"?: int, "message"?: str}
        # workflow (logger plugin)
        "workflow_started",
        "job_started",  # body: {"jobid": int, "rule": str, "wildcards": {...}}
        "job_finished",  # body: {"jobid": int}
        "job_error",  # body: {"jobid": int, "rule"?: str, "message"?: str}
        "progress",  # body: {"done": int, "total": int}
        # wells (chunk jobs)
        "well_started",  # body: {"plate": str, "well": str}
        "well_finished",  # body: {"plate": str, "well": str, "objects"?: int, "seconds"?: float}
        "well_failed",  # body: {"plate": str, "well": str, "error": str}
        "well_skipped",  # body: {"plate": str, "well": str}  (already done: same run key)
    }
)


@dataclass(frozen=True)
class Event:
    """One numbered event of a run: ``seq`` counts from 1 per run, without gaps, in the order stored."""

    run_id: str
    seq: int
    time: float  # seconds since the epoch: when its writer wrote it (server events: when stored)
    type: str
    body: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "seq": self.seq, "time": self.time, "type": self.type, "body": self.body}


@dataclass(frozen=True)
class RunRecord:
    """What the store keeps of a run (one row)."""

    run_id: str
    owner: str
    folder: str  # absolute path of the run's folder (config, pipeline, Snakemake's working directory)
    state: RunState
    created_at: float
    plates: tuple[str, ...] = ()
    started_at: float | None = None
    ended_at: float | None = None
    pid: int | None = None  # the launch wrapper, leader of the run's process group (Snakemake is its child)
    pid_started_at: float | None = None  # its creation time (psutil), so a reused pid is not adopted
    exit_code: int | None = None
    cancel: CancelMode | None = None  # the cancel asked, if any
    message: str = ""  # why it failed, or was interrupted
    last_seq: int = 0  # the number of its newest event

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "owner": self.owner,
            "folder": self.folder,
            "state": self.state.value,
            "created_at": self.created_at,
            "plates": list(self.plates),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "pid": self.pid,
            "exit_code": self.exit_code,
            "cancel": self.cancel.value if self.cancel else None,
            "message": self.message,
            "last_seq": self.last_seq,
        }
