"""The event files' reader: new events from where the last read stopped, whatever else the files hold."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openhcs_rules.execution.states import EVENT_TYPES
from openhcs_rules.progress import reader as reader_module
from openhcs_rules.progress.files import MAX_LINE_BYTES, encode_line
from openhcs_rules.progress.reader import BLOCK_BYTES, EventTailer, TailedEvent, parse_line


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def line(event_type: str = "progress", when: float = 1.0, **body) -> bytes:
    return encode_line(event_type, body or {"done": 1, "total": 2}, when)


def test_reads_whole_lines_and_leaves_an_unfinished_one_for_the_next_read(tmp_path):
    path = tmp_path / "jobs-host-1.jsonl"
    first = line("well_started", 1.0, plate="p", well="B02")
    second = line("well_finished", 2.0, plate="p", well="B02")
    append(path, first + second[:10])
    tailer = EventTailer(tmp_path, event_types=EVENT_TYPES)
    assert tailer.read_new() == [TailedEvent("well_started", {"plate": "p", "well": "B02"}, 1.0)]
    assert tailer.offsets == {path.name: len(first)}  # the half line is not consumed
    assert tailer.read_new() == []
    append(path, second[10:])
    assert tailer.read_new() == [TailedEvent("well_finished", {"plate": "p", "well": "B02"}, 2.0)]
    assert tailer.offsets == {path.name: len(first) + len(second)}
    assert tailer.skipped == 0


def test_a_new_tailer_with_stored_offsets_neither_repeats_nor_loses_events(tmp_path):
    path = tmp_path / "a.jsonl"
    append(path, b"".join(line(when=float(i), done=i, total=9) for i in range(5)))
    tailer = EventTailer(tmp_path, event_types=EVENT_TYPES)
    first = tailer.read_new(max_events=3)
    assert [event.body["done"] for event in first] == [0, 1, 2]
    append(path, line(when=5.0, done=5, total=9))
    again = EventTailer(tmp_path, offsets=tailer.offsets, event_types=EVENT_TYPES)  # a restarted server
    assert [event.body["done"] for event in again.read_new()] == [3, 4, 5]


def test_bad_lines_are_skipped_counted_and_do_not_hide_the_good_ones(tmp_path, caplog):
    bad = [
        b"{not json",
        b"\xff\xfe\x00",  # not UTF-8
        b"[1, 2, 3]",  # not an object
        json.dumps({"time": 1, "type": "no_such_event", "body": {}}).encode(),
        json.dumps({"time": 1, "type": "progress", "body": [1]}).encode(),  # body not an object
        b'{"time": NaN, "type": "progress", "body": {"x": NaN}}',  # NaN is not JSON
        b"[" * 100_000 + b"]" * 100_000,  # nesting, and longer than MAX_LINE_BYTES
        b"1" * 5000,  # an int too long to convert
    ]
    good = line("job_started", 3.0, jobid=1, rule="r", wildcards={})
    append(tmp_path / "a.jsonl", b"\n".join(bad) + b"\n" + good + b"\n\n")
    tailer = EventTailer(tmp_path, event_types=EVENT_TYPES)
    assert tailer.read_new() == [TailedEvent("job_started", {"jobid": 1, "rule": "r", "wildcards": {}}, 3.0)]
    assert tailer.skipped == len(bad)
    assert "skipped a line of run events file" in caplog.text


def test_the_accepted_types_are_the_callers():
    assert parse_line(b'{"type": "anything"}') == TailedEvent("anything", {}, None)
    assert parse_line(b'{"type": "anything"}', EVENT_TYPES) == "unknown event type 'anything'"
    assert parse_line(b'{"type": ""}') == "unknown event type ''"


def test_time_and_body_defaults():
    assert parse_line(b'{"type": "progress"}') == TailedEvent("progress", {}, None)
    assert parse_line(b'{"type": "progress", "time": "noon", "body": {}}') == TailedEvent("progress", {}, None)
    assert parse_line(b'{"type": "progress", "time": true, "body": {}}') == TailedEvent("progress", {}, None)
    assert parse_line(b'{"type": "progress", "time": 1' + b"0" * 400 + b', "body": {}}').time is None
    assert parse_line(b'{"type": "progress", "time": 7, "body": {}}') == TailedEvent("progress", {}, 7.0)


def test_an_over_long_line_is_skipped_in_bounded_reads(tmp_path, monkeypatch):
    largest = []
    real_pread = os.pread

    def pread(fd: int, size: int, offset: int) -> bytes:
        largest.append(size)
        return real_pread(fd, size, offset)

    monkeypatch.setattr(reader_module.os, "pread", pread)
    path = tmp_path / "a.jsonl"
    huge = b'{"type": "progress", "body": {"x": "' + b"y" * (3 * 1024 * 1024)  # 3 MiB, no newline yet
    append(path, line(when=1.0) + huge)
    tailer = EventTailer(tmp_path, event_types=EVENT_TYPES)
    assert [event.time for event in tailer.read_new()] == [1.0]
    assert tailer.skipped == 1  # counted once, while it is being written
    assert tailer.offsets[path.name] == path.stat().st_size  # what was read of it is not read again
    append(path, b'"}}\n' + line(when=2.0))
    assert [event.time for event in tailer.read_new()] == [2.0]
    assert tailer.skipped == 1
    assert max(largest) <= BLOCK_BYTES


def test_a_line_of_exactly_the_limit_is_read(tmp_path):
    prefix = b'{"type":"progress","body":{"x":"'
    suffix = b'"}}\n'
    exact = prefix + b"y" * (MAX_LINE_BYTES - len(prefix) - len(suffix)) + suffix
    assert len(exact) == MAX_LINE_BYTES
    append(tmp_path / "a.jsonl", exact + b"z" + exact)  # the second one is one byte over
    tailer = EventTailer(tmp_path, event_types=EVENT_TYPES)
    assert len(tailer.read_new()) == 1
    assert tailer.skipped == 1


def test_only_regular_event_files_are_read_and_links_are_never_followed(tmp_path, caplog):
    events = tmp_path / "events"
    events.mkdir()
    outside = tmp_path / "secret.jsonl"
    append(outside, line(when=9.0))
    (events / "link.jsonl").symlink_to(outside)
    (events / "folder.jsonl").mkdir()
    os.mkfifo(events / "fifo.jsonl")  # opening it for reading would block
    append(events / "notes.txt", line(when=8.0))
    append(events / ".hidden.jsonl", line(when=7.0))
    append(events / "real.jsonl", line(when=1.0))
    tailer = EventTailer(events, event_types=EVENT_TYPES)
    assert [event.time for event in tailer.read_new()] == [1.0]
    append(events / "real.jsonl", line(when=2.0))
    assert [event.time for event in tailer.read_new()] == [2.0]  # warned about once, not on every poll
    assert set(tailer.offsets) == {"real.jsonl"}
    for name in ("link.jsonl", "folder.jsonl", "fifo.jsonl", "notes.txt", ".hidden.jsonl"):
        assert caplog.text.count(name) == 1, name


def test_events_of_several_files_come_in_time_order_and_max_events_loses_nothing(tmp_path):
    append(tmp_path / "a.jsonl", line(when=1.0) + line(when=4.0) + line(when=5.0))
    append(tmp_path / "b.jsonl", line(when=2.0) + line(when=3.0))
    tailer = EventTailer(tmp_path, event_types=EVENT_TYPES)
    assert [event.time for event in tailer.read_new()] == [1.0, 2.0, 3.0, 4.0, 5.0]
    append(tmp_path / "a.jsonl", b"".join(line(when=10.0 + i) for i in range(5)))
    append(tmp_path / "b.jsonl", b"".join(line(when=20.0 + i) for i in range(5)))
    seen = []
    while batch := tailer.read_new(max_events=3):
        assert len(batch) <= 3
        seen += [event.time for event in batch]
    assert sorted(seen) == [10.0 + i for i in range(5)] + [20.0 + i for i in range(5)]


def test_a_missing_folder_has_no_events_and_a_replaced_file_is_read_again(tmp_path):
    assert EventTailer(tmp_path / "not-yet", event_types=EVENT_TYPES).read_new() == []
    path = tmp_path / "a.jsonl"
    append(path, line(when=1.0) + line(when=2.0))
    tailer = EventTailer(tmp_path, event_types=EVENT_TYPES)
    assert len(tailer.read_new()) == 2
    path.write_bytes(line(when=3.0))  # shorter than the offset: a new file under the old name
    assert [event.time for event in tailer.read_new()] == [3.0]


# ---- any bytes, written in any pieces, read at any moment -----------------------------------------------

_valid_lines = st.builds(
    lambda kind, n: encode_line(kind, {"n": n}, float(n)),
    st.sampled_from(["progress", "well_started", "job_finished"]),
    st.integers(0, 10**6),
)
_segments = st.lists(
    st.one_of(
        _valid_lines,
        st.binary(max_size=200),
        st.sampled_from([b"\n", b"{", b"}\n", b'{"type":"progress","body":{}}\n', b"\xff\n"]),
        st.integers(MAX_LINE_BYTES - 3, MAX_LINE_BYTES + 3).map(lambda n: b"x" * n),
        _valid_lines.map(lambda valid: b"x" * MAX_LINE_BYTES + valid),  # over-long, its tail a valid event
    ),
    max_size=30,
)


def _expected(content: bytes) -> list[TailedEvent]:
    """What reading ``content`` at once must give: every complete, valid line of at most the limit."""
    events = []
    for raw in content.split(b"\n")[:-1]:  # the last piece has no newline yet
        if raw.strip() and len(raw) + 1 <= MAX_LINE_BYTES:
            parsed = parse_line(raw, EVENT_TYPES)
            if not isinstance(parsed, str):
                events.append(parsed)
    return events


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(segments=_segments, cuts=st.lists(st.integers(0, 10**6), max_size=6), budget=st.integers(1, 5))
def test_any_bytes_in_any_pieces_read_as_when_read_at_once(tmp_path_factory, segments, cuts, budget):
    folder = tmp_path_factory.mktemp("junk")
    path = folder / "junk.jsonl"
    content = b"".join(segments)
    points = sorted({0, len(content), *(cut % (len(content) + 1) for cut in cuts)})
    tailer = EventTailer(folder, event_types=EVENT_TYPES)
    got: list[TailedEvent] = []
    for start, end in zip(points, points[1:], strict=False):
        append(path, content[start:end])
        while batch := tailer.read_new(max_events=budget):  # a small budget: stops mid-file, too
            got += batch
        if tailer.offsets:
            assert tailer.offsets[path.name] <= end
    assert got == _expected(content)
    if path.exists():
        complete = content.rfind(b"\n") + 1  # everything up to the last newline is consumed
        assert tailer.offsets.get(path.name, 0) >= complete
