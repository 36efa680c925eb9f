"""The reader of a run's event files: what the execution server calls to collect new events.

Each ``*.jsonl`` file of an events folder (:mod:`openhcs_rules.progress.files`) is read from the byte offset
where the previous read stopped; the offsets are the reader's whole state, so the server stores them with
the events they produced (one transaction) and a restarted server neither loses nor repeats an event.

The files are written by jobs, which may be broken, killed mid-write or simply not ours (anything can land
in a shared folder), so the reader trusts nothing in them:

* a last line without its newline is being written: it is left for the next read (the offset stays at its
  start);
* a line that is not JSON, not an object, of an unknown type, with a body that is not an object, or longer
  than :data:`~openhcs_rules.progress.files.MAX_LINE_BYTES` is skipped with a warning and counted in
  :attr:`EventTailer.skipped`;
* files are read in bounded blocks: an over-long line is skipped up to its newline without ever being held
  in memory whole;
* only regular files named like ``<name>.jsonl`` are read; a symlink (never followed: ``lstat``, then
  ``O_NOFOLLOW``), a folder, a FIFO or a device is skipped with a warning;
* a file that shrank below its stored offset was replaced: it is read again from its start (with a warning).

An over-long line that has no newline yet is dropped as it is read and its offset moves past it; only this
tailer remembers to drop the rest of it, so a new tailer (a restarted server) sees that rest as one more
malformed line, skipped in turn.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import heapq
import json
import logging
import math
import os
import re
import stat
from collections.abc import Collection
from pathlib import Path
from typing import Any, NamedTuple

from openhcs_rules.progress.files import MAX_LINE_BYTES

log = logging.getLogger(__name__)

#: how much of a file one ``read`` call takes (bounds the memory a read needs, whatever a file holds)
BLOCK_BYTES = 64 * 1024
#: the names read: a plain file name ending in ``.jsonl`` (no hidden files, no path separators)
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*\.jsonl")


class TailedEvent(NamedTuple):
    """One event read from a file; a ``(type, body, time)`` tuple, as ``RunStore.append_events`` takes it.

    ``time`` is the writer's clock (seconds since the epoch), or None when the line had no usable time.
    """

    type: str
    body: dict[str, Any]
    time: float | None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_line(line: bytes, event_types: Collection[str] | None = None) -> TailedEvent | str:
    """One line (without its newline) as an event, or the reason it is not one (a short phrase).

    ``event_types``: the types accepted (the server passes ``execution.states.EVENT_TYPES``); None accepts
    any non-empty string.
    """
    try:
        record = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "not valid UTF-8 JSON"
    if not isinstance(record, dict):
        return "not a JSON object"
    event_type = record.get("type")
    if not isinstance(event_type, str) or not event_type or (event_types is not None and event_type not in event_types):
        return f"unknown event type {str(event_type)[:80]!r}"
    body = record.get("body", {})
    if not isinstance(body, dict):
        return "its body is not a JSON object"
    when = record.get("time")
    seconds = math.nan
    if isinstance(when, int | float) and not isinstance(when, bool):
        with contextlib.suppress(OverflowError):  # an int of 400 digits is valid JSON
            seconds = float(when)
    # an event without a usable time still counts: the server dates it
    return TailedEvent(event_type, body, seconds if math.isfinite(seconds) else None)


class EventTailer:
    """Reads new events from every event file of one folder, each from where the last read stopped.

    ``offsets``: where a previous tailer stopped (its :attr:`offsets`, as stored). ``event_types``: the event
    types accepted, others are skipped as unknown; the execution server passes ``EVENT_TYPES`` of
    ``openhcs_rules.execution.states`` (a parameter, not an import: ``progress`` sits below ``execution`` in
    the package's layers). None accepts any type.

    Not thread-safe: one tailer per run, used by one thread at a time.
    """

    def __init__(
        self,
        directory: str | Path,
        offsets: dict[str, int] | None = None,
        event_types: Collection[str] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.event_types = frozenset(event_types) if event_types is not None else None
        self._offsets: dict[str, int] = dict(offsets or {})
        # files whose offset sits inside an over-long line: the rest of it, up to its newline, is skipped
        self._skipping: set[str] = set()
        self._warned: set[str] = set()  # names already warned about (a stray file is named once, not per poll)
        #: lines skipped so far, by reason
        self.skipped_by_reason: collections.Counter[str] = collections.Counter()

    @property
    def offsets(self) -> dict[str, int]:
        """File name -> offset of its first unread byte: what to store with the events read so far."""
        return dict(self._offsets)

    @property
    def skipped(self) -> int:
        """How many lines were skipped (malformed, unknown, too long) since this tailer was made."""
        return sum(self.skipped_by_reason.values())

    def read_new(self, max_events: int = 10000) -> list[TailedEvent]:
        """The events written since the last call, at most ``max_events`` (call again for the rest).

        Events of different files are merged by their writers' time; each file's own order is kept.
        :attr:`offsets` afterwards covers exactly the events returned.
        """
        if max_events < 1:
            return []
        per_file: list[list[tuple[float, TailedEvent]]] = []
        count = 0
        for name in self._file_names():
            if count >= max_events:
                break
            events = self._read_file(name, max_events - count)
            count += len(events)
            keyed, last = [], -math.inf
            for event in events:  # an event without a time sorts with the one before it
                last = event.time if event.time is not None else last
                keyed.append((last, event))
            per_file.append(keyed)
        # a merge, not a sort: each file keeps its own order even where its writer's clock stepped back
        return [event for _, event in heapq.merge(*per_file, key=lambda item: item[0])]

    def _warn_once(self, name: str, message: str, *args: object) -> None:
        if name not in self._warned:
            self._warned.add(name)
            log.warning(message, *args)

    def _file_names(self) -> list[str]:
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []  # no writer has started yet
        except OSError as exc:
            self._warn_once("", "run events folder %s cannot be listed: %s", self.directory, exc)
            return []
        names = []
        for entry in entries:
            if not FILE_NAME.fullmatch(entry.name):
                self._warn_once(entry.name, "ignoring %s in %s: not an event file name", entry.name, self.directory)
                continue
            try:
                mode = entry.stat(follow_symlinks=False).st_mode  # lstat: a link is never followed
            except OSError:
                continue  # removed meanwhile
            if not stat.S_ISREG(mode):
                self._warn_once(entry.name, "ignoring %s in %s: not a regular file", entry.name, self.directory)
                continue
            names.append(entry.name)
        return sorted(names)

    def _open(self, name: str) -> int | None:
        path = self.directory / name
        try:
            # O_NOFOLLOW: the name may have become a link since lstat; O_NONBLOCK: or a FIFO (open would block)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                self._warn_once(name, "ignoring %s: cannot open it (%s)", path, exc)
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self._warn_once(name, "ignoring %s: not a regular file", path)
            return None
        return fd

    def _skip(self, name: str, reason: str) -> None:
        self.skipped_by_reason[reason] += 1
        log.warning("skipped a line of run events file %s: %s", self.directory / name, reason)

    def _read_file(self, name: str, budget: int) -> list[TailedEvent]:
        fd = self._open(name)
        if fd is None:
            return []
        try:
            return self._read_fd(fd, name, budget)
        finally:
            os.close(fd)

    def _read_fd(self, fd: int, name: str, budget: int) -> list[TailedEvent]:
        offset = self._offsets.get(name, 0)
        size = os.fstat(fd).st_size
        if size < offset:
            log.warning("run events file %s shrank below the offset read (%d): reading it again", name, offset)
            offset = 0
            self._skipping.discard(name)
        events: list[TailedEvent] = []
        pending = b""  # the start of a line whose newline is not read yet (at most MAX_LINE_BYTES)
        position = offset  # file position of the first byte after `pending`
        line_start = offset  # where `pending` starts in the file
        while len(events) < budget:
            block = os.pread(fd, BLOCK_BYTES, position)
            if not block:
                break
            position += len(block)
            data = pending + block
            base = line_start
            start = 0
            while len(events) < budget:
                newline = data.find(b"\n", start)
                if newline < 0:
                    break
                line = data[start:newline]
                if name in self._skipping:  # the tail of an over-long line: it ends here
                    self._skipping.discard(name)
                elif len(line) + 1 > MAX_LINE_BYTES:
                    self._skip(name, f"longer than {MAX_LINE_BYTES} bytes")
                elif line.strip():
                    parsed = parse_line(line, self.event_types)
                    if isinstance(parsed, str):
                        self._skip(name, parsed)
                    else:
                        events.append(parsed)
                start = newline + 1
                offset = base + start
            if len(events) >= budget:
                break  # `offset` is right after the last line consumed
            pending = data[start:]
            line_start = base + start
            if name in self._skipping or len(pending) >= MAX_LINE_BYTES:
                # an over-long line without its newline yet: drop what was read of it, remember to skip the rest
                if name not in self._skipping:
                    self._skip(name, f"longer than {MAX_LINE_BYTES} bytes")
                    self._skipping.add(name)
                pending = b""
                line_start = position
                offset = position
        self._offsets[name] = offset
        return events
