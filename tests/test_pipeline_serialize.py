from pathlib import Path

import pytest

from openhcs_rules.errors import PipelineError
from openhcs_rules.pipeline import Pipeline, Step, load_pipeline, parse_pipeline, pipeline_to_code

BUNDLED = Path(__file__).resolve().parents[1] / "config" / "pipelines" / "nuclei_count.py"


def test_bundled_pipeline_file_is_canonical_text():
    text = BUNDLED.read_text()
    pipeline = parse_pipeline(text)
    assert [s.label for s in pipeline.steps][:3] == ["flatfield", "background", "best_focus"]
    assert pipeline_to_code(pipeline) == text


def test_objects_round_trip_through_code():
    pipeline = Pipeline(
        name="per_channel",
        description="Different denoising per channel.",
        steps=[
            Step(
                func={"1": "denoise", "DAPI": "subtract_background"},
                group_by="channel",
                kwargs={},
                variable_components=["z"],
            ),
            Step(func="project_z", kwargs={"method": "mean"}, variable_components=["z"], name='mean "z"'),
            Step(func="denoise", kwargs={"sigma": -0.5 + 2.0}, channel=2),
            Step(func="segment_nuclei", kwargs={"diameter": 12.5, "split_touching": False}, channel="nuclei"),
        ],
    )
    assert parse_pipeline(pipeline_to_code(pipeline)) == pipeline


HEADER = "from openhcs_rules.pipeline import Pipeline, Step\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("import os\npipeline = Pipeline(name='x', steps=[])", "Import statement is not allowed"),
        ("from os import system\npipeline = Pipeline(name='x', steps=[])", "only 'from openhcs_rules.pipeline import"),
        ("pipeline = Pipeline(name=__import__('os').getcwd(), steps=[])", "__import__('os').getcwd\" is not allowed"),
        (
            "pipeline = Pipeline(name='x', steps=[Step(func='denoise', kwargs={'sigma': open('/etc/passwd')})])",
            "call to 'open' is not allowed",
        ),
        ("pipeline = Pipeline(name='x', steps=[s for s in []])", "ListComp is not allowed"),
        ("pipeline = Pipeline(name='x', steps=[Step(func=lambda x: x)])", "Lambda is not allowed"),
        ("pipeline = Pipeline(name=os.name, steps=[])", "Attribute is not allowed"),
        ("x = 1\npipeline = Pipeline(name='x', steps=[])", "Assign statement is not allowed"),
        ("def f():\n    pass\npipeline = Pipeline(name='x', steps=[])", "FunctionDef statement is not allowed"),
        (
            "pipeline = Pipeline(name='x', steps=[Step(func='denoize')])",
            "unknown function 'denoize'. Did you mean 'denoise'",
        ),
        ("pipeline = Pipeline(name='x', steps=[Step(func='denoise', kwargs={'sigmaa': 1})])", "no parameter 'sigmaa'"),
        (
            "pipeline = Pipeline(name='x', steps=[Step(func='denoise', variable_components=['well'])])",
            "variable component",
        ),
        (
            "pipeline = Pipeline(name='x', steps=[Step(func='flatfield_correct', kwargs={'illumination': 1})])",
            "no parameter 'illumination'",
        ),
        ("pass", "Pass statement is not allowed"),
        ("", "no 'pipeline = Pipeline(...)'"),
        ("pipeline = Pipeline(name='x', steps=[]", "not valid Python"),
    ],
)
def test_anything_outside_the_allow_list_is_rejected_with_its_line(body, expected):
    with pytest.raises(PipelineError, match=None) as info:
        parse_pipeline(HEADER + body, source="bad.py")
    assert expected in str(info.value)
    assert str(info.value).startswith("bad.py")


def test_a_hostile_file_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    text = HEADER + f"pipeline = Pipeline(name=__import__('os').system('touch {marker}'), steps=[])\n"
    with pytest.raises(PipelineError):
        parse_pipeline(text)
    assert not marker.exists()


def test_missing_file_names_the_config_key(tmp_path):
    with pytest.raises(PipelineError, match="check the 'pipeline' key"):
        load_pipeline(tmp_path / "nope.py")
