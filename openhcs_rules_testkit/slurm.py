"""What a test's run submitted to the (real, single-node) Slurm: job ids and states from ``sacct``.

Used by the cluster tests and by the viewer rules' Slurm test; the cluster itself is started by the
``slurm`` fixture (tests/conftest.py, tests/integration/cluster/start_single_node.sh).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

#: snakemake-executor-plugin-slurm options that make a small test run see its jobs finish quickly
SLURM_FAST = ("--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2")


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
