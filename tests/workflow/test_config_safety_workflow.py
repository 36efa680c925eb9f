"""Configs written by a careless or hostile user, through ``openhcs-rules validate`` and the real workflow.

`openhcs-rules validate` and the workflow call the same check (:func:`check_screen`), so a config is either
refused by both with the same message or accepted by both. Every path reaches the shell quoted: an output
folder with a space, ``$(...)`` or backquotes is a folder name, never a command. (The check itself, in
process: tests/unit/config/test_config_safety.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from openhcs_rules_testkit.workflow import PIPELINE, snakemake, write_config

TINY = {"wells": ["B02"], "sites": 1, "channels": 1, "z_planes": 1, "size": 96, "seed": 3}


def _screen(**extra):
    return {"plates": {"demo": {"source": "synthetic", "synthetic": dict(TINY)}}, "pipeline": str(PIPELINE), **extra}


# -- validate and the workflow cannot disagree -----------------------------------------------------------
def _refused_configs(tmp_path: Path) -> dict[str, tuple[dict, str]]:
    a_file = tmp_path / "not_a_folder.tif"
    a_file.write_bytes(b"II*\0")
    return {
        "viewer beyond loopback without keys": (
            _screen(streaming={"napari": {"host": "10.1.2.3"}}),
            "reachable from other machines",
        ),
        "huge synthetic plate": (
            {"plates": {"demo": {"source": "synthetic", "synthetic": {"size": 1_000_000_000}}}},
            "size",
        ),
        "too much synthetic data": (
            {
                "plates": {
                    "demo": {
                        "source": "synthetic",
                        "synthetic": {"size": 8192, "wells": [f"B{c:02d}" for c in range(1, 25)], "sites": 9},
                    }
                }
            },
            "GiB",
        ),
        "missing plate folder": (
            {"plates": {"p": {"source": "disk", "path": str(tmp_path / "nowhere")}}},
            "does not exist",
        ),
        "plate path is a file": ({"plates": {"p": {"source": "disk", "path": str(a_file)}}}, "is a file"),
        "missing pipeline": (_screen(pipeline=str(tmp_path / "nope.py")), "is not a file"),
        "nuclei channel 0": (_screen(nuclei_channel=0), "minimum of 1"),
    }


def _validate_and_plan(folder: Path, path: Path) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """``openhcs-rules validate`` and ``snakemake -n`` on one config."""
    validate = subprocess.run(
        [sys.executable, "-m", "openhcs_rules", "validate", str(path)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return validate, snakemake(folder, path, "-n")


@pytest.mark.workflow
def test_validate_and_the_workflow_refuse_the_same_configs_with_the_same_message(tmp_path):
    refused = _refused_configs(tmp_path)
    paths = {}
    for label, (config, _) in refused.items():
        folder = tmp_path / label.replace(" ", "_")
        folder.mkdir()
        config.setdefault("pipeline", str(PIPELINE))
        paths[label] = (folder, write_config(folder, config))
    # the configs are independent: their commands (mostly Python and Snakemake starting up) run side by side
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = dict(zip(paths, pool.map(lambda where: _validate_and_plan(*where), paths.values()), strict=True))
    for label, (_, expected) in refused.items():
        validate, run = outcomes[label]
        assert validate.returncode != 0, f"{label}: validate said {validate.stdout}"
        assert expected in validate.stderr, f"{label}: {validate.stderr}"
        assert "Traceback" not in validate.stderr, label
        assert run.returncode != 0, f"{label}: the workflow planned it"
        problem = next(line for line in validate.stderr.splitlines() if line.startswith("  - ") and expected in line)
        assert problem in run.stderr + run.stdout, f"{label}: workflow said {run.stderr[-2000:]}"


def test_validate_accepts_what_the_workflow_runs(tmp_path):
    path = write_config(tmp_path, _screen())
    validate = subprocess.run(
        [sys.executable, "-m", "openhcs_rules", "validate", str(path)], cwd=tmp_path, capture_output=True, text=True
    )
    assert validate.returncode == 0, validate.stderr
    assert "valid" in validate.stdout


# -- hostile values run as data, never as commands -------------------------------------------------------
@pytest.mark.workflow
def test_hostile_output_dir_is_a_folder_name_and_nothing_runs_outside_it(tmp_path):
    mark = tmp_path / "MARK"  # the jobs' shell runs in tmp_path: a command that ran would make MARK1..3 here
    out = "res ults $(touch MARK1) `touch MARK2` ; touch MARK3 ' \""
    config = write_config(tmp_path, _screen(output={"dir": out}))
    before = set(os.listdir("/"))
    done = snakemake(tmp_path, config)
    assert done.returncode == 0, done.stderr[-3000:]
    for suffix in "123":
        assert not Path(f"{mark}{suffix}").exists(), "a command from the config ran"
    results = tmp_path / out / "demo"
    assert (results / "wells.csv").is_file() and (results / "plate.ome.zarr").is_dir()
    assert set(os.listdir("/")) == before, "something was written at the filesystem root"
    made = {p.name for p in tmp_path.iterdir()}
    assert made <= {out, "screen.yaml", "resources", "logs", "benchmarks", ".snakemake", ".openhcs"}, made


@pytest.mark.workflow
def test_hostile_nuclei_channel_reaches_the_job_as_one_argument(tmp_path):
    mark = tmp_path / "MARK"
    channel = f"x'; touch {mark}; echo '"
    config = write_config(tmp_path, _screen(nuclei_channel=channel))
    done = snakemake(tmp_path, config)
    assert done.returncode != 0  # no channel has that name
    assert not mark.exists(), "a command from the config ran"
    logs = "".join(p.read_text() for p in (tmp_path / "logs").rglob("*.log"))
    assert channel in logs, "the job did not receive the channel name intact"


# -- machine-local facts are not compared by Snakemake ---------------------------------------------------
def _other_name_for_this_interpreter() -> str | None:
    here = Path(sys.executable)
    for name in ("python3.11", f"python{sys.version_info.major}.{sys.version_info.minor}", "python3", "python"):
        other = here.parent / name
        if other.exists() and str(other) != sys.executable and other.resolve() == here.resolve():
            return str(other)
    return None


@pytest.mark.workflow
def test_another_path_to_the_interpreter_reruns_nothing(tmp_path):
    other = _other_name_for_this_interpreter()
    if other is None:
        pytest.skip(f"no second name for {sys.executable} in its folder")
    config = write_config(tmp_path, _screen())
    done = snakemake(tmp_path, config)
    assert done.returncode == 0, done.stderr[-3000:]
    from openhcs_rules_testkit.workflow import snakemake_command, snakemake_env

    command = snakemake_command(tmp_path, config, "-n")
    command[0] = other
    again = subprocess.run(command, cwd=tmp_path, env=snakemake_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Nothing to be done" in again.stdout + again.stderr, (again.stdout + again.stderr)[-3000:]
