"""A run killed half-way and restarted redoes only the unfinished wells and ends as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from openhcs_rules_testkit.workflow import snakemake, snakemake_command, snakemake_env, write_config

pytestmark = pytest.mark.workflow

SPEC = {"wells": ["B02", "B03", "C02", "C03"], "sites": 2, "z_planes": 3, "size": 512, "seed": 9}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of the plate: what every resumed run must end up with (one for all parameters)."""
    folder = tmp_path_factory.mktemp("reference")
    config = write_config(folder, {"plates": {"demo": {"source": "synthetic", "synthetic": SPEC}}})
    assert snakemake(folder, config).returncode == 0
    return folder


@pytest.mark.parametrize("wells_per_job", [1, 4])
def test_killed_run_resumes_with_only_the_unfinished_wells(tmp_path, reference, wells_per_job):
    folder = tmp_path / "interrupted"
    folder.mkdir()
    config = write_config(
        folder, {"plates": {"demo": {"source": "synthetic", "synthetic": SPEC}}, "wells_per_job": wells_per_job}
    )
    wells = folder / "results" / "demo" / "wells"
    command = snakemake_command(folder, config, "--cores", "1")
    run = subprocess.Popen(
        command,
        cwd=folder,
        env=snakemake_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 180
    while time.time() < deadline and len(list(wells.glob("*/summary.json"))) < 2:
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGKILL)  # snakemake and its running job die at once, as in a crash
    run.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in wells.glob("*/summary.json")}
    assert 2 <= len(finished) < 4, finished
    assert not (folder / "results" / "demo" / "wells.csv").exists()

    assert snakemake(folder, config, "--unlock").returncode == 0  # a crash leaves Snakemake's lock behind
    done = snakemake(folder, config, "--rerun-incomplete")
    assert done.returncode == 0, done.stderr[-3000:]
    for well, mtime in finished.items():  # finished wells were not redone
        assert (wells / well / "summary.json").stat().st_mtime_ns == mtime
    if wells_per_job == 1:  # one job per unfinished well
        rerun = [
            line.split("chunk=")[1].strip()
            for line in done.stderr.splitlines()
            if "wildcards:" in line and "chunk=" in line
        ]
        # A kill between a well's summary.json and its job's manifest leaves that job incomplete: Snakemake
        # reruns it, and the job must skip the finished well rather than compute it again.
        for chunk in set(rerun) & set(finished):
            log = (folder / "logs" / "demo" / "chunks" / f"{chunk}.log").read_text()
            assert "already done" in log, log
        assert set(rerun) - set(finished) == {"B02", "B03", "C02", "C03"} - set(finished), rerun
    else:  # the one job of all four wells skips the finished ones
        log = (folder / "logs" / "demo" / "chunks" / "B02-C03.log").read_text()
        assert log.count("already done") == len(finished), log
    for name in ("objects.csv", "wells.csv"):
        assert (folder / "results" / "demo" / name).read_text() == (reference / "results" / "demo" / name).read_text()
    # whatever the killed job was writing (a temp images.zarr, say) did not survive the successful rerun
    assert [str(p) for p in (folder / "results").rglob(".*.tmp*")] == []
