"""What the benchmarks that run the real workflow share: the Snakemake command line and the jobs' environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
PIPELINE = REPO / "config" / "pipelines" / "nuclei_count.py"


def job_env() -> dict[str, str]:
    """This environment with the repository first on PYTHONPATH (kept: where the other packages may be)."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


def snakemake_command(folder: Path, config: Path, *extra: str) -> list[str]:
    """``python -m snakemake`` on the repository's Snakefile, run in ``folder`` with ``config``."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(folder),
        "--configfile",
        str(config),
        *extra,
    ]
