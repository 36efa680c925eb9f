"""Snakemake's log records as run events: the translation, its writer, and the logger plugin ``openhcs`` inside
Snakemake's own logging set-up.

The records are made the way Snakemake makes them: ``logger.info(msg, extra=dict(event=LogEvent..., ...))``
with the fields Snakemake 9.27 passes (snakemake/jobs.py, scheduling/job_scheduler.py, workflow.py,
exceptions.py), then through a ``QueueHandler`` as Snakemake's LoggerManager sends them to plugins.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import uuid
from pathlib import Path
from typing import Any

import pytest
from snakemake_interface_logger_plugins.common import LogEvent
from snakemake_interface_logger_plugins.settings import LogHandlerSettingsBase
from snakemake_interface_logger_plugins.tests import TestLogHandlerBase

from openhcs_rules.execution.states import EVENT_TYPES
from openhcs_rules.progress.bodies import MAX_MESSAGE_CHARS, clip_text
from openhcs_rules.progress.files import EVENTS_DIR_ENV, MAX_LINE_BYTES, EventWriter
from openhcs_rules.progress.workflow_events import WorkflowEventRecorder, WorkflowEvents
from snakemake_logger_plugin_openhcs import LogHandler


def snakemake_records(*calls: tuple[int, Any, dict[str, Any]]) -> list[logging.LogRecord]:
    """Each ``(level, msg, extra)`` logged as Snakemake logs it, as a plugin receives it (queued, prepared)."""
    logger = logging.getLogger(f"snakemake-test-{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    logger.addHandler(logging.handlers.QueueHandler(records))
    for level, msg, extra in calls:
        logger.log(level, msg, extra=extra)
    return [records.get_nowait() for _ in calls]


INFO, ERROR = logging.INFO, logging.ERROR


def workflow_started() -> tuple[int, Any, dict[str, Any]]:
    header = {"snakemake_version": "9.27.1", "host": "node1", "workflow_id": uuid.uuid4(), "configfiles": ["a.yaml"]}
    return INFO, "Workflow has started!", dict(event=LogEvent.WORKFLOW_STARTED, **header, quietness="host")


def job_started(*jobids: int | str) -> tuple[int, Any, dict[str, Any]]:
    return INFO, f"Execute {len(jobids)} jobs...", dict(event=LogEvent.JOB_STARTED, jobs=list(jobids))


def job_info(jobid: int, rule: str, **wildcards: Any) -> tuple[int, Any, dict[str, Any]]:
    extra = dict(
        event=LogEvent.JOB_INFO,
        jobid=jobid,
        rule_msg=None,
        rule_name=rule,
        local=False,
        input=["results/demo/plate.json"],
        output=[f"results/demo/chunks/{wildcards.get('chunk', 'x')}.json"],
        log=["logs/demo/chunks/x.log"],
        benchmark=None,
        wildcards=wildcards,
        reason="Missing output files",
        resources={"mem_mb": 1000},
        priority=0,
        threads=1,
        indent=False,
        is_checkpoint=False,
        printshellcmd=True,
        is_handover=False,
        shellcmd="openhcs-rules process-wells ...",
    )
    return INFO, f" Rule: {rule}, Jobid: {jobid}", extra


def job_finished(jobid: int) -> tuple[int, Any, dict[str, Any]]:
    return INFO, f"Finished jobid: {jobid} (Rule: r)", dict(event=LogEvent.JOB_FINISHED, job_id=jobid)


def progress(done: int, total: int) -> tuple[int, Any, dict[str, Any]]:
    return INFO, None, dict(event=LogEvent.PROGRESS, done=done, total=total)


def error(text: str) -> tuple[int, Any, dict[str, Any]]:
    return ERROR, text, dict(event=LogEvent.ERROR, exception="CalledProcessError")


def job_error(jobid: int, rule: str, msg: str | None = None) -> tuple[int, Any, dict[str, Any]]:
    extra: dict[str, Any] = dict(
        rule_name=rule,
        rule_msg=msg,
        jobid=jobid,
        input=[],
        output=[],
        log=["logs/x.log"],
        conda_env=None,
        container_img=None,
        aux={},
        indent=False,
        shellcmd="false",
        event=LogEvent.JOB_ERROR,
    )
    return ERROR, f"Error in rule {rule}, jobid: {jobid}", extra


def translate(*calls: tuple[int, Any, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    events = WorkflowEvents()
    return [event for record in snakemake_records(*calls) for event in events.translate(record)]


def read_events(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.read_text().splitlines()]


def test_a_run_s_records_become_its_events_with_job_started_written_at_job_info():
    events = translate(
        workflow_started(),
        (INFO, "Building DAG of jobs...", {}),  # a plain message: no event
        job_started(1, 2),  # before the jobs' job_info: nothing yet
        job_info(1, "process_wells", plate="demo", chunk="B02-B03"),
        job_info(2, "process_wells", plate="demo", chunk="C02"),
        job_finished(2),
        progress(1, 3),
        job_finished(1),
        progress(2, 3),
        job_started(0),
        job_info(0, "all"),
        job_finished(0),
        progress(3, 3),
    )
    assert [kind for kind, _ in events] == [
        "workflow_started",
        "job_started",
        "job_started",
        "job_finished",
        "progress",
        "job_finished",
        "progress",
        "job_started",
        "job_finished",
        "progress",
    ]
    assert events[0][1]["snakemake_version"] == "9.27.1" and uuid.UUID(events[0][1]["workflow_id"])
    assert events[1][1] == {"jobid": 1, "rule": "process_wells", "wildcards": {"plate": "demo", "chunk": "B02-B03"}}
    assert events[3][1] == {"jobid": 2}
    assert events[-1][1] == {"done": 3, "total": 3}
    assert {kind for kind, _ in events} <= EVENT_TYPES


def test_a_local_job_s_error_text_comes_from_the_error_record_before_it():
    text = (
        "RuleException:\nCalledProcessError in file Snakefile, line 7:\nCommand 'false' returned non-zero exit status 1"
    )
    events = translate(job_started(3), job_info(3, "discover", plate="p"), error(text), job_error(3, "discover"))
    assert events[-1] == ("job_error", {"jobid": 3, "rule": "discover", "message": text})


def test_an_executor_s_own_message_wins_and_an_unrelated_error_is_not_attached():
    own = translate(error("something else"), job_error(4, "process_wells", "SLURM-job '17' failed: OUT_OF_MEMORY"))
    assert own[-1][1]["message"] == "SLURM-job '17' failed: OUT_OF_MEMORY"
    # an error record, then other events: it was not this job's
    stale = translate(job_info(5, "r"), error("workflow error"), progress(0, 2), job_error(5, "r"))
    assert stale[-1] == ("job_error", {"jobid": 5, "rule": "r"})


def test_a_job_ending_with_no_job_info_seen_gets_its_job_started_first():
    events = translate(job_started(7), job_finished(7), job_error(8, "assemble_plate"))
    assert events == [
        ("job_started", {"jobid": 7, "rule": "", "wildcards": {}}),
        ("job_finished", {"jobid": 7}),
        ("job_started", {"jobid": 8, "rule": "assemble_plate", "wildcards": {}}),
        ("job_error", {"jobid": 8, "rule": "assemble_plate"}),
    ]


def test_a_retried_job_starts_again_and_each_failed_attempt_is_an_error():
    events = translate(
        job_info(3, "r", s="c"), error("exit 3"), job_error(3, "r"), job_info(3, "r", s="c"), job_finished(3)
    )
    assert [kind for kind, _ in events] == ["job_started", "job_error", "job_started", "job_finished"]


def test_bodies_are_json_safe_and_bounded():
    long = "x" * 100_000
    events = translate(
        job_started("2f0c-group-uuid"),  # a group job's id: not a job's, nothing to say
        job_info(1, "r", plate=Path("p"), n=3, big=long),
        error(long),
        job_error(1, "r"),
    )
    started, failed = events[0][1], events[1][1]
    assert started["wildcards"]["plate"] == "p" and started["wildcards"]["n"] == "3"
    assert len(started["wildcards"]["big"]) < 1000
    assert len(failed["message"]) < MAX_MESSAGE_CHARS + 100 and "characters cut" in failed["message"]
    for kind, body in events:
        assert len(json.dumps({"type": kind, "body": body})) < MAX_LINE_BYTES
    assert clip_text("head" + "-" * 10_000 + "tail", 100).startswith("head")
    assert clip_text("head" + "-" * 10_000 + "tail", 100).endswith("tail")


def test_records_of_unforeseen_shapes_are_skipped_not_raised():
    records = snakemake_records(
        (INFO, None, dict(event=LogEvent.JOB_INFO, jobid=None, rule_name="r")),
        (INFO, None, dict(event=LogEvent.JOB_FINISHED)),
        (INFO, None, dict(event=LogEvent.PROGRESS, done="?", total=3)),
        (INFO, None, dict(event=LogEvent.JOB_INFO, jobid=True, wildcards=["not", "a", "map"])),
        (INFO, None, dict(event=LogEvent.RULEGRAPH, rulegraph={})),
        (INFO, None, dict(event="not_a_snakemake_event")),
    )
    events = WorkflowEvents()
    assert [e for record in records for e in events.translate(record)] == []


def test_the_recorder_writes_lines_and_goes_quiet_rather_than_raise(tmp_path, monkeypatch):
    monkeypatch.setenv(EVENTS_DIR_ENV, str(tmp_path / "events"))
    recorder = WorkflowEventRecorder.from_env()
    assert recorder is not None
    for record in snakemake_records(workflow_started(), job_info(1, "r", s="a"), job_finished(1)):
        recorder.handle(record)
    recorder.close()
    lines = read_events(tmp_path / "events")
    assert [line["type"] for line in lines] == ["workflow_started", "job_started", "job_finished"]
    assert recorder.writer.path.name.startswith("workflow-")

    def broken(record: logging.LogRecord) -> list[tuple[str, dict[str, Any]]]:
        raise RuntimeError("unforeseen")

    monkeypatch.setattr(recorder.events, "translate", broken)
    recorder.handle(snakemake_records(progress(1, 1))[0])  # logged once, no exception
    recorder.handle(snakemake_records(progress(1, 1))[0])
    monkeypatch.delenv(EVENTS_DIR_ENV)
    assert WorkflowEventRecorder.from_env() is None


def _manager(tmp_path: Path, dryrun: bool = False):
    """Snakemake's own LoggerManager with the plugin ``openhcs`` (found by Snakemake's plugin registry)."""
    from snakemake.logging import LoggerManager
    from snakemake.settings.types import OutputSettings

    logger = logging.getLogger(f"snakemake-manager-{uuid.uuid4().hex}")
    logger.propagate = False
    settings = OutputSettings(dryrun=dryrun, log_handler_settings={"openhcs": LogHandlerSettingsBase()})
    return logger, LoggerManager(logger, settings)


@pytest.mark.parametrize("dryrun", [False, True])
def test_the_plugin_in_snakemake_s_logging_writes_the_events_and_nothing_in_a_dry_run(tmp_path, monkeypatch, dryrun):
    monkeypatch.setenv(EVENTS_DIR_ENV, str(tmp_path / "events"))
    logger, manager = _manager(tmp_path, dryrun)
    try:
        assert [type(h) for h in manager.get_log_handlers()] == [LogHandler]
        for level, msg, extra in (
            workflow_started(),
            job_started(1),
            job_info(1, "r"),
            job_finished(1),
            progress(1, 1),
        ):
            logger.log(level, msg, extra=extra)
    finally:
        manager.stop()  # drains the queue, closes the plugin's handler
    written = [line["type"] for line in read_events(tmp_path / "events")]
    assert written == ([] if dryrun else ["workflow_started", "job_started", "job_finished", "progress"])


def test_without_the_variable_the_plugin_writes_nothing_and_never_raises(tmp_path, monkeypatch):
    monkeypatch.delenv(EVENTS_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    logger, manager = _manager(tmp_path)
    handler = manager.get_log_handlers()[0]
    assert isinstance(handler, LogHandler) and handler.recorder is None
    try:
        logger.log(*workflow_started()[:2], extra=workflow_started()[2])
    finally:
        manager.stop()
    assert list(tmp_path.iterdir()) == []


def test_a_write_failure_does_not_reach_snakemake(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the events folder should be")
    monkeypatch.setenv(EVENTS_DIR_ENV, str(blocker / "events"))
    handler = LogHandler(common_settings=MockSettings(), settings=None)
    for record in snakemake_records(workflow_started(), job_info(1, "r"), progress(1, 1)):
        handler.emit(record)  # the writer logs once and stops; nothing raised
    assert isinstance(handler.recorder, WorkflowEventRecorder) and not (blocker / "events").exists()
    handler.close()


class MockSettings:
    """What a plugin is given as Snakemake's output settings (snakemake_interface_logger_plugins.tests's mock)."""

    printshellcmds = True
    nocolor = False
    quiet = None
    debug_dag = False
    verbose = False
    show_failed_logs = True
    stdout = False
    dryrun = False


class TestOpenhcsLogHandler(TestLogHandlerBase):
    """The interface package's own checks of a logger plugin, with an events folder set."""

    __test__ = True

    @pytest.fixture(autouse=True)
    def _events_dir(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(EVENTS_DIR_ENV, str(tmp_path / "events"))

    def get_log_handler_cls(self) -> type[LogHandler]:
        return LogHandler

    def get_log_handler_settings(self) -> LogHandlerSettingsBase:
        return LogHandlerSettingsBase()


def test_an_event_writer_line_is_what_the_recorder_wrote(tmp_path):
    writer = EventWriter(tmp_path, "workflow")
    recorder = WorkflowEventRecorder(writer)
    recorder.handle(snakemake_records(job_info(12, "assemble_plate", plate="demo"))[0])
    recorder.close()
    (line,) = read_events(tmp_path)
    assert line["type"] == "job_started" and isinstance(line["time"], float)
    assert line["body"] == {"jobid": 12, "rule": "assemble_plate", "wildcards": {"plate": "demo"}}
