#!/usr/bin/env python3
"""Submit one Snakemake job script to PBS Pro / OpenPBS (or Torque) and print the job id.

Called by snakemake-executor-plugin-cluster-generic with the job script as its only argument: the job's
name, threads and resources come from the `# properties = {...}` line Snakemake writes into every job
script (the profile names this script alone, so Snakemake resolves it inside the profile folder from any
working directory). Standard library only: it runs on the login node with whatever python3 is there.

Dialects (environment variable OPENHCS_PBS_DIALECT):
  pro    (default) PBS Pro / OpenPBS: -l select=1:ncpus=N:mem=Mmb[:ngpus=G] -l walltime=HH:MM:SS
  torque Torque (and Slurm's Torque-compatible qsub): -l nodes=1:ppn=N,mem=Mmb,walltime=HH:MM:SS[,gpus=G]
OPENHCS_PBS_QUEUE and OPENHCS_PBS_ACCOUNT add -q and -A when set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def walltime(minutes: int) -> str:
    """PBS walltime from minutes: 90 -> '01:30:00'."""
    minutes = max(1, int(minutes))
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def qsub_command(
    name: str,
    threads: int,
    mem_mb: int,
    runtime_min: int,
    gpus: int,
    logs: str,
    jobscript: str,
    dialect: str = "pro",
    queue: str | None = None,
    account: str | None = None,
) -> list[str]:
    """The qsub argument list for one job."""
    threads, mem_mb, gpus = max(1, int(threads)), max(1, int(mem_mb)), max(0, int(gpus))
    if dialect == "pro":
        select = f"select=1:ncpus={threads}:mem={mem_mb}mb" + (f":ngpus={gpus}" if gpus else "")
        resources = ["-l", select, "-l", f"walltime={walltime(runtime_min)}"]
    elif dialect == "torque":
        spec = f"nodes=1:ppn={threads},mem={mem_mb}mb,walltime={walltime(runtime_min)}" + (
            f",gpus={gpus}" if gpus else ""
        )
        resources = ["-l", spec]
    else:
        raise ValueError(f"OPENHCS_PBS_DIALECT must be 'pro' or 'torque', not {dialect!r}")
    command = ["qsub", "-N", name[:200], *resources, "-o", f"{logs}/{name}.out", "-e", f"{logs}/{name}.err"]
    if queue:
        command += ["-q", queue]
    if account:
        command += ["-A", account]
    return command + [jobscript]


def job_properties(jobscript: str) -> dict:
    """The JSON properties Snakemake embeds in a job script (rule or group, threads, resources)."""
    with open(jobscript) as handle:
        for line in handle:
            if line.startswith("# properties = "):
                return json.loads(line[len("# properties = ") :])
    raise ValueError(f"{jobscript} has no '# properties = ' line: is it a Snakemake job script?")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", default="logs/pbs")
    parser.add_argument("jobscript")
    args = parser.parse_args(argv)
    props = job_properties(args.jobscript)
    resources = props.get("resources", {})
    label = props.get("rule") or props.get("groupid") or "group"
    name = f"smk.{label}.{props.get('jobid', '')}".rstrip(".")
    os.makedirs(args.logs, exist_ok=True)
    command = qsub_command(
        name,
        props.get("threads") or resources.get("_cores") or 1,
        resources.get("mem_mb") or 2000,
        resources.get("runtime") or 30,
        resources.get("gpu") or 0,
        args.logs,
        args.jobscript,
        os.environ.get("OPENHCS_PBS_DIALECT", "pro"),
        os.environ.get("OPENHCS_PBS_QUEUE"),
        os.environ.get("OPENHCS_PBS_ACCOUNT"),
    )
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"qsub failed ({done.returncode}): {done.stderr.strip()}\ncommand: {' '.join(command)}", file=sys.stderr)
        return done.returncode
    print(done.stdout.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
