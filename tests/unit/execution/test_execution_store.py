"""The run store: runs, gap-free numbered events and tail offsets that survive a restart, together."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from openhcs_rules.errors import OpenHCSError
from openhcs_rules.execution.states import EVENT_TYPES, CancelMode, RunState
from openhcs_rules.execution.store import RunExists, RunStore, UnknownRun
from openhcs_rules.progress.files import encode_line
from openhcs_rules.progress.reader import EventTailer


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as opened:
        yield opened


def test_a_new_run_is_queued_with_its_first_event(store, tmp_path):
    record = store.create_run("r1", "alice", tmp_path / "r1", ["p1", "p2"])
    assert record.state is RunState.QUEUED
    assert record.plates == ("p1", "p2")
    assert record.folder == str(tmp_path / "r1")
    assert record.last_seq == 1
    [event] = store.events_since("r1")
    assert (event.seq, event.type, event.body) == (1, "run_queued", {"owner": "alice", "plates": ["p1", "p2"]})
    assert store.get("r1") == record
    with pytest.raises(RunExists):
        store.create_run("r1", "bob", tmp_path / "other")


def test_unknown_runs_are_a_key_error_and_an_openhcs_error(store):
    for call in (store.get, store.offsets, store.events_since, lambda run: store.update(run, message="x")):
        with pytest.raises(UnknownRun) as caught:
            call("nope")
        assert isinstance(caught.value, KeyError) and isinstance(caught.value, OpenHCSError)
        assert str(caught.value) == "no run 'nope'"
    with pytest.raises(UnknownRun):
        store.append_events("nope", [("progress", {}, None)])


def test_lists_newest_first_and_the_queue_oldest_first(store, tmp_path):
    for run_id, owner in (("a", "alice"), ("b", "bob"), ("c", "alice")):
        store.create_run(run_id, owner, tmp_path / run_id)
    assert [r.run_id for r in store.list_runs()] == ["c", "b", "a"]
    assert [r.run_id for r in store.list_runs(owner="alice")] == ["c", "a"]
    assert [r.run_id for r in store.queued()] == ["a", "b", "c"]
    store.update("a", state=RunState.RUNNING)
    assert [r.run_id for r in store.queued()] == ["b", "c"]
    store.update("a", state=RunState.CANCELLED)
    store.update("a", state=RunState.QUEUED)  # resumed: it queues behind the runs waiting already
    assert [r.run_id for r in store.queued()] == ["b", "c", "a"]


def test_a_state_change_is_an_event_in_the_same_update(store, tmp_path):
    store.create_run("r", "alice", tmp_path)
    store.update("r", pid=42, pid_started_at=1.5, started_at=2.0)  # no state change: no event
    assert store.get("r").last_seq == 1
    record = store.update("r", state="running")
    assert record.state is RunState.RUNNING and record.pid == 42 and record.pid_started_at == 1.5
    record = store.update("r", state=RunState.FAILED, exit_code=1, message="boom", cancel=None, ended_at=3.0)
    record = store.update("r", state=RunState.FAILED)  # the same state again: no second event
    assert record.last_seq == 3
    assert [(e.type, e.body) for e in store.events_since("r", after_seq=1)] == [
        ("run_state", {"state": "running"}),
        ("run_state", {"state": "failed", "exit_code": 1, "message": "boom"}),
    ]
    record = store.update("r", cancel="abort", exit_code=None, message=None)
    assert record.cancel is CancelMode.ABORT and record.exit_code is None and record.message == ""
    with pytest.raises(TypeError, match="last_seq"):
        store.update("r", last_seq=0)


def test_bad_events_are_refused_whole(store, tmp_path):
    store.create_run("r", "alice", tmp_path)
    for bad in (
        [("progress", {}, None), ("no_such_type", {}, None)],
        [("progress", [1], None)],
        [("progress", {"x": float("nan")}, None)],
        [("progress", {"x": object()}, None)],
        [("progress", {}, float("inf"))],
    ):
        with pytest.raises((ValueError, TypeError)):
            store.append_events("r", bad, offsets={"a.jsonl": 100})
    assert store.get("r").last_seq == 1
    assert store.offsets("r") == {}


def test_concurrent_appends_are_numbered_without_gaps(store, tmp_path):
    store.create_run("r", "alice", tmp_path)
    errors = []

    def worker(n: int) -> None:
        try:
            for i in range(40):
                events = [("progress", {"worker": n, "i": i, "k": k}, None) for k in range(1 + i % 3)]
                store.append_events("r", events, offsets={f"w{n}.jsonl": i})
                if i % 10 == 0:
                    store.update("r", message=f"{n}/{i}")
                    store.events_since("r", after_seq=i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    events = store.events_since("r", limit=10**6)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len(events) == 1 + 8 * sum(1 + i % 3 for i in range(40))
    assert store.get("r").last_seq == len(events)
    for n in range(8):  # each thread's own events in its own order
        mine = [(e.body["i"], e.body["k"]) for e in events if e.body.get("worker") == n]
        assert mine == sorted(mine)
    assert store.offsets("r") == {f"w{n}.jsonl": 39 for n in range(8)}


def test_paging_through_events(store, tmp_path):
    store.create_run("r", "alice", tmp_path)
    store.append_events("r", [("progress", {"done": i, "total": 10}, float(i)) for i in range(10)])
    pages, after = [], 0
    while page := store.events_since("r", after_seq=after, limit=4):
        pages.append([e.seq for e in page])
        after = page[-1].seq
    assert pages == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11]]
    assert store.events_since("r", after_seq=2, limit=1)[0].time == 1.0  # the writer's time is kept


def test_reopening_the_file_keeps_everything(tmp_path):
    path = tmp_path / "runs.sqlite"
    with RunStore(path) as store:
        store.create_run("r", "alice", tmp_path / "r", ["p"])
        store.update("r", state=RunState.RUNNING, pid=7, pid_started_at=12.25, started_at=13.0)
        store.append_events("r", [("well_started", {"plate": "p", "well": "B02"}, 14.0)], offsets={"a.jsonl": 80})
        store.update("r", cancel=CancelMode.DRAIN, state=RunState.DRAINING)
        before = (store.get("r"), store.events_since("r"), store.offsets("r"))
    with RunStore(path) as store:
        assert (store.get("r"), store.events_since("r"), store.offsets("r")) == before
        assert store.append_events("r", [("progress", {}, None)])[0].seq == before[0].last_seq + 1


def test_a_store_of_another_schema_version_is_refused(tmp_path):
    path = tmp_path / "runs.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(OpenHCSError, match="schema version 99"):
        RunStore(path)


def test_events_and_offsets_are_stored_together_or_not_at_all(store, tmp_path):
    store.create_run("r", "alice", tmp_path)
    store.append_events("r", [("progress", {"done": 1}, None)], offsets={"a.jsonl": 10})
    # an offset that fails inside the transaction, after the events were inserted: neither stays
    with pytest.raises(ValueError):
        store.append_events("r", [("progress", {"done": 2}, None)], offsets={"a.jsonl": "not a number"})
    assert store.get("r").last_seq == 2
    assert [e.body for e in store.events_since("r", after_seq=1)] == [{"done": 1}]
    assert store.offsets("r") == {"a.jsonl": 10}


def test_a_restarted_reader_continues_from_the_stored_offsets(tmp_path):
    """The server's loop: read, store with offsets; a restart (new store object, new tailer) goes on exactly."""
    events_dir = tmp_path / "events"
    events_dir.mkdir()
    path = tmp_path / "runs.sqlite"
    with open(events_dir / "jobs-h-1.jsonl", "ab") as handle:
        for i in range(7):
            handle.write(encode_line("progress", {"done": i, "total": 7}, float(i)))
    with RunStore(path) as store:
        store.create_run("r", "alice", tmp_path)
        tailer = EventTailer(events_dir, store.offsets("r"), EVENT_TYPES)
        store.append_events("r", tailer.read_new(max_events=4), offsets=tailer.offsets)
        tailer.read_new()  # read but never stored: the server died here
    with open(events_dir / "jobs-h-1.jsonl", "ab") as handle:
        handle.write(encode_line("progress", {"done": 7, "total": 7}, 7.0))
    with RunStore(path) as store:
        tailer = EventTailer(events_dir, store.offsets("r"), EVENT_TYPES)
        store.append_events("r", tailer.read_new(), offsets=tailer.offsets)
        done = [e.body["done"] for e in store.events_since("r") if e.type == "progress"]
    assert done == list(range(8))
