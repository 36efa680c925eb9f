"""Cluster profiles against a real single-node Slurm: results equal a local run; scheduler faults recover."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from openhcs_rules_testkit.slurm import SLURM_FAST, SLURM_SNAKEMAKE, last_job_id, submissions_since
from openhcs_rules_testkit.workflow import REPO, snakemake, snakemake_command, snakemake_env, write_config

pytestmark = pytest.mark.workflow

SMALL = {"wells": ["B02", "B03", "C02"], "sites": 1, "z_planes": 2, "size": 256, "seed": 5}
OTHER_RULES = ("generate_synthetic_plate", "discover", "estimate_illumination", "assemble_plate")
#: cluster-generic checks every job's status every --seconds-between-status-checks (Snakemake's default 10 s,
#: which made each of the run's 5 steps wait about 10 s for a job that had finished in 3-5 s)
PBS_FAST = ("--seconds-between-status-checks", "1")


def _outputs(folder: Path, plate: str = "demo") -> dict[str, str]:
    out = folder / "results" / plate
    return {name: (out / name).read_text() for name in ("wells.csv", "objects.csv")}


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("local")
    config = write_config(folder, {"plates": {"demo": {"source": "synthetic", "synthetic": SMALL}}})
    done = snakemake(folder, config)
    assert done.returncode == 0, done.stderr[-3000:]
    return _outputs(folder)


def test_slurm_profile_gives_the_local_results(slurm, tmp_path, local_reference):
    # 2 wells per job: 3 wells -> 2 well submissions (B02-B03, C02)
    screen = {"plates": {"demo": {"source": "synthetic", "synthetic": SMALL}}, "wells_per_job": 2}
    config = write_config(tmp_path, screen)
    before = last_job_id()
    slurm_profile = ("--profile", str(REPO / "profiles" / "slurm"))
    done = snakemake(tmp_path, config, *slurm_profile, *SLURM_FAST, module=SLURM_SNAKEMAKE)
    assert done.returncode == 0, done.stderr[-4000:]
    assert _outputs(tmp_path) == local_reference
    submissions = submissions_since(before, tmp_path)
    # generate + discover + illumination + 2 well chunks + assemble
    assert len(submissions) == 6, submissions
    assert all(state == "COMPLETED" for _, state, _ in submissions)
    assert max(int(cpus) for _, _, cpus in submissions) == 1  # every job asks for what one well needs


def test_pbs_profile_runs_through_torque_compatible_qsub(slurm, tmp_path, local_reference):
    """Slurm's qsub/qstat/qdel wrappers (slurm-wlm-torque) stand in for a Torque server here."""
    config = write_config(tmp_path, {"plates": {"demo": {"source": "synthetic", "synthetic": SMALL}}})
    env = {"OPENHCS_PBS_DIALECT": "torque"}
    done = snakemake(tmp_path, config, "--profile", str(REPO / "profiles" / "pbs"), *PBS_FAST, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    assert _outputs(tmp_path) == local_reference


def test_a_job_cancelled_by_the_scheduler_is_retried(slurm, tmp_path):
    spec = {"wells": ["B02"], "sites": 2, "z_planes": 3, "size": 1024, "seed": 2}
    config = write_config(tmp_path, {"plates": {"demo": {"source": "synthetic", "synthetic": spec}}})
    before = last_job_id()
    slurm_profile = ("--profile", str(REPO / "profiles" / "slurm"))
    command = snakemake_command(tmp_path, config, *slurm_profile, *SLURM_FAST, module=SLURM_SNAKEMAKE)
    run = subprocess.Popen(
        command, cwd=tmp_path, env=snakemake_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    cancelled = None
    deadline = time.time() + 240
    while time.time() < deadline and cancelled is None:
        squeue = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True, text=True)
        for line in squeue.stdout.splitlines():
            job_id, comment = line.split(" ", 1)
            if not any(rule in comment for rule in OTHER_RULES):  # the (grouped) well job
                subprocess.run(["scancel", job_id], check=True)
                cancelled = job_id
        time.sleep(0.5)
    try:
        output, _ = run.communicate(timeout=400)
    finally:
        run.kill()
    assert cancelled is not None, "never saw the well job running"
    assert run.returncode == 0, output[-4000:]
    states = {job: state for job, state, _ in submissions_since(before, tmp_path)}
    assert states[cancelled].startswith("CANCELLED")
    assert sum(state == "COMPLETED" for state in states.values()) == 5  # 4 rules + the resubmitted well job
    assert (tmp_path / "results" / "demo" / "wells.csv").exists()
