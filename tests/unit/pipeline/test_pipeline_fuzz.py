"""Pipeline text from another machine: whatever it is, parsing returns a Pipeline or raises a PipelineError.

Fuzzing (arbitrary text and bytes, mutations of the bundled pipeline, structurally deep nesting) checks the
invariant; the explicit cases below are the inputs of the issue that used to escape as bare exceptions or be
accepted (a 5,000-deep minus chain, 1,000-deep lists, a file over the size limit).
"""

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openhcs_rules.errors import PipelineError
from openhcs_rules.pipeline import Pipeline, Step, load_pipeline, parse_pipeline, pipeline_to_code
from openhcs_rules.pipeline.model import STACK_COMPONENTS
from openhcs_rules.pipeline.registry import FUNCTIONS, INJECTED_PARAMETERS
from openhcs_rules.pipeline.serialize import (
    MAX_BRACKETS,
    MAX_BYTES,
    MAX_DEPTH,
    MAX_ELEMENTS,
    MAX_ITEM_TOKENS,
    MAX_TOKENS,
)
from openhcs_rules_testkit.paths import PIPELINE

DEMO = PIPELINE.read_text()
HEADER = "from openhcs_rules.pipeline import Pipeline, Step\n"
SOURCE = "fuzz.py"

#: created only if some fuzzed text were executed
MARKER = Path(tempfile.mkdtemp(prefix="pipeline-fuzz-")) / "executed"
HOSTILE = [
    f"__import__('os').system('touch {MARKER}')",
    f"open({str(MARKER)!r}, 'w').close()",
    f"exec(\"open({str(MARKER)!r}, 'w')\")",
    f"[open({str(MARKER)!r}, 'w') for _ in [1]]",
    f"(lambda: open({str(MARKER)!r}, 'w'))()",
]
TOKENS = [
    *"()[]{},:=-+~.*'\"\\#@;",
    '"""',
    "\n",
    "\n    ",
    "\t",
    " not ",
    " lambda: ",
    " if 1 else ",
    "Step(",
    "Pipeline(",
    "func=",
    "kwargs=",
    "name=",
    "steps=",
    "channel=",
    "group_by='channel'",
    "'denoise'",
    "{'1': 'denoise'}",
    "1e999",
    "0x",
    "1" * 5000,
    "True",
    "None",
    "\x00",
    "\ud800",
    "\ufeff",
    "é",
    "**",
    "*",
    "import os\n",
    "\x0c",
    "\r",
    *HOSTILE,
]

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(text: str | bytes) -> Pipeline | None:
    """The invariant: a Pipeline that survives a round trip, or a PipelineError naming the source."""
    try:
        pipeline = parse_pipeline(text, source=SOURCE)
    except PipelineError as exc:
        assert str(exc).startswith(SOURCE), str(exc)
        pipeline = None
    else:
        assert parse_pipeline(pipeline_to_code(pipeline)) == pipeline
    assert not MARKER.exists(), "a pipeline file was executed"
    return pipeline


# --- fuzzing ---------------------------------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=400))
def test_arbitrary_text_is_a_pipeline_or_a_pipeline_error(text):
    outcome(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_arbitrary_token_soup_is_a_pipeline_or_a_pipeline_error(tokens):
    outcome(HEADER + "".join(tokens))


@FUZZ
@given(st.binary(max_size=400), st.sampled_from(["raw", "latin-1", "surrogateescape"]))
def test_arbitrary_bytes_are_a_pipeline_or_a_pipeline_error(data, how):
    if how == "raw":
        outcome(data)
    elif how == "latin-1":
        outcome(data.decode("latin-1"))
    else:
        outcome(data.decode("utf-8", errors="surrogateescape"))


#: literals of the bundled pipeline, and what a mutation may put in their place
VALUE_SPANS = ['"nuclei_count"', '"flatfield"', "50", '"best_focus"', "0.5", '"nuclei"', '"measure_objects"']
VALUES = ["1e999", '"abc"', "True", "None", "-1", "[1, 2]", '{"a": 1}', '"\\ud800"', "1.5", "0", '"x" "y"', "(1,)"]

_edit = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, len(DEMO)), st.sampled_from(TOKENS) | st.text(max_size=8)),
    st.tuples(st.just("value"), st.sampled_from(VALUE_SPANS), st.sampled_from(VALUES + HOSTILE) | st.text(max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, len(DEMO)), st.integers(1, 40)),
    st.tuples(st.just("repeat"), st.integers(0, len(DEMO)), st.integers(1, 40)),
)


