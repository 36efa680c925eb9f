"""The well events of a chunk job: each well started, finished (with its object count), failed or skipped.

A chunk job (``process_wells``) processes its wells one after another; the execution server shows them as they
go from these events. They are written through :meth:`EventWriter.from_env` (source ``job``): a job started
without an execution server (a plain ``snakemake`` run, the variable unset) has no writer, and every method
here returns at once. Each event opens the job's events file, appends and closes it (a few events per well,
each well seconds of work): a job holds no descriptor between wells and has nothing to close when it ends,
and on a network file system the close is what makes the line visible to the server on another host
(close-to-open consistency).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from openhcs_rules.progress.bodies import as_int, clip_text
from openhcs_rules.progress.files import EventWriter

#: the events folder's file prefix for a job's events
SOURCE = "job"
#: a failed well's error is cut to this many characters (the job's log has all of it)
MAX_ERROR_CHARS = 1000


@dataclass
class WellOutcome:
    """What :meth:`WellEvents.well` reports when the well's work ends: set ``summary`` to its summary."""

    summary: dict[str, Any] | None = None


class WellEvents:
    """The well events of one plate's job; a no-op without a writer (no execution server)."""

    def __init__(self, plate: str, writer: EventWriter | None = None) -> None:
        self.plate = plate
        self.writer = writer

    @classmethod
    def from_env(cls, plate: str) -> WellEvents:
        """The events of a job on ``plate``, written where the execution server said, or nowhere."""
        return cls(plate, EventWriter.from_env(SOURCE))

    def skipped(self, well: str) -> None:
        """``well_skipped``: the well was done by an earlier run with the same run key."""
        self._emit("well_skipped", well)

    @contextmanager
    def well(self, well: str) -> Iterator[WellOutcome]:
        """``well_started`` now, then ``well_finished`` (its object count from ``outcome.summary``, its seconds)
        when the block ends, or ``well_failed`` (the exception's type and text) when it raises; re-raises."""
        self._emit("well_started", well)
        start = time.perf_counter()
        outcome = WellOutcome()
        try:
            yield outcome
        except BaseException as exc:
            self._emit("well_failed", well, error=clip_text(f"{type(exc).__name__}: {exc}", MAX_ERROR_CHARS))
            raise
        finished: dict[str, Any] = {"seconds": round(time.perf_counter() - start, 3)}
        objects = as_int((outcome.summary or {}).get("n_objects"))
        if objects is not None:
            finished["objects"] = objects
        self._emit("well_finished", well, **finished)

    def _emit(self, event_type: str, well: str, **body: Any) -> None:
        if self.writer is None:
            return
        self.writer.emit(event_type, plate=self.plate, well=well, **body)  # never raises
        try:
            self.writer.close()
        except OSError:  # a network file system may report a failed write only at close: a lost event
            pass
