"""The execution server's memory: runs, their numbered events and the event files' read offsets, in SQLite.

Why SQLite: the server must survive its own restart (runs keep running, see ``runner.py``) and answer "what
happened after event N" to clients that reconnect; one file with transactions gives both, with nothing to
install. Why one transaction for events *and* offsets: the offsets say which bytes of the run's event files
the stored events came from, so a crash either keeps both or neither; a restart then neither loses nor
repeats an event. Why numbering here: ``seq`` is assigned inside the transaction that stores the events, so
the numbers of a run have no gaps and no duplicates, whichever thread appends.

One connection (``check_same_thread=False``) behind one lock: the server's threads (the scheduler, the
message loop) take turns; every public method is one transaction. WAL journal, synchronous=FULL.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from openhcs_rules.errors import OpenHCSError
from openhcs_rules.execution.states import EVENT_TYPES, CancelMode, Event, RunRecord, RunState

#: the schema's version (``PRAGMA user_version``); a store of another version is refused, never guessed at
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    folder TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    queued_at REAL NOT NULL,          -- when it (last) entered QUEUED: the queue's order
    plates TEXT NOT NULL,             -- JSON list
    started_at REAL,
    ended_at REAL,
    pid INTEGER,
    pid_started_at REAL,
    exit_code INTEGER,
    cancel TEXT,
    message TEXT NOT NULL DEFAULT '',
    last_seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_by_state ON runs (state, queued_at);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    seq INTEGER NOT NULL,
    time REAL NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,               -- JSON object
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tail_offsets (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    file TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    PRIMARY KEY (run_id, file)
) WITHOUT ROWID;
"""

#: the columns of ``runs`` that ``update`` may set
UPDATABLE = frozenset({"state", "pid", "pid_started_at", "started_at", "ended_at", "exit_code", "cancel", "message"})
_COLUMNS = (
    "run_id, owner, folder, state, created_at, plates, started_at, ended_at, pid, pid_started_at, "
    "exit_code, cancel, message, last_seq"
)


class UnknownRun(OpenHCSError, KeyError):
    """No run has this id (also a ``KeyError``: a lookup that failed)."""

    def __str__(self) -> str:  # KeyError's own str() would show the message's repr
        return str(self.args[0]) if self.args else "unknown run"


class RunExists(OpenHCSError):
    """A run with this id exists already (ids are never reused: its events would mix)."""


def _dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _record(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        owner=row["owner"],
        folder=row["folder"],
        state=RunState(row["state"]),
        created_at=row["created_at"],
        plates=tuple(json.loads(row["plates"])),
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        pid=row["pid"],
        pid_started_at=row["pid_started_at"],
        exit_code=row["exit_code"],
        cancel=CancelMode(row["cancel"]) if row["cancel"] else None,
        message=row["message"],
        last_seq=row["last_seq"],
    )


def _event(row: sqlite3.Row) -> Event:
    return Event(row["run_id"], row["seq"], row["time"], row["type"], json.loads(row["body"]))