def _apply(text: str, edit: tuple) -> str:
    kind, at, arg = edit
    if kind == "insert":
        return text[:at] + arg + text[at:]
    if kind == "value":
        return text.replace(at, arg, 1)
    if kind == "delete":
        return text[:at] + text[at + arg :]
    return text[:at] + text[at : at + arg] * 3 + text[at:]


@FUZZ
@given(st.lists(_edit, min_size=1, max_size=6))
def test_mutations_of_the_bundled_pipeline_are_a_pipeline_or_a_pipeline_error(edits):
    text = DEMO
    for edit in edits:
        text = _apply(text, edit)
    outcome(text)


#: (prefix, suffix) pairs wrapping an expression one level deeper, with and without brackets
WRAPPERS = [
    ("[", "]"),
    ("(", ",)"),
    ("{'k': ", "}"),
    ("-", ""),
    ("+", ""),
    ("~", ""),
    ("not ", ""),
    ("", ".a"),
    ("f(", ")"),
    ("", "()"),
    ("", "[0]"),
    ("lambda: ", ""),
    ("", " + 1"),
    ("1 if 1 else ", ""),
    ("Step(func='denoise', kwargs={'sigma': ", "})"),
    ("[1, ", ", 2]"),
]
_nesting = st.lists(st.tuples(st.sampled_from(WRAPPERS), st.integers(1, 3000)), max_size=4)
_leaf = st.sampled_from(["1", "0.5", "'x'", "None", "True", "x", "[]", "{}", "1e999", *HOSTILE])


def _nest(leaf: str, layers: list[tuple[tuple[str, str], int]]) -> str:
    prefixes = "".join(prefix * count for (prefix, _), count in reversed(layers))
    suffixes = "".join(suffix * count for (_, suffix), count in layers)
    return prefixes + leaf + suffixes


@settings(FUZZ, max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_leaf, _nesting, st.sampled_from(["sigma", "name", "description", "statement"]))
def test_deep_nesting_is_a_pipeline_error_not_a_crash(leaf, layers, where):
    expression = _nest(leaf, layers)
    if where == "sigma":
        text = DEMO.replace('{"sigma": 0.5}', "{'sigma': " + expression + "}")
    elif where == "name":
        text = DEMO.replace('name="nuclei_count"', "name=" + expression)
    elif where == "description":
        text = DEMO.replace('name="nuclei_count",', 'name="n",\n    description=' + expression + ",")
    else:
        text = DEMO + "\nx = " + expression + "\n"
    outcome(text)


# --- round trip of generated pipelines -------------------------------------------------------------------

_finite = st.floats(allow_nan=False, allow_infinity=False)
_scalars = {float: _finite | st.integers(-(10**6), 10**6), int: st.integers(), bool: st.booleans(), str: st.text()}


def _values_for(hint) -> st.SearchStrategy:
    """Values an annotation of a registered function accepts (the registry uses only these forms)."""
    import typing

    if hint in _scalars:
        return _scalars[hint]
    if hint is type(None):
        return st.none()
    args = typing.get_args(hint)
    if typing.get_origin(hint) is list:
        return st.lists(_values_for(args[0]), max_size=3)
    if args:
        return st.one_of([_values_for(arg) for arg in args])
    return st.none()


