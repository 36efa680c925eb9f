"""Run events through the real Snakemake CLI: ``--logger openhcs`` (the workflow's jobs and progress) and the
chunk jobs (their wells), written into the folder named by OPENHCS_RULES_EVENTS_DIR, as the execution server
starts a run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from openhcs_rules.execution.states import EVENT_TYPES
from openhcs_rules.progress.files import EVENTS_DIR_ENV, EVENTS_SUBDIR
from openhcs_rules_testkit.workflow import snakemake, snakemake_env, write_config

pytestmark = pytest.mark.workflow

WELLS = ["B02", "B03", "C02"]
SCREEN = {
    "plates": {
        "demo": {
            "source": "synthetic",
            "synthetic": {"wells": WELLS, "sites": 1, "channels": 1, "z_planes": 1, "size": 96},
        }
    },
    "wells_per_job": 2,
}


def _events(folder: Path, prefix: str) -> list[dict[str, Any]]:
    """The events of the files ``<prefix>-<host>-<pid>.jsonl``, file by file (each file in its own order)."""
    return [
        json.loads(line) for path in sorted(folder.glob(f"{prefix}-*.jsonl")) for line in path.read_text().splitlines()
    ]


def test_a_run_writes_its_job_progress_and_well_events(tmp_path):
    events_dir = tmp_path / EVENTS_SUBDIR
    config = write_config(tmp_path, SCREEN)
    done = snakemake(tmp_path, config, "--logger", "openhcs", env={EVENTS_DIR_ENV: str(events_dir)})
    assert done.returncode == 0, done.stderr[-3000:]

    workflow = _events(events_dir, "workflow")
    assert len(list(events_dir.glob("workflow-*.jsonl"))) == 1  # the main Snakemake process only
    assert workflow[0]["type"] == "workflow_started"
    assert {event["type"] for event in workflow} <= EVENT_TYPES - {"job_error"}
    started = {e["body"]["jobid"]: e["body"] for e in workflow if e["type"] == "job_started"}
    finished = [e["body"]["jobid"] for e in workflow if e["type"] == "job_finished"]
    assert sorted(finished) == sorted(started)  # a job_started and a job_finished per job
    for event in workflow:  # each job's start comes before its end
        if event["type"] == "job_finished":
            assert workflow.index(event) > next(
                i
                for i, e in enumerate(workflow)
                if e["type"] == "job_started" and e["body"]["jobid"] == event["body"]["jobid"]
            )
    chunks = sorted(body["wildcards"]["chunk"] for body in started.values() if body["rule"] == "process_wells")
    assert chunks == ["B02-B03", "C02"]
    assert all(body["wildcards"].get("plate") == "demo" for body in started.values() if body["rule"] == "process_wells")
    progress = [e["body"] for e in workflow if e["type"] == "progress"]
    assert progress[-1] == {"done": len(started), "total": len(started)}
    assert [p["done"] for p in progress] == sorted(p["done"] for p in progress)

    jobs = _events(events_dir, "job")
    assert len(list(events_dir.glob("job-*.jsonl"))) == 2  # one file per chunk job
    assert {event["type"] for event in jobs} == {"well_started", "well_finished"}
    for well in WELLS:
        mine = [e["body"] for e in jobs if e["body"]["well"] == well]
        assert [e["type"] for e in jobs if e["body"]["well"] == well] == ["well_started", "well_finished"], well
        summary = json.loads((tmp_path / "results" / "demo" / "wells" / well / "summary.json").read_text())
        assert mine[1] == {
            "plate": "demo",
            "well": well,
            "objects": summary["n_objects"],
            "seconds": mine[1]["seconds"],
        }


SNAKEFILE = """
rule all:
    input: "out/a.txt", "out/b.txt"

rule make:
    output: "out/{name}.txt"
    shell: "if [ {wildcards.name} = b ]; then echo broken >&2; exit 3; fi; echo ok > {output}"
"""


def test_a_failed_job_says_why_and_a_run_without_the_variable_writes_nothing(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    events_dir = tmp_path / "events"
    command = [sys.executable, "-m", "snakemake", "--cores", "1", "--logger", "openhcs"]
    failed = subprocess.run(
        command, cwd=tmp_path, env=snakemake_env({EVENTS_DIR_ENV: str(events_dir)}), capture_output=True, text=True
    )
    assert failed.returncode != 0
    workflow = _events(events_dir, "workflow")
    (error,) = [e["body"] for e in workflow if e["type"] == "job_error"]
    assert error["rule"] == "make" and "exit status 3" in error["message"]
    started = [e["body"] for e in workflow if e["type"] == "job_started"]
    assert {"jobid": error["jobid"], "rule": "make", "wildcards": {"name": "b"}} in started

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "Snakefile").write_text(SNAKEFILE.replace("exit 3", "echo fixed"))
    env = snakemake_env()
    env.pop(EVENTS_DIR_ENV, None)
    done = subprocess.run(command, cwd=plain, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (plain / ".openhcs").exists() and sorted(p.name for p in plain.iterdir()) == [
        ".snakemake",
        "Snakefile",
        "out",
    ]
