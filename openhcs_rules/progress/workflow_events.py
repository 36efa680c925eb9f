"""Snakemake's log records as run events: the work of the logger plugin ``openhcs``.

``snakemake --logger openhcs`` hands every record the main Snakemake process logs to
:class:`WorkflowEventRecorder` (the plugin, package ``snakemake_logger_plugin_openhcs``, only forwards). A
record Snakemake means as an event carries its kind in ``record.event`` (a ``LogEvent`` of
snakemake-interface-logger-plugins 2.x, a ``str`` enum: compared here by value, so this module imports no
Snakemake) and its fields as attributes (``logger.info(msg, extra={...})``). The kinds read here:

- ``workflow_started`` (``workflow_id``, ``snakemake_version``): ``workflow_started`` {workflow_id?,
  snakemake_version?}
- ``job_started`` (``jobs``: ids): no event (see below)
- ``job_info`` (``jobid``, ``rule_name``, ``wildcards``): ``job_started`` {jobid, rule, wildcards}
- ``job_finished`` (``job_id``): ``job_finished`` {jobid}
- ``job_error`` (``jobid``, ``rule_name``, ``rule_msg``): ``job_error`` {jobid, rule?, message?}
- ``progress`` (``done``, ``total``): ``progress`` {done, total}
- ``error`` (its message): no event; the ``message`` of the ``job_error`` that follows

When a job starts, Snakemake logs ``job_started`` with the ids of the jobs it is starting, and only then one
``job_info`` per job with its rule and wildcards (measured, Snakemake 9.27). The run event ``job_started`` is
written at ``job_info``, once per job, with everything known: a client never has to join two events. The
``job_started`` record itself adds nothing (and a group job's id there is the group's uuid, not a job's id:
its member jobs come with their own ``job_info``). Should a job finish or fail with no ``job_info`` seen since
it last started, its ``job_started`` is written just before, with the rule if the record names it (else
``""``) and no wildcards, so every ``job_finished``/``job_error`` follows a ``job_started`` of its job. A job
retried by ``--retries`` gets a ``job_started`` per attempt (Snakemake logs a ``job_info`` per attempt), and a
``job_error`` per failed attempt.

A local job's error text is not in its ``job_error`` record: Snakemake logs it just before, as an ``error``
record (the exception, e.g. the shell command's exit status). It becomes the ``message`` of the
``job_error`` that follows; a ``workflow_started``, ``job_info``, ``job_finished`` or ``progress`` record in
between drops it (it was not that job's). A remote executor's own ``msg`` (the ``rule_msg`` field, e.g. a
Slurm state) wins. Messages are clipped (:func:`~.bodies.clip_text`). A dry run logs ``job_info`` for jobs it
does not run: the plugin records nothing in a dry run.
"""

from __future__ import annotations

import logging
from typing import Any

from openhcs_rules.progress.bodies import as_int, clip_text, string_map
from openhcs_rules.progress.files import EventWriter

log = logging.getLogger(__name__)

#: the events folder's file prefix for the Snakemake process's events
SOURCE = "workflow"

#: Snakemake's event kinds (the values of ``snakemake_interface_logger_plugins.common.LogEvent``) read here
WORKFLOW_STARTED = "workflow_started"
JOB_STARTED = "job_started"
JOB_INFO = "job_info"
JOB_FINISHED = "job_finished"
JOB_ERROR = "job_error"
PROGRESS = "progress"
ERROR = "error"

#: a run event: its type and its body
RunEvent = tuple[str, dict[str, Any]]


def event_kind(record: logging.LogRecord) -> str | None:
    """The Snakemake event kind of a record (``"job_info"``...), or None for a plain log message."""
    kind = getattr(record, "event", None)
    if kind is None:
        return None
    return str(getattr(kind, "value", kind))


def record_message(record: logging.LogRecord) -> str:
    """The record's message text (its ``msg`` with its ``args``), clipped; ``""`` when it has none."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a message whose arguments do not format is no reason to fail
        message = str(record.msg)
    return "" if message == "None" else clip_text(message)


def workflow_started_body(record: logging.LogRecord) -> dict[str, Any]:
    """``workflow_started``: Snakemake's id of this run of the workflow and its version, where given."""
    body = {}
    for field in ("workflow_id", "snakemake_version"):
        value = getattr(record, field, None)
        if value is not None:
            body[field] = clip_text(value, 200)
    return body