def _kwargs_for(name: str) -> st.SearchStrategy:
    types = FUNCTIONS[name].parameter_types()
    names = [p for p in list(types)[1:] if p not in INJECTED_PARAMETERS]
    return st.fixed_dictionaries({}, optional={p: _values_for(types[p]) for p in names})


@st.composite
def _steps(draw) -> Step:
    name = draw(st.sampled_from(sorted(FUNCTIONS)))
    per_channel = draw(st.booleans())
    func = draw(st.dictionaries(st.text(min_size=1, max_size=4), st.just(name), min_size=1)) if per_channel else name
    return Step(
        func=func,
        kwargs=draw(_kwargs_for(name)),
        name=draw(st.none() | st.text(max_size=10)),
        variable_components=draw(st.lists(st.sampled_from(STACK_COMPONENTS), max_size=3)),
        group_by="channel" if per_channel else draw(st.sampled_from([None, "channel"])),
        channel=draw(st.none() | st.integers(0, 9) | st.text(max_size=5)),
    )


_pipelines = st.builds(Pipeline, name=st.text(max_size=20), steps=st.lists(_steps(), max_size=4), description=st.text())


@settings(FUZZ, max_examples=200)
@given(_pipelines)
def test_generated_pipelines_round_trip_through_code(pipeline):
    assert parse_pipeline(pipeline_to_code(pipeline)) == pipeline


# --- explicit regressions --------------------------------------------------------------------------------


def _in_sigma(expression: str) -> str:
    """A pipeline whose only unusual part is on line 3: ``kwargs={'sigma': <expression>}``."""
    return HEADER + (
        f"pipeline = Pipeline(name='x', steps=[\n    Step(func='denoise', kwargs={{'sigma': {expression}}}),\n])\n"
    )


def test_a_5000_deep_minus_chain_is_a_pipeline_error_with_its_line():
    # was: RecursionError: maximum recursion depth exceeded during ast construction (no file, no line)
    with pytest.raises(PipelineError, match=rf"^bad.py:3: expression too complex: more than {MAX_ITEM_TOKENS} "):
        parse_pipeline(HEADER + "\nx = " + "-" * 5000 + "1\n", source="bad.py")


@pytest.mark.parametrize(
    "expression",
    ["-" * 1000 + "1", "not " * 5000 + "1", "a" + ".a" * 5000, "f" + "()" * 5000, "1" + "+1" * 5000, "x[0]" * 5000],
)
def test_deep_chains_without_brackets_are_pipeline_errors_with_their_line(expression):
    # was: RecursionError from ast.parse, or from the literal walker for the 1,000 minus signs
    with pytest.raises(PipelineError, match=r"^bad.py:3: expression too complex"):
        parse_pipeline(_in_sigma(expression), source="bad.py")


def test_1000_deep_nested_lists_are_a_pipeline_error_naming_the_limit():
    # was: "not valid Python: too many nested parentheses" (the parser's own limit, not stated)
    with pytest.raises(PipelineError, match=rf"^bad.py:3: brackets nested more than {MAX_BRACKETS} levels deep"):
        parse_pipeline(_in_sigma("[" * 1000 + "]" * 1000), source="bad.py")


def test_literals_nested_past_the_depth_limit_name_the_limit():
    # within the bracket limit of the text, but past the literal depth once inside Pipeline > steps > Step > kwargs
    depth = MAX_DEPTH - 3
    assert 4 + depth < MAX_BRACKETS
    with pytest.raises(PipelineError, match=rf"^bad.py:3: literals are nested more than {MAX_DEPTH} levels"):
        parse_pipeline(_in_sigma("[" * depth + "]" * depth), source="bad.py")


