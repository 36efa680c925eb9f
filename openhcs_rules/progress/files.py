"""The event files of a run: where they are, how a line looks, and the one way to append one.

Why files and not messages to the server: a chunk job may run on a cluster node that cannot reach the
server, and the server may be restarted mid-run; a file in the run's folder (on the shared file system the
jobs already write their results to) loses nothing in either case, and the server reads it from where it
stopped (it keeps each file's offset with the events it stored, in one transaction).

Layout: ``<run folder>/.openhcs/events/<source>-<host>-<pid>.jsonl``, one file per writing process, so no two
processes append to the same file. A line is one JSON object ``{"time": float, "type": str, "body": {...}}``
of at most :data:`MAX_LINE_BYTES`, appended with a single ``write`` on an ``O_APPEND`` descriptor: a reader
sees whole lines, or a last line without its newline yet, which it leaves for its next read.

A process learns the folder from the environment variable :data:`EVENTS_DIR_ENV`, which the execution server
sets for the Snakemake process it starts (jobs inherit it, also through Slurm's ``--export=ALL``). Without it,
nothing is written: a plain ``snakemake`` run has no server to tell.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: the environment variable naming the folder event files go to
EVENTS_DIR_ENV = "OPENHCS_RULES_EVENTS_DIR"
#: the events folder, relative to a run's folder
EVENTS_SUBDIR = Path(".openhcs") / "events"
#: a longer line is not written (the writer) and not read (the reader skips it, with a warning)
MAX_LINE_BYTES = 64 * 1024


def events_dir_from_env() -> Path | None:
    """The folder named by :data:`EVENTS_DIR_ENV`, or None when this process runs without a server."""
    value = os.environ.get(EVENTS_DIR_ENV)
    return Path(value) if value else None


def encode_line(event_type: str, body: dict[str, Any], when: float | None = None) -> bytes:
    """One event as a line of the file format (UTF-8 JSON and a newline); ValueError past the size limit."""
    record = {"time": time.time() if when is None else when, "type": event_type, "body": body}
    line = json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode() + b"\n"
    if len(line) > MAX_LINE_BYTES:
        raise ValueError(f"an event line of {len(line)} bytes is over the {MAX_LINE_BYTES}-byte limit")
    return line


class EventWriter:
    """Appends events to this process's own file in an events folder; never raises into the caller.

    Events are a side effect: a full disk or a removed folder is logged once and the work goes on.
    """

    def __init__(self, directory: str | Path, source: str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / f"{source}-{socket.gethostname()}-{os.getpid()}.jsonl"
        self._fd: int | None = None
        self._failed = False

    @classmethod
    def from_env(cls, source: str) -> EventWriter | None:
        """A writer for the folder the server named, or None when there is none (a plain snakemake run)."""
        directory = events_dir_from_env()
        return cls(directory, source) if directory is not None else None

    def emit(self, event_type: str, **body: Any) -> None:
        """Append one event (one ``write`` on an ``O_APPEND`` descriptor)."""
        if self._failed:
            return
        try:
            line = encode_line(event_type, body)
        except (ValueError, TypeError) as exc:  # this event only: the next one may be fine
            log.warning("a %r event was not written (its body is not JSON of the allowed size): %s", event_type, exc)
            return
        try:
            if self._fd is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self._fd, line)
        except OSError as exc:  # the folder or the disk: every later event would fail the same way
            self._failed = True
            log.warning("run events are no longer written to %s: %s", self.path, exc)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
