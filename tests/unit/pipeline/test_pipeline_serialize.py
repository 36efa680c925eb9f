import collections.abc
import typing

import pytest

from openhcs_rules.errors import PipelineError
from openhcs_rules.pipeline import Pipeline, Step, load_pipeline, parse_pipeline, pipeline_to_code
from openhcs_rules.pipeline.registry import (
    FUNCTIONS,
    INJECTED_PARAMETERS,
    FunctionSpec,
    check_kwargs,
    describe_type,
    type_is_understood,
    value_matches,
)
from openhcs_rules_testkit.paths import PIPELINE

BUNDLED = PIPELINE


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


# --- keyword types, checked at load time against the function's annotations ----------------------------------


def test_a_keyword_of_the_wrong_type_fails_at_load_naming_step_keyword_type_and_line():
    text = HEADER + (
        "pipeline = Pipeline(\n"
        "    name='x',\n"
        "    steps=[\n"
        "        Step(name='blur', func='denoise', kwargs={'sigma': 'abc'}),\n"
        "    ],\n"
        ")\n"
    )
    # was: loaded, then every well failed with a TypeError from inside the function
    with pytest.raises(PipelineError) as info:
        parse_pipeline(text, source="pipeline.py")
    assert str(info.value) == "pipeline.py:5: step 'blur': keyword 'sigma' must be float, got str 'abc'"


def _with_kwargs(func: str, kwargs: str) -> str:
    return HEADER + f"pipeline = Pipeline(name='x', steps=[Step(func={func!r}, kwargs={kwargs})])\n"


@pytest.mark.parametrize(
    ("func", "kwargs", "expected"),
    [
        ("denoise", "{'sigma': True}", "keyword 'sigma' must be float, got bool True"),
        ("denoise", "{'size': 3.0}", "keyword 'size' must be int, got float 3.0"),
        ("denoise", "{'size': False}", "keyword 'size' must be int, got bool False"),
        ("denoise", "{'method': 3}", "keyword 'method' must be str, got int 3"),
        ("segment_nuclei", "{'split_touching': 1}", "step 'segment_nuclei': keyword 'split_touching' must be bool"),
        ("segment_nuclei", "{'diameter': 'big'}", "keyword 'diameter' must be float or None, got str 'big'"),
        ("segment_nuclei", "{'threshold': [1]}", "keyword 'threshold' must be str or float, got list [1]"),
        ("subtract_background", "{'radius': None}", "keyword 'radius' must be float, got NoneType None"),
        ("denoise", "{'sigma': Step(func='denoise')}", "call to 'Step' is not allowed here: a step holds only"),
    ],
)
def test_keywords_of_the_wrong_type_are_rejected(func, kwargs, expected):
    with pytest.raises(PipelineError) as info:
        parse_pipeline(_with_kwargs(func, kwargs), source="bad.py")
    assert str(info.value).startswith("bad.py:2: ")
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("func", "kwargs"),
    [
        ("denoise", "{'sigma': 2}"),  # an int is a fine float
        ("denoise", "{'sigma': -0.5, 'method': 'median', 'size': 5}"),
        ("segment_nuclei", "{'diameter': None, 'threshold': 'otsu', 'min_area': 10}"),
        ("segment_nuclei", "{'threshold': 0.25, 'split_touching': False, 'max_area': 1e4}"),
    ],
)
def test_keywords_of_the_right_type_are_accepted(func, kwargs):
    parse_pipeline(_with_kwargs(func, kwargs))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("pipeline = Pipeline(name=1, steps=[])", "Pipeline: name must be str, got int 1"),
        ("pipeline = Pipeline(name='x', steps=[1])", "Pipeline: steps must be list of Step, got list [1]"),
        ("pipeline = Pipeline(name='x', steps=[], description=None)", "description must be str"),
        ("pipeline = Pipeline(name='x', steps=[Step(func='denoise', name=[1])])", "Step: name must be str or None"),
        ("pipeline = Pipeline(name='x', steps=[Step(func='denoise', channel=True)])", "channel must be int or str"),
        ("pipeline = Pipeline(name='x', steps=[Step(func='denoise', channel=[1])])", "channel must be int or str"),
        ("pipeline = Pipeline(name='x', steps=[Step(func='denoise', kwargs=[1])])", "kwargs must be dict of str"),
        ("pipeline = Pipeline(name='x', steps=[Step(func='denoise', kwargs={1: 2})])", "kwargs must be dict of str"),
        (
            "pipeline = Pipeline(name='x', steps=[Step(func='denoise', variable_components='z')])",
            "variable_components must be list of str",
        ),
        ("pipeline = Pipeline(name='x', steps=[Step(func={}, group_by='channel')])", "needs at least one"),
        ("pipeline = Pipeline(name='x', steps=[Step(func={'1': 2}, group_by='channel')])", "func must be str or"),
    ],
)
def test_fields_of_the_wrong_type_are_rejected_with_their_line(body, expected):
    # was: accepted (name=1, variable_components='z'), or a bare TypeError (steps=5)
    with pytest.raises(PipelineError) as info:
        parse_pipeline(HEADER + body, source="bad.py")
    assert str(info.value).startswith("bad.py:2: ")
    assert expected in str(info.value)


