"""pytest fixtures shared across the test layers (tests/unit, tests/workflow, tests/integration, tests/project).

Helpers that are not fixtures live in ``openhcs_rules_testkit`` (imported by tests and benchmarks alike);
the OMERO fixtures are a plugin of that package, named by ``pytest_plugins`` in each OMERO test module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from openhcs_rules_testkit.paths import REPO, SHARED_FIXTURES


@pytest.fixture
def fixtures_dir() -> Path:
    """The shared real-plate fixtures folder (read-only: copy into tmp_path before writing near it)."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip("../shared/fixtures not present (a user's clone has none)")
    return SHARED_FIXTURES


SLURM_START = REPO / "tests" / "integration" / "cluster" / "start_single_node.sh"


@pytest.fixture(scope="session")
def slurm() -> None:
    """A real single-node Slurm with accounting on localhost, started once per test session.

    Needs root and Debian's slurm-wlm/munge/slurmdbd/mariadb packages (.ci/run installs them); skips with
    the reason where they are missing (a user's laptop).
    """
    missing = [tool for tool in ("slurmctld", "slurmd", "slurmdbd", "sbatch", "mysqld_safe") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"Slurm is not installed here ({', '.join(missing)} missing; .ci/run installs it)")
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd needs root")
    done = subprocess.run(["bash", str(SLURM_START)], capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        pytest.fail(f"single-node Slurm did not start:\n{done.stdout}\n{done.stderr}")


#: the example plugin distribution (installed for real by the ``example_plugin`` fixture)
EXAMPLE_PLUGIN = REPO / "examples" / "openhcs-example-plugin"


@pytest.fixture(scope="session")
def example_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed by pip into a target folder (built from a copy: pip builds in the tree).

    Session-wide and here, not in one test module: the plugin tests (tests/unit/pipeline) and the workflow
    test of a plugin step (tests/workflow) share one installation.
    """
    scratch = tmp_path_factory.mktemp("example_plugin")
    source = shutil.copytree(EXAMPLE_PLUGIN, scratch / "source")
    target = scratch / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"pip could not install the example plugin:\n{done.stdout}\n{done.stderr}"
    return target
