"""An execution server on a tiny screen, for the execution tests and ``bench/execution.py``.

The screen is a synthetic plate the workflow generates itself (1 site, 1 channel, 96 px per well, one well
per job), so a run takes seconds and orchestration, not pixels, is what runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from openhcs_rules.execution.runner import RunSupervisor
from openhcs_rules.execution.server import ExecutionServer
from openhcs_rules.execution.store import RunStore
from openhcs_rules.execution.submission import ServerPolicy
from openhcs_rules.messaging.addresses import find_free_base_port
from openhcs_rules_testkit.paths import REPO

#: the wells of a tiny screen when a test names none
TINY_WELLS = ("B02", "B03", "C02")


def tiny_screen(seed: int = 0, wells: tuple[str, ...] | list[str] = TINY_WELLS, plate: str = "tiny") -> str:
    """The YAML text of a one-plate synthetic screen (no pipeline: a submission names it)."""
    synthetic = {"wells": list(wells), "sites": 1, "channels": 1, "z_planes": 1, "size": 96, "seed": seed}
    config = {"plates": {plate: {"source": "synthetic", "synthetic": synthetic}}, "wells_per_job": 1}
    return yaml.safe_dump(config, sort_keys=False)


def execution_server(
    root: Path,
    *,
    host: str = "127.0.0.1",
    keys: Path | None = None,
    max_concurrent: int = 2,
    poll_s: float = 0.5,
    **server_options: Any,
) -> ExecutionServer:
    """A server (not started) whose runs, store and run folders live under ``root``; the repository's pipeline
    folder is its library, and each run's Snakemake uses 2 cores and the openhcs logger plugin."""
    policy = ServerPolicy(runs_root=root / "runs", pipeline_library=REPO / "config" / "pipelines")
    store = RunStore(root / "runs.sqlite")
    supervisor = RunSupervisor(
        store,
        max_concurrent=max_concurrent,
        snakemake_args=("--cores", "2"),
        logger_plugin="openhcs",
        poll_s=poll_s,
    )
    port = find_free_base_port(host)
    return ExecutionServer(policy, store, supervisor, port=port, host=host, keys_dir=keys, **server_options)