def _settable_parameters():
    for name, spec in sorted(FUNCTIONS.items()):
        parameters = list(spec.parameters().values())
        if parameters and parameters[0].name not in INJECTED_PARAMETERS:
            parameters = parameters[1:]
        for parameter in parameters:
            if parameter.name not in INJECTED_PARAMETERS:
                yield pytest.param(name, parameter, id=f"{name}.{parameter.name}")


@pytest.mark.parametrize(("name", "parameter"), list(_settable_parameters()))
def test_every_registered_parameter_has_a_checkable_type_that_its_default_passes(name, parameter):
    hint = FUNCTIONS[name].parameter_types()[parameter.name]
    assert type_is_understood(hint), f"{name}.{parameter.name}: the checker would accept anything for {hint!r}"
    assert describe_type(hint)
    assert parameter.default is not parameter.empty, "a pipeline cannot leave a required parameter out"
    assert value_matches(parameter.default, hint), f"{name}.{parameter.name}={parameter.default!r} vs {hint!r}"
    check_kwargs(name, {parameter.name: parameter.default})


T = typing.TypeVar("T")


@pytest.mark.parametrize(
    ("hint", "good", "bad"),
    [
        (typing.Literal["max", "mean"], ["max", "mean"], ["sum", 1, None]),
        (typing.Literal[1, True], [1, True], [1.0, 0, False]),
        (tuple[int, int], [[1, 2], (3, 4)], [[1], [1, 2.5], "ab", [True, 1]]),
        (tuple[float, ...], [[], [1, 2.5]], [[None], 1.0]),
        (dict[str, float], [{}, {"a": 1, "b": 2.5}], [{"a": "b"}, {1: 1.0}, [("a", 1.0)]]),
        (collections.abc.Sequence[str], [["a"], ("b",)], ["ab", [1]]),
        (collections.abc.Mapping, [{"a": 1}], [[1]]),
        (list, [[], [1, "a"]], [{}, "a"]),
        (typing.Optional[int], [None, 3], [3.5, "3"]),  # noqa: UP045 - the spelling under test
        (typing.Union[int, str], [1, "a"], [1.5, None]),  # noqa: UP007 - the spelling under test
        (typing.Annotated[float, "pixels"], [1.5, 2], ["x"]),
        (list[str] | None, [None, ["a"]], [[1], "a"]),
        (typing.Any, [1, "a", None, [1]], []),
        (T, [1, "a"], []),
        (object, [1, None], []),
    ],
)
def test_the_checker_understands_these_annotations(hint, good, bad):
    assert type_is_understood(hint)
    assert all(value_matches(value, hint) for value in good), describe_type(hint)
    assert not any(value_matches(value, hint) for value in bad), describe_type(hint)


def test_annotations_the_checker_cannot_judge_are_accepted_not_crashed_on():
    import numpy as np

    for hint in (np.ndarray, collections.abc.Callable[[int], int], typing.NewType("Pixels", int), "Undefined"):
        assert value_matches([1, 2], hint)  # the function may convert a list: not the loader's call
        describe_type(hint)
    assert not value_matches([1, 2], np.ndarray, lenient=False)


def _unresolvable(stack, size=3, sigma: float = 1.0):
    """A registered function whose annotations cannot all be resolved (a name only a type checker sees)."""


_unresolvable.__annotations__ = {"size": "NotImportedHere", "sigma": "float"}


def test_unresolvable_annotations_fall_back_to_accepting_that_parameter():
    spec = FunctionSpec("odd", __name__, "_unresolvable", "image", "")
    assert spec.parameter_types() == {"stack": typing.Any, "size": typing.Any, "sigma": typing.Any}


@pytest.mark.parametrize(
    "description",
    ["", "One line.", 'Has """ triple quotes', 'Ends with a quote"', "Back\\slash", "  indented", "a\n  b\r\n", "\t"],
)
def test_any_description_round_trips(description):
    pipeline = Pipeline(name="x", steps=[Step(func="denoise")], description=description)
    assert parse_pipeline(pipeline_to_code(pipeline)) == pipeline
