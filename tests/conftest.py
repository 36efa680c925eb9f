"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

#: real instrument plates, shared next to the repository (``../shared/fixtures``), never copied into it
FIXTURES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    """The shared real-plate fixtures folder (read-only: copy into tmp_path before writing near it)."""
    if not FIXTURES_DIR.is_dir():
        pytest.skip("../shared/fixtures not present (a user's clone has none)")
    return FIXTURES_DIR


SLURM_START = Path(__file__).resolve().parent / "slurm" / "start_single_node.sh"


@pytest.fixture(scope="session")
def slurm() -> None:
    """A real single-node Slurm with accounting on localhost, started once per test session.

    Needs root and Debian's slurm-wlm/munge/slurmdbd/mariadb packages (.ci/run installs them); skips with
    the reason where they are missing (a user's laptop).
    """
    import os
    import shutil
    import subprocess

    missing = [tool for tool in ("slurmctld", "slurmd", "slurmdbd", "sbatch", "mysqld_safe") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"Slurm is not installed here ({', '.join(missing)} missing; .ci/run installs it)")
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd needs root")
    done = subprocess.run(["bash", str(SLURM_START)], capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        pytest.fail(f"single-node Slurm did not start:\n{done.stdout}\n{done.stderr}")
