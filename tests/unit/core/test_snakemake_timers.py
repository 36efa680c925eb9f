"""The workflow's exit hooks cancel the wake-up timer of Snakemake's own scheduler, and nothing else."""

from __future__ import annotations

import threading
import types

from snakemake.scheduling.job_scheduler import JobScheduler

from openhcs_rules.snakemake_timers import cancel_scheduler_wakeups, is_scheduler_wakeup


def _scheduler_wakeup(delay: float) -> threading.Timer:
    """Let Snakemake's real scheduler code start its wake-up timer (on a stand-in for the scheduler's state)."""
    before = set(threading.enumerate())
    state = types.SimpleNamespace(_open_jobs=threading.Semaphore(0))
    JobScheduler._schedule_reevalutation(state, delay)  # type: ignore[arg-type]
    (timer,) = [t for t in threading.enumerate() if t not in before]
    assert isinstance(timer, threading.Timer)
    return timer


def test_the_scheduler_wakeup_of_this_snakemake_is_recognised_and_cancelled() -> None:
    timer = _scheduler_wakeup(60)
    assert is_scheduler_wakeup(timer.function)
    assert cancel_scheduler_wakeups() >= 1
    timer.join(timeout=10)
    assert not timer.is_alive()  # the interpreter would otherwise wait 60 s for it at exit


def test_other_timers_are_left_alone() -> None:
    fired = threading.Event()
    other = threading.Timer(0.2, fired.set)
    other.start()
    cancel_scheduler_wakeups()
    assert not is_scheduler_wakeup(other.function)
    assert fired.wait(timeout=10)  # it still ran
