"""Run the real Snakemake CLI on a screen config in a scratch folder (shared by the workflow tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
PIPELINE = REPO / "config" / "pipelines" / "nuclei_count.py"


def write_config(folder: Path, config: dict) -> Path:
    config.setdefault("pipeline", str(PIPELINE))
    path = folder / "screen.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake_command(folder: Path, configfile: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(folder),
        "--configfile",
        str(configfile),
        "--cores",
        "2",
        *extra,
    ]


def snakemake_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment with the working tree first on PYTHONPATH (jobs import the code under test)."""
    merged = dict(os.environ)
    merged.update(env or {})
    merged["PYTHONPATH"] = str(REPO) + os.pathsep + merged.get("PYTHONPATH", "")
    return merged


def snakemake(
    folder: Path, configfile: Path, *extra: str, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m snakemake`` in ``folder`` with the repository's Snakefile; returns the finished process."""
    return subprocess.run(
        snakemake_command(folder, configfile, *extra),
        cwd=folder,
        env=snakemake_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
