"""Software deployment the way Snakemake users expect: --sdm conda uses the environment it builds, --sdm
apptainer refuses to run on the host silently, and the workflow catalog's claims match the rules.

Neither conda nor apptainer installs on these machines (no conda, no container runtime, no registry of
environments or images is reachable), so what runs here is the part Snakemake decides before it calls
them; README "Software" says what was not tried.
"""

from __future__ import annotations

import re

import pytest
import yaml

from openhcs_rules.deployment import container_problem, job_interpreter
from openhcs_rules_testkit.workflow import PIPELINE, REPO, snakemake, write_config

TINY = {"wells": ["B02"], "sites": 1, "channels": 1, "z_planes": 1, "size": 96}


@pytest.mark.parametrize(
    ("methods", "expected"),
    [
        ([], "/opt/venv/bin/python"),
        (["CONDA"], "python"),
        (["APPTAINER"], "python"),
        (["ENV_MODULES"], "/opt/venv/bin/python"),
        (["conda", "apptainer"], "python"),
    ],
)
def test_jobs_use_the_deployed_environment_s_python_and_otherwise_this_one(methods, expected):
    assert job_interpreter(methods, own="/opt/venv/bin/python") == expected


def test_apptainer_without_an_image_is_refused_and_with_one_accepted():
    assert "software.container" in container_problem(["APPTAINER"], None)
    assert container_problem(["APPTAINER"], "docker://example.org/openhcs-rules:0.1.0") is None
    assert container_problem(["CONDA"], None) is None


@pytest.mark.workflow
def test_sdm_apptainer_without_an_image_stops_before_any_job(tmp_path):
    config = write_config(
        tmp_path, {"plates": {"demo": {"source": "synthetic", "synthetic": TINY}}, "pipeline": str(PIPELINE)}
    )
    done = snakemake(tmp_path, config, "-n", "--sdm", "apptainer")
    assert done.returncode != 0
    assert "--sdm apptainer needs a container image" in done.stdout + done.stderr
    planned = snakemake(tmp_path, config, "-n")  # without --sdm the same config plans
    assert planned.returncode == 0, planned.stderr[-2000:]


def _rules_with_shell() -> dict[str, str]:
    rules = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=(?:rule|checkpoint|localrule) )", path.read_text()):
            match = re.match(r"(?:rule|checkpoint|localrule) (\w+):", block)
            if match and "    shell:" in block:
                rules[match.group(1)] = block
    return rules


def test_the_catalog_s_claims_match_the_workflow():
    catalog = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    deployment = catalog["usage"]["software-stack-deployment"]
    assert catalog["usage"]["report"] is True
    rules = _rules_with_shell()
    assert rules, "no rule found"
    if deployment["conda"]:
        env = yaml.safe_load((REPO / "workflow" / "envs" / "openhcs.yaml").read_text())
        assert "python=3.11" in env["dependencies"]
        missing = [name for name, block in rules.items() if 'conda:\n        "../envs/openhcs.yaml"' not in block]
        assert not missing, f"rules without the conda environment: {missing}"
    commands = [block.split("    shell:")[1] for block in rules.values()]
    interpreter = '\\"$OPENHCS_RULES_PYTHON\\" -m openhcs_rules'
    assert all(interpreter in command for command in commands), "a job calls another interpreter"
    assert deployment["singularity"] is False  # no image is published; software.container names your own
