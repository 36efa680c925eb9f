#!/usr/bin/env python3
"""Print 'running', 'success' or 'failed' for a PBS job id (cluster-generic's status command).

Reads `qstat -x -f ID` (PBS Pro / OpenPBS: finished jobs stay visible with -x) and falls back to
`qstat -f ID` (Torque, which keeps completed jobs for keep_completed seconds). States:
  Q H W T S R E B U M X(sub-job) -> running;   F (PBS Pro) or C (Torque) -> finished;
a finished job succeeded when its Exit_status / exit_status is 0. Slurm's Torque-compatible qstat
shows no exit status: then `sacct` (present wherever that wrapper is) gives the answer.
A job qstat no longer knows is reported 'success': Snakemake then checks that its outputs exist and
fails the job if they do not, so nothing incomplete is accepted.
Standard library only.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

RUNNING_STATES = set("QHWTSREBUMX")
FINISHED_STATES = {"F", "C"}


def parse_qstat_full(text: str) -> dict[str, str]:
    """Key/value pairs of `qstat -f` output (continuation lines joined; keys lower-cased)."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if "=" in line and re.match(r"^\s+[A-Za-z_.]+\s*=", line):
            key, value = line.split("=", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
        elif key and line.startswith("\t") and line.strip():
            fields[key] += line.strip()
    return fields


def status_from_fields(fields: dict[str, str]) -> str | None:
    """'running' / 'success' / 'failed', or None when the job finished but no exit status is shown."""
    state = fields.get("job_state", "").strip()[:1]
    if state in RUNNING_STATES:
        return "running"
    if state in FINISHED_STATES:
        exit_status = fields.get("exit_status")
        if exit_status is None:
            return None
        return "success" if exit_status.strip() == "0" else "failed"
    return "failed" if state else None


def sacct_status(job_id: str) -> str:
    done = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True)
    state = done.stdout.strip().split("|")[0].split()[0] if done.stdout.strip() else ""
    if state in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED", ""):
        return "running"
    return "success" if state == "COMPLETED" else "failed"


def job_status(job_id: str) -> str:
    for command in (["qstat", "-x", "-f", job_id], ["qstat", "-f", job_id]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode == 0 and "job_state" in done.stdout:
            status = status_from_fields(parse_qstat_full(done.stdout))
            if status is not None:
                return status
            if shutil.which("sacct"):
                return sacct_status(job_id)
            return "success"
    return "success"


if __name__ == "__main__":
    print(job_status(sys.argv[1].strip().split()[0]))