class RunStore:
    """Runs, events and tail offsets in one SQLite file; safe to share between threads of one process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # isolation_level=None: no implicit transactions; each method says BEGIN IMMEDIATE itself
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a stored event survives a power cut, not only a crash
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                self._db.close()
                raise OpenHCSError(
                    f"run store {self.path} has schema version {version}, this server knows {SCHEMA_VERSION}: "
                    "use the openhcs-rules version that wrote it, or start the server with a new store"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the database (the store is unusable afterwards)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, under the lock (IMMEDIATE: the write lock is taken at once, no upgrade)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # reads ---------------------------------------------------------------------------------------------------

    def _get(self, db: sqlite3.Connection, run_id: str) -> RunRecord:
        row = db.execute(f"SELECT {_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRun(f"no run {run_id!r}")
        return _record(row)

    def get(self, run_id: str) -> RunRecord:
        """The run's record; :class:`UnknownRun` for an id the store does not know."""
        with self._lock:
            return self._get(self._db, run_id)

    def list_runs(self, owner: str | None = None) -> list[RunRecord]:
        """Every run (or ``owner``'s), newest first: what a client's "list" shows."""
        query = f"SELECT {_COLUMNS} FROM runs"
        params: tuple[str, ...] = ()
        if owner is not None:
            query += " WHERE owner = ?"
            params = (owner,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY created_at DESC, rowid DESC", params).fetchall()
        return [_record(row) for row in rows]

    def queued(self) -> list[RunRecord]:
        """The QUEUED runs in queue order: the one waiting longest first (a resumed run queues anew)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE state = ? ORDER BY queued_at, rowid", (RunState.QUEUED.value,)
            ).fetchall()
        return [_record(row) for row in rows]

    def offsets(self, run_id: str) -> dict[str, int]:
        """Event file name -> offset of its first byte not yet stored as events (for a new EventTailer)."""
        with self._lock:
            self._get(self._db, run_id)
            rows = self._db.execute('SELECT file, "offset" FROM tail_offsets WHERE run_id = ?', (run_id,)).fetchall()
        return {row["file"]: row["offset"] for row in rows}

    def events_since(self, run_id: str, after_seq: int = 0, limit: int = 1000) -> list[Event]:
        """The run's events numbered after ``after_seq``, oldest first, at most ``limit`` (a client catching up
        pages with the last ``seq`` it got)."""
        with self._lock:
            self._get(self._db, run_id)
            rows = self._db.execute(
                "SELECT run_id, seq, time, type, body FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (run_id, after_seq, max(0, limit)),
            ).fetchall()
        return [_event(row) for row in rows]

    # writes --------------------------------------------------------------------------------------------------

    def create_run(self, run_id: str, owner: str, folder: str | Path, plates: Sequence[str] = ()) -> RunRecord:
        """A new QUEUED run (its first event: ``run_queued``); :class:`RunExists` if the id is taken."""
        now = time.time()
        with self._transaction() as db:
            try:
                db.execute(
                    "INSERT INTO runs (run_id, owner, folder, state, created_at, queued_at, plates) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, owner, str(folder), RunState.QUEUED.value, now, now, json.dumps(list(plates))),
                )
            except sqlite3.IntegrityError:
                raise RunExists(f"a run {run_id!r} exists already") from None
            self._append(db, run_id, [("run_queued", {"owner": owner, "plates": list(plates)}, now)])
            return self._get(db, run_id)

    def update(self, run_id: str, **fields: Any) -> RunRecord:
        """Set some of the run's fields (names in :data:`UPDATABLE`); returns the new record.

        A change of ``state`` also appends a ``run_state`` event (``{"state", "exit_code"?, "message"?}``) in
        the same transaction, so a client following the events sees every state, in order, exactly once.
        """
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise TypeError(f"RunStore.update cannot set {', '.join(sorted(unknown))}")
        values = dict(fields)
        if "state" in values:
            values["state"] = RunState(values["state"]).value
        if "cancel" in values and values["cancel"] is not None:
            values["cancel"] = CancelMode(values["cancel"]).value
        if "message" in values and values["message"] is None:
            values["message"] = ""
        now = time.time()
        with self._transaction() as db:
            before = self._get(db, run_id)
            if not values:
                return before
            state_changed = "state" in values and values["state"] != before.state.value
            if state_changed and values["state"] == RunState.QUEUED.value:
                values["queued_at"] = now  # the back of the queue
            assignments = ", ".join(f"{name} = ?" for name in values)
            db.execute(f"UPDATE runs SET {assignments} WHERE run_id = ?", (*values.values(), run_id))
            after = self._get(db, run_id)
            if state_changed:
                body: dict[str, Any] = {"state": after.state.value}
                if after.exit_code is not None:
                    body["exit_code"] = after.exit_code
                if after.message:
                    body["message"] = after.message
                self._append(db, run_id, [("run_state", body, now)])
                after = self._get(db, run_id)
            return after

    def append_events(
        self,
        run_id: str,
        events: Iterable[tuple[str, dict[str, Any], float | None]],
        offsets: dict[str, int] | None = None,
    ) -> list[Event]:
        """Store events numbered after the run's last one (no gaps) and, in the same transaction, the event
        files' offsets they were read up to; returns the stored events. ``time`` None means now.

        Raises ValueError (storing nothing) for an unknown type, a body that is not a JSON object, or a time
        that is not a finite number.
        """
        batch = list(events)
        now = time.time()
        checked: list[tuple[str, dict[str, Any], float]] = []
        for event_type, body, when in batch:
            if event_type not in EVENT_TYPES:
                raise ValueError(f"unknown event type {event_type!r}")
            if not isinstance(body, dict):
                raise ValueError(f"the body of a {event_type} event is not a dict: {type(body).__name__}")
            _dumps(body)  # not JSON-serialisable: ValueError/TypeError before the transaction
            when = now if when is None else float(when)
            if not math.isfinite(when):
                raise ValueError(f"the time of a {event_type} event is not finite")
            checked.append((event_type, body, when))
        with self._transaction() as db:
            stored = self._append(db, run_id, checked)
            for name, offset in (offsets or {}).items():
                db.execute(
                    'INSERT INTO tail_offsets (run_id, file, "offset") VALUES (?, ?, ?) '
                    'ON CONFLICT (run_id, file) DO UPDATE SET "offset" = excluded."offset"',
                    (run_id, name, int(offset)),
                )
            return stored

    def _append(
        self, db: sqlite3.Connection, run_id: str, events: Sequence[tuple[str, dict[str, Any], float | None]]
    ) -> list[Event]:
        """Inside a transaction: number and insert events, move the run's ``last_seq``."""
        last_seq = self._get(db, run_id).last_seq
        stored = []
        for event_type, body, when in events:
            last_seq += 1
            event = Event(run_id, last_seq, time.time() if when is None else when, event_type, body)
            db.execute(
                "INSERT INTO events (run_id, seq, time, type, body) VALUES (?, ?, ?, ?, ?)",
                (run_id, event.seq, event.time, event.type, _dumps(event.body)),
            )
            stored.append(event)
        if stored:
            db.execute("UPDATE runs SET last_seq = ? WHERE run_id = ?", (last_seq, run_id))
        return stored
