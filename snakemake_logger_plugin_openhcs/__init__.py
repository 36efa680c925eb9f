"""Snakemake logger plugin ``openhcs`` (shipped by openhcs-rules): a run's workflow events for the execution server.

``snakemake --logger openhcs`` writes the main Snakemake process's job and progress events into the events
folder named by ``OPENHCS_RULES_EVENTS_DIR`` (the execution server sets it for the runs it starts). Without
that variable, and in a dry run, the plugin writes nothing. It never raises into Snakemake: a lost event must
not fail a screen. Snakemake finds the plugin by this top-level package name (snakemake-interface-logger-plugins
2.x imports every importable ``snakemake_logger_plugin_*`` package, in every Snakemake process: this module
stays cheap to import); the code lives in :mod:`openhcs_rules.progress.workflow_events`.
"""

from __future__ import annotations

from logging import LogRecord

from snakemake_interface_logger_plugins.base import LogHandlerBase

from openhcs_rules.progress.workflow_events import WorkflowEventRecorder

__all__ = ["LogHandler"]


class LogHandler(LogHandlerBase):
    """Forwards Snakemake's records to :class:`WorkflowEventRecorder`; no output of its own on stream or file."""

    def __post_init__(self) -> None:
        # a dry run logs job_info for jobs it does not run: nothing to record
        dry_run = bool(getattr(self.common_settings, "dryrun", False))
        self.recorder = None if dry_run else WorkflowEventRecorder.from_env()

    def emit(self, record: LogRecord) -> None:
        if self.recorder is None:
            return
        try:
            self.recorder.handle(record)  # catches its own failures; this is for the unforeseen
        except Exception:  # noqa: BLE001 - a logging failure must not fail the run
            self.recorder = None

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
        super().close()

    @property
    def writes_to_stream(self) -> bool:
        return False  # Snakemake keeps its own console output

    @property
    def writes_to_file(self) -> bool:
        return False  # not a log file (Snakemake would list it as one and expect a baseFilename)

    @property
    def has_filter(self) -> bool:
        # its own "filter" is to read only event records: Snakemake's default filter would drop some of them
        # under --quiet (progress, rules) and `workflow_started` under --quiet host
        return True

    @property
    def has_formatter(self) -> bool:
        return True  # it formats nothing: events are written from the records' fields

    @property
    def needs_rulegraph(self) -> bool:
        return False