def _just_over_the_size_limit() -> str:
    text = HEADER + "pipeline = Pipeline(name='x', steps=[], description=[" + "1, " * (MAX_BYTES // 3) + "])\n"
    assert MAX_BYTES < len(text) < MAX_BYTES + 200
    return text


def test_text_over_the_size_limit_is_refused_naming_limit_and_size():
    # was: accepted after parsing (a 50 MB file: 140 s, 23.8 GB); this text is just over 1 MiB
    text = _just_over_the_size_limit()
    with pytest.raises(PipelineError, match=rf"^big.py: pipeline text of {len(text)} characters .* {MAX_BYTES}-byte"):
        parse_pipeline(text, source="big.py")
    with pytest.raises(PipelineError, match=rf"{len(text)} bytes is over the {MAX_BYTES}-byte limit"):
        parse_pipeline(text.encode(), source="big.py")


def test_a_file_over_the_size_limit_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.py"
    path.write_text(_just_over_the_size_limit())
    with pytest.raises(PipelineError, match=rf"pipeline file of \d+ bytes is over the {MAX_BYTES}-byte limit"):
        load_pipeline(path)


def test_multibyte_text_is_measured_in_bytes():
    text = HEADER + "pipeline = Pipeline(name='x', steps=[])\n" + "# " + "é" * (MAX_BYTES // 2) + "\n"
    assert len(text) < MAX_BYTES < len(text.encode())
    with pytest.raises(PipelineError, match=rf"bytes is over the {MAX_BYTES}-byte limit"):
        parse_pipeline(text)


def test_too_many_tokens_are_refused_before_parsing():
    text = HEADER + "x = [" + "a," * MAX_TOKENS + "]\n"
    assert len(text) < MAX_BYTES
    with pytest.raises(PipelineError, match=rf"^many.py:2: more than {MAX_TOKENS} tokens"):
        parse_pipeline(text, source="many.py")


def test_too_many_literal_elements_are_refused():
    text = HEADER + "pipeline = Pipeline(name='x', steps=[], description=[\n" + "1," * MAX_ELEMENTS + "])\n"
    with pytest.raises(PipelineError, match=rf"^many.py:3: .* more than {MAX_ELEMENTS} elements"):
        parse_pipeline(text, source="many.py")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEADER + "x = 1\x00\n", r"^bad.py:2: pipeline text holds a null byte"),
        (HEADER + "x = '\ud800'\n", r"^bad.py:2: pipeline text holds a lone surrogate"),
        (HEADER + "x = 1" + "0" * 5000 + "\n", r"^bad.py:2: not valid Python: Exceeds the limit"),
        (HEADER + "pipeline = Pipeline(name='x', steps=[], description=1e999)\n", r"^bad.py:2: numbers must be"),
        (HEADER + "pipeline = Pipeline(name='x', steps=[], description='\\ud800')\n", r"^bad.py:2: strings must be"),
        (HEADER + "pipeline = Pipeline(name='" + "x" * 70_000 + "', steps=[])\n", r"^bad.py:2: a string of 70000"),
        (HEADER + "pipeline = Pipeline(name='x', steps=5)\n", r"^bad.py:2: Pipeline: steps must be list of Step"),
        (HEADER + "pipeline = Step(func='denoise')\n", r"^bad.py:2: 'pipeline' must be assigned Pipeline"),
    ],
)
def test_other_failures_of_the_parser_are_pipeline_errors_with_their_line(text, expected):
    # was: ValueError / UnicodeEncodeError / TypeError / an 'inf' that cannot be written back / accepted
    with pytest.raises(PipelineError, match=expected):
        parse_pipeline(text, source="bad.py")


def test_a_file_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "latin.py"
    path.write_bytes(HEADER.encode() + b"pipeline = Pipeline(name='caf\xe9', steps=[])\n")
    # was: UnicodeDecodeError
    with pytest.raises(PipelineError, match=rf"^{path}:2: pipeline files must be UTF-8 text"):
        load_pipeline(path)


def test_a_directory_is_not_a_pipeline_file(tmp_path):
    # was: IsADirectoryError
    with pytest.raises(PipelineError, match="is not a regular file"):
        load_pipeline(tmp_path)


def test_a_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.py"
    path.write_bytes(b"\xef\xbb\xbf" + DEMO.encode())
    assert load_pipeline(path) == parse_pipeline(DEMO)
