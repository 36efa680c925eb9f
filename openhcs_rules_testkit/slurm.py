"""What a test's run submitted to the (real, single-node) Slurm: job ids and states from ``sacct``.

Used by the cluster tests and by the viewer rules' Slurm test; the cluster itself is started by the
``slurm`` fixture (tests/conftest.py, tests/integration/cluster/start_single_node.sh).

Run as ``python -m openhcs_rules_testkit.slurm ARGS`` (what ``snakemake(..., module=SLURM_SNAKEMAKE)`` does),
this module is Snakemake's command line with the Slurm executor's status checks at most
``--seconds-between-status-checks`` apart: see :func:`cap_status_check_interval`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

#: snakemake-executor-plugin-slurm options that make a small test run see its jobs finish quickly
SLURM_FAST = ("--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2")
#: the module to run Snakemake through in Slurm tests (``snakemake(..., module=SLURM_SNAKEMAKE)``)
SLURM_SNAKEMAKE = "openhcs_rules_testkit.slurm"


def submissions_since(start_id: int, workdir: Path) -> list[tuple[str, str, str]]:
    """(id, state, cpus) of the jobs submitted after ``start_id`` from ``workdir``: only this test's run.

    The cluster is shared with anything else that submits at the same time (another test session), so
    jobs are told apart by the folder they were submitted from, not by their ids alone.
    """
    done = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State,AllocCPUS,WorkDir"], capture_output=True, text=True
    )
    rows = [line.split("|") for line in done.stdout.splitlines() if line.strip()]
    here = str(Path(workdir).resolve())
    return [
        (job, state, cpus)
        for job, state, cpus, folder in rows
        if job.isdigit() and int(job) > start_id and str(Path(folder).resolve()) == here
    ]


def last_job_id() -> int:
    """The highest job id ``sacct`` knows of (last day): what a test's later submissions are counted after."""
    done = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID", "-S", "now-1days"], capture_output=True, text=True)
    ids = [int(x) for x in done.stdout.split() if x.isdigit()]
    return max(ids, default=0)


def cap_status_check_interval() -> bool:
    """Keep a remote executor's wait between status checks at most ``--seconds-between-status-checks``.

    snakemake-executor-plugin-slurm (2.8) ignores that option: after every status check that finds no job
    finished it waits 10 s longer (1, 11, 21, ... s with ``--slurm-init-seconds-before-status-checks 1``,
    back to the initial wait once a job finishes), a good habit on a real cluster. A test's jobs take 6-12 s
    each, so every step of its run waited 12 s, or 33 s, for a job that was already done (5 steps: about a
    minute per run). Only the waiting changes: the same sbatch submissions, the same status command, the
    same results. False where the executor interface differs (the run is then slower, nothing else).
    """
    from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor

    interval = RemoteExecutor.__dict__.get("next_seconds_between_status_checks")
    if not isinstance(interval, property) or interval.fget is None or interval.fset is None:
        return False
    setter = interval.fset

    def capped(executor: Any, seconds: float | None) -> None:
        cap = executor.workflow.remote_execution_settings.seconds_between_status_checks
        setter(executor, seconds if seconds is None else min(seconds, cap))

    RemoteExecutor.next_seconds_between_status_checks = property(interval.fget, capped, interval.fdel, interval.__doc__)
    return True


if __name__ == "__main__":
    import sys

    from snakemake.cli import main

    cap_status_check_interval()
    sys.argv[0] = "snakemake"
    main()
