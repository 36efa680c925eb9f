"""Which Python runs a job: the one running Snakemake, or the software environment Snakemake deploys.

Without ``--sdm`` every job runs in the environment Snakemake runs in, so jobs call that interpreter by
its path (no PATH lookup can pick another Python). With ``--sdm conda`` Snakemake activates the rule's
conda environment (``workflow/envs/openhcs.yaml``) around each job, and with ``--sdm apptainer`` it runs the
job inside the configured container: calling the host's interpreter by path there would build the
environment and never use it, so jobs call the ``python`` that the environment puts first on PATH.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

#: deployment methods whose jobs run with their own Python (names of Snakemake's DeploymentMethod)
DEPLOYED = frozenset({"conda", "apptainer"})


def job_interpreter(deployment_methods: Iterable[str], own: str = sys.executable) -> str:
    """``python`` when Snakemake deploys a software environment per job, else ``own`` (this interpreter)."""
    methods = {method.lower() for method in deployment_methods}
    return "python" if methods & DEPLOYED else own


def container_problem(deployment_methods: Iterable[str], image: str | None) -> str | None:
    """Why ``--sdm apptainer`` cannot work as configured, or None.

    No image is published for this workflow; a run asking for containers without one would otherwise run
    every job on the host without a word (Snakemake only uses containers for rules that name one).
    """
    methods = {method.lower() for method in deployment_methods}
    if "apptainer" in methods and not image:
        return (
            "--sdm apptainer needs a container image with openhcs-rules installed: build one from "
            "deploy/container/Dockerfile (or any image with `pip install openhcs-rules`) and set "
            "software.container in the screen config (e.g. docker://registry.example.org/openhcs-rules:0.1.0 "
            "or a local .sif file)"
        )
    return None
