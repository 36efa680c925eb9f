"""End a finished Snakemake run when its last job ends, not a second later.

After every scheduling pass, Snakemake's scheduler starts a ``threading.Timer`` (not a daemon thread) that wakes
it again once the job rate limiter's timespan has passed (``--max-jobs-per-timespan``, default ``100/1s``).
When the last job is done the scheduler returns, but the interpreter still waits for the last of those timers
before it exits: every run, however small, ended 1.0 s after its last job (measured with strace on the bench
plate: the last job's exit, then one idle second, then Snakemake's). A dry run has no rate limiter and no wait.

The workflow's ``onsuccess`` and ``onerror`` hooks, which Snakemake calls after its scheduler has returned (there
is nothing left to schedule), cancel these timers. Only the scheduler's own are touched; a Snakemake whose timer
is named differently is left as it is (the run then just ends a second later, as before).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

#: the module and method (Snakemake spells it ``_schedule_reevalutation``) whose timers wake the scheduler
SCHEDULER_MODULE = "snakemake.scheduling.job_scheduler"
REEVALUATION_METHOD_PREFIX = "JobScheduler._schedule_reev"


def is_scheduler_wakeup(function: Callable[..., Any] | None) -> bool:
    """True for the callback of a timer Snakemake's scheduler set to wake itself."""
    qualname = getattr(function, "__qualname__", "")
    return getattr(function, "__module__", None) == SCHEDULER_MODULE and qualname.startswith(REEVALUATION_METHOD_PREFIX)


def cancel_scheduler_wakeups() -> int:
    """Cancel every pending scheduler wake-up timer of this process; returns how many there were.

    Call it only once the scheduler has returned (``onsuccess`` / ``onerror``): while it runs, a cancelled
    wake-up could delay a job held back by the rate limiter.
    """
    cancelled = 0
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer) and is_scheduler_wakeup(thread.function):
            thread.cancel()
            cancelled += 1
    return cancelled