def job_started_body(record: logging.LogRecord) -> dict[str, Any] | None:
    """``job_started`` from a ``job_info`` record: the job's id, rule and wildcards (None without an id)."""
    jobid = as_int(getattr(record, "jobid", None))
    if jobid is None:
        return None
    rule = getattr(record, "rule_name", None)
    return {"jobid": jobid, "rule": str(rule or ""), "wildcards": string_map(getattr(record, "wildcards", None))}


def job_finished_body(record: logging.LogRecord) -> dict[str, Any] | None:
    """``job_finished`` from a ``job_finished`` record (its id field is ``job_id``, not ``jobid``)."""
    jobid = as_int(getattr(record, "job_id", None))
    return None if jobid is None else {"jobid": jobid}


def job_error_body(record: logging.LogRecord, error: str | None = None) -> dict[str, Any] | None:
    """``job_error`` from a ``job_error`` record; ``error``: the text of the ``error`` record just before."""
    jobid = as_int(getattr(record, "jobid", None))
    if jobid is None:
        return None
    body: dict[str, Any] = {"jobid": jobid}
    rule = getattr(record, "rule_name", None)
    if rule:
        body["rule"] = str(rule)
    own = getattr(record, "rule_msg", None)
    message = clip_text(own) if own else error
    if message:
        body["message"] = message
    return body


def progress_body(record: logging.LogRecord) -> dict[str, Any] | None:
    """``progress``: jobs done and the jobs of the whole run (None when a count is missing)."""
    done, total = as_int(getattr(record, "done", None)), as_int(getattr(record, "total", None))
    return None if done is None or total is None else {"done": done, "total": total}


class WorkflowEvents:
    """Snakemake's records, in the order they are logged, as run events (the little state this needs)."""

    def __init__(self) -> None:
        self._running: set[int] = set()  # jobs with a job_started written and no job_finished/job_error since
        self._error: str | None = None  # the text of an `error` record, for the `job_error` that follows it

    def translate(self, record: logging.LogRecord) -> list[RunEvent]:
        """The run events of one record: none, one, or (a job ending unseen) its ``job_started`` and its end."""
        kind = event_kind(record)
        if kind is None or kind == JOB_STARTED:
            return []
        if kind == ERROR:
            self._error = record_message(record) or None
            return []
        error, self._error = self._error, None
        if kind == WORKFLOW_STARTED:
            return [("workflow_started", workflow_started_body(record))]
        if kind == JOB_INFO:
            body = job_started_body(record)
            if body is None:
                return []
            self._running.add(body["jobid"])
            return [("job_started", body)]
        if kind == JOB_FINISHED:
            body = job_finished_body(record)
            return [] if body is None else [*self._ended(body["jobid"], ""), ("job_finished", body)]
        if kind == JOB_ERROR:
            body = job_error_body(record, error)
            return [] if body is None else [*self._ended(body["jobid"], body.get("rule", "")), ("job_error", body)]
        if kind == PROGRESS:
            body = progress_body(record)
            return [] if body is None else [("progress", body)]
        return []

    def _ended(self, jobid: int, rule: str) -> list[RunEvent]:
        """The job ends: nothing more to say if its start was written, else its ``job_started`` now."""
        if jobid in self._running:
            self._running.discard(jobid)
            return []
        return [("job_started", {"jobid": jobid, "rule": rule, "wildcards": {}})]


class WorkflowEventRecorder:
    """Writes the run events of the records Snakemake logs; never raises into the caller (Snakemake's logging).

    A failure in here (a record shaped in a way this code did not foresee) is logged once and the recorder goes
    quiet: a lost event must never fail a screen.
    """

    def __init__(self, writer: EventWriter) -> None:
        self.writer = writer
        self.events = WorkflowEvents()
        self._broken = False

    @classmethod
    def from_env(cls) -> WorkflowEventRecorder | None:
        """A recorder for the events folder the execution server named, or None (a plain ``snakemake`` run)."""
        writer = EventWriter.from_env(SOURCE)
        return cls(writer) if writer is not None else None

    def handle(self, record: logging.LogRecord) -> None:
        """Write the run events of one record (most records have none)."""
        if self._broken:
            return
        try:
            for event_type, body in self.events.translate(record):
                self.writer.emit(event_type, **body)
        except Exception as exc:  # noqa: BLE001 - events are a side effect; the run goes on without them
            self._broken = True
            log.warning("run events are no longer recorded (%s: %s)", type(exc).__name__, exc)

    def close(self) -> None:
        try:
            self.writer.close()
        except OSError:
            pass
