"""Run the real Snakemake CLI on a screen config in a scratch folder: the one way tests and benchmarks do it.

The jobs import the code under test (and, for OMERO tests, the stand-in gateway of this package) from the
working tree: :func:`snakemake_env` puts the repository root first on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from openhcs_rules_testkit.paths import PIPELINE, REPO, SNAKEFILE

__all__ = ["PIPELINE", "REPO", "SNAKEFILE", "snakemake", "snakemake_command", "snakemake_env", "write_config"]

#: what ``profiles/default`` sets (``force-use-threads``), which Snakemake applies only when it runs from the
#: repository root, never in a test's or benchmark's scratch folder: the one ``run:`` job (``well_folders``, a
#: mkdir) runs in a thread of the Snakemake process instead of a whole new Snakemake process that parses the
#: Snakefile again (~3 s of a core per plate's first run)
THREADS_FOR_RUN_JOBS = ("--force-use-threads",)


def write_config(folder: Path, config: dict) -> Path:
    """``config`` as ``folder/screen.yaml``, with the bundled pipeline unless it names one."""
    config.setdefault("pipeline", str(PIPELINE))
    path = folder / "screen.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake_command(
    folder: Path, configfile: Path, *extra: str, cores: int | None = 2, module: str = "snakemake"
) -> list[str]:
    """``python -m snakemake`` on the repository's Snakefile, run in ``folder`` with ``configfile``.

    ``--cores`` comes before ``extra`` (``cores=None`` leaves it out: ``extra`` then says it, or Snakemake's
    default applies). ``module``: another module that runs Snakemake's command line (the Slurm tests'
    :data:`openhcs_rules_testkit.slurm.SLURM_SNAKEMAKE`). With :data:`THREADS_FOR_RUN_JOBS`, as a run from the
    repository root has it from ``profiles/default``.
    """
    command = [sys.executable, "-m", module, "-s", str(SNAKEFILE), "--directory", str(folder)]
    command += ["--configfile", str(configfile), *THREADS_FOR_RUN_JOBS]
    if cores is not None:
        command += ["--cores", str(cores)]
    return [*command, *extra]


def snakemake_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This environment plus ``env``, with the repository root first on PYTHONPATH (jobs import the code under
    test; the folders already there are kept: where the other packages may be)."""
    merged = dict(os.environ)
    merged.update(env or {})
    merged["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), merged.get("PYTHONPATH")]))
    return merged


def snakemake(
    folder: Path,
    configfile: Path,
    *extra: str,
    timeout: int = 600,
    env: dict[str, str] | None = None,
    cores: int | None = 2,
    module: str = "snakemake",
) -> subprocess.CompletedProcess:
    """:func:`snakemake_command` run in ``folder``; returns the finished process."""
    return subprocess.run(
        snakemake_command(folder, configfile, *extra, cores=cores, module=module),
        cwd=folder,
        env=snakemake_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
