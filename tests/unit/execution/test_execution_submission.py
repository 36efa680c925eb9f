"""A submitted screen becomes a run folder, or is refused naming the problem, and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openhcs_rules.execution.client import local_platemaps
from openhcs_rules.execution.submission import (
    MAX_CONFIG_DEPTH,
    PIPELINE_FILE,
    SCREEN_FILE,
    ServerPolicy,
    SubmissionError,
    check_run_id,
    prepare_run,
    read_submitted_config,
)

REPO = Path(__file__).resolve().parents[3]
DEMO_CONFIG = (REPO / "config" / "config.yaml").read_text()
DEMO_PIPELINE = (REPO / "config" / "pipelines" / "nuclei_count.py").read_text()


@pytest.fixture
def policy(tmp_path: Path) -> ServerPolicy:
    (tmp_path / "data" / "plate_1").mkdir(parents=True)
    return ServerPolicy(
        runs_root=tmp_path / "runs",
        data_roots=(tmp_path / "data",),
        pipeline_library=REPO / "config" / "pipelines",
    )


def _runs(policy: ServerPolicy) -> list[str]:
    return sorted(p.name for p in policy.runs_root.iterdir()) if policy.runs_root.exists() else []


def test_the_demo_screen_with_a_library_pipeline_becomes_a_run_folder(policy):
    """The demo config as `submit` sends it: its plate map (a file of the submitter's) goes along as text."""
    platemaps = local_platemaps(DEMO_CONFIG, REPO)
    assert set(platemaps) == {"demo_plate"}
    run = prepare_run(policy, "r1", DEMO_CONFIG, pipeline_name="nuclei_count", platemaps=platemaps)
    assert run.folder == (policy.runs_root / "r1").resolve()
    assert run.plates == ("demo_plate",)
    screen = yaml.safe_load((run.folder / SCREEN_FILE).read_text())
    assert screen["pipeline"] == PIPELINE_FILE
    assert screen["output"]["dir"] == "results"
    assert screen["plates"]["demo_plate"]["platemap"] == "platemaps/demo_plate.csv"  # its copy in the run
    assert (run.folder / "platemaps" / "demo_plate.csv").read_text() == platemaps["demo_plate"]
    assert (run.folder / PIPELINE_FILE).read_text() == DEMO_PIPELINE


def test_a_plate_map_left_on_the_clients_machine_or_sent_wrong_is_refused(policy):
    with pytest.raises(SubmissionError, match="platemap.*not a file"):
        prepare_run(policy, "r1", DEMO_CONFIG, pipeline_name="nuclei_count")  # the path means nothing here
    with pytest.raises(SubmissionError, match="'other' is not a plate of the config"):
        prepare_run(policy, "r2", DEMO_CONFIG, pipeline_name="nuclei_count", platemaps={"other": "well\n"})
    with pytest.raises(SubmissionError, match="line 2: '1A' is not a well name"):
        prepare_run(policy, "r3", DEMO_CONFIG, pipeline_name="nuclei_count", platemaps={"demo_plate": "well\n1A\n"})
    assert _runs(policy) == []


def test_pipeline_text_is_parsed_never_run_and_errors_name_the_line(policy, tmp_path):
    marker = tmp_path / "ran"
    hostile = f"import os\nos.system('touch {marker}')\n"
    with pytest.raises(SubmissionError, match=r"pipeline.py:1: Import statement is not allowed"):
        prepare_run(policy, "r1", DEMO_CONFIG, pipeline=hostile)
    assert not marker.exists()
    assert _runs(policy) == []


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("plates: {p: {source: disk, path: /etc}}\n", r"plates.p.path: '/etc' resolves to /etc, outside the allowed"),
        ("plates: {p: {source: disk, path: ../../../etc}}\n", "outside the allowed folders"),
        ("output: {dir: /tmp/elsewhere}\n", "writes only into its run folder"),
        ("output: {dir: ../../escape}\n", "writes only into its run folder"),
        ("a: &x [1, 2]\nb: *x\n", "anchors"),
        ("[" * 40 + "]" * 40, f"deeper than {MAX_CONFIG_DEPTH}"),
        ("- just\n- a list\n", "must be a mapping"),
        ("plates: {p: {source: omero, plate_id: 3}}\n", "no OMERO configured"),
        ("plates: {p: {source: disk, path: x}}\nbogus_key: 1\n", "bogus_key"),
        ("key: [unclosed\n", "not valid YAML"),
    ],
)
def test_hostile_or_wrong_configs_are_refused_with_the_key_and_leave_nothing(policy, config, expected):
    with pytest.raises(SubmissionError, match=expected):
        prepare_run(policy, "r1", config, pipeline=DEMO_PIPELINE)
    assert _runs(policy) == []


def test_a_plate_under_a_data_root_is_accepted_and_a_relative_output_goes_below_results(policy):
    plate = policy.data_roots[0] / "plate_1"
    config = f"plates: {{p: {{source: disk, path: {plate}}}}}\noutput: {{dir: mine}}\n"
    # the folder is no plate, so discovery would refuse it later: here only confinement and output matter
    run = prepare_run(policy, "r1", config, pipeline=DEMO_PIPELINE)
    assert yaml.safe_load((run.folder / SCREEN_FILE).read_text())["output"]["dir"] == "results/mine"


def test_the_servers_omero_replaces_the_clients(tmp_path):
    ours = {"host": "omero.internal", "port": 4064, "user": "runner", "password_env": "OMERO_PASSWORD"}
    policy = ServerPolicy(runs_root=tmp_path / "runs", omero=ours)
    config = "plates: {p: {source: omero, plate_id: 3}}\nomero: {host: evil.example, port: 1}\n"
    run = prepare_run(policy, "r1", config, pipeline=DEMO_PIPELINE)
    assert yaml.safe_load((run.folder / SCREEN_FILE).read_text())["omero"]["host"] == "omero.internal"


def test_exactly_one_of_pipeline_text_and_library_name(policy):
    with pytest.raises(SubmissionError, match="either a pipeline's text or the name"):
        prepare_run(policy, "r1", DEMO_CONFIG)
    with pytest.raises(SubmissionError, match="either a pipeline's text or the name"):
        prepare_run(policy, "r1", DEMO_CONFIG, pipeline=DEMO_PIPELINE, pipeline_name="nuclei_count")
    for name in ("../../etc/passwd", "missing", ".hidden"):
        with pytest.raises(SubmissionError, match="not in the server's library"):
            prepare_run(policy, "r1", DEMO_CONFIG, pipeline_name=name)
    assert _runs(policy) == []


def test_sizes_are_bounded_before_parsing(tmp_path):
    policy = ServerPolicy(runs_root=tmp_path / "runs", max_config_bytes=1000, max_pipeline_bytes=1000)
    with pytest.raises(SubmissionError, match="over the limit of 1000 bytes"):
        prepare_run(policy, "r1", "x: " + "a" * 2000, pipeline=DEMO_PIPELINE)
    with pytest.raises(SubmissionError, match="over the limit of 1000 bytes"):
        prepare_run(policy, "r1", DEMO_CONFIG, pipeline="#" * 2000)


@pytest.mark.parametrize("run_id", ["../x", "a/b", ".hidden", "", "x" * 65, "a b"])
def test_run_ids_are_plain_names(run_id):
    with pytest.raises(SubmissionError):
        check_run_id(run_id)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_any_text_is_a_mapping_or_a_submission_error(text):
    try:
        assert isinstance(read_submitted_config(text), dict)
    except SubmissionError:
        pass
