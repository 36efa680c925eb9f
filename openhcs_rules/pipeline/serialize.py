"""Pipelines as readable Python, loaded by parsing, never by running.

A pipeline file is the text a person reads *and* the text the execution server receives over the
network. It is parsed with :mod:`ast` against an allow-list: a docstring, ``from openhcs_rules.pipeline
import ...``, and one assignment ``pipeline = Pipeline(...)`` whose arguments are literals and ``Step(...)``
calls. Anything else (a function call, an attribute, a name, a comprehension, an import of anything
else) is rejected with its line number. :func:`pipeline_to_code` writes the canonical text back;
``parse_pipeline(pipeline_to_code(p)) == p`` for every pipeline.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from openhcs_rules.errors import PipelineError
from openhcs_rules.pipeline.model import Pipeline, Step
from openhcs_rules.pipeline.registry import check_kwargs, get_function

_CONSTRUCTORS = {"Pipeline": Pipeline, "Step": Step}
_FIELDS = {
    "Pipeline": ("name", "steps", "description"),
    "Step": ("name", "func", "kwargs", "variable_components", "group_by", "channel"),
}
_IMPORT_MODULE = "openhcs_rules.pipeline"


class _Reject(Exception):
    def __init__(self, node: ast.AST, message: str) -> None:
        super().__init__(message)
        self.lineno = getattr(node, "lineno", 0)


def _literal(node: ast.AST) -> Any:
    """Evaluate an allowed literal node: constants, lists, tuples, dicts, signed numbers, Step calls."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool | type(None)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _literal(node.operand)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Reject(node, "a sign may only precede a number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(item) for item in node.elts]
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise _Reject(node, "'**' unpacking is not allowed in a pipeline file")
        keys = [_literal(key) for key in node.keys]  # type: ignore[arg-type]
        if not all(isinstance(key, str | int) for key in keys):
            raise _Reject(node, "dict keys must be strings or integers")
        return {key: _literal(value) for key, value in zip(keys, node.values, strict=True)}
    if isinstance(node, ast.Call):
        return _constructor(node)
    raise _Reject(
        node,
        f"{type(node).__name__} is not allowed here: a pipeline file holds only Pipeline(...) and Step(...)"
        " with literal arguments (strings, numbers, lists, dicts)",
    )


def _constructor(node: ast.Call) -> Any:
    if not isinstance(node.func, ast.Name) or node.func.id not in _CONSTRUCTORS:
        called = ast.unparse(node.func)
        raise _Reject(node, f"call to {called!r} is not allowed; only {', '.join(_CONSTRUCTORS)} may be called")
    kind = node.func.id
    if node.args:
        raise _Reject(node, f"{kind}(...) takes keyword arguments only, e.g. {kind}({_FIELDS[kind][0]}=...)")
    kwargs: dict[str, Any] = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            raise _Reject(node, "'**' unpacking is not allowed in a pipeline file")
        if keyword.arg not in _FIELDS[kind]:
            raise _Reject(keyword, f"{kind} has no field {keyword.arg!r}; fields: {', '.join(_FIELDS[kind])}")
        kwargs[keyword.arg] = _literal(keyword.value)
    try:
        if kind == "Step":
            _check_step(kwargs)
            if "channel" in kwargs and isinstance(kwargs["channel"], list):
                raise ValueError("channel must be one index or name")
        return _CONSTRUCTORS[kind](**kwargs)
    except PipelineError as exc:
        raise _Reject(node, str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise _Reject(node, f"{kind}: {exc}") from None


def _check_step(kwargs: dict[str, Any]) -> None:
    func = kwargs.get("func")
    if isinstance(func, dict):
        kwargs["func"] = {str(key): value for key, value in func.items()}
        names = list(kwargs["func"].values())
    elif isinstance(func, str):
        names = [func]
    else:
        raise PipelineError("Step needs func='<function name>' or a dict {channel: '<function name>'}")
    for name in names:
        if not isinstance(name, str):
            raise PipelineError(f"function names must be strings, got {name!r}")
        get_function(name)
        check_kwargs(name, kwargs.get("kwargs", {}))


def parse_pipeline(text: str, source: str = "<pipeline>") -> Pipeline:
    """Parse pipeline text into a :class:`Pipeline` without executing any of it."""
    try:
        tree = ast.parse(text, filename=source)
    except SyntaxError as exc:
        raise PipelineError(f"{source}:{exc.lineno}: not valid Python: {exc.msg}") from None
    pipeline: Pipeline | None = None
    try:
        for index, statement in enumerate(tree.body):
            if (
                index == 0
                and isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)
            ):
                continue  # module docstring
            if isinstance(statement, ast.ImportFrom):
                if statement.module != _IMPORT_MODULE or any(a.name not in _CONSTRUCTORS for a in statement.names):
                    raise _Reject(statement, f"only 'from {_IMPORT_MODULE} import Pipeline, Step' may be imported")
                continue
            if (
                isinstance(statement, ast.Assign)
                and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)
                and statement.targets[0].id == "pipeline"
            ):
                if pipeline is not None:
                    raise _Reject(statement, "'pipeline' is assigned twice")
                value = _literal(statement.value)
                if not isinstance(value, Pipeline):
                    raise _Reject(statement, "'pipeline' must be assigned Pipeline(...)")
                pipeline = value
                continue
            raise _Reject(
                statement,
                f"{type(statement).__name__} statement is not allowed: a pipeline file holds a docstring, the"
                " import of Pipeline/Step and 'pipeline = Pipeline(...)'",
            )
    except _Reject as exc:
        raise PipelineError(f"{source}:{exc.lineno}: {exc}") from None
    if pipeline is None:
        raise PipelineError(f"{source}: no 'pipeline = Pipeline(...)' assignment found")
    if not all(isinstance(step, Step) for step in pipeline.steps):
        raise PipelineError(f"{source}: Pipeline(steps=[...]) must be a list of Step(...)")
    docstring = ast.get_docstring(tree)
    if docstring and not pipeline.description:
        pipeline = Pipeline(pipeline.name, pipeline.steps, docstring)
    return pipeline


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and parse a pipeline file; errors name the file and line."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"pipeline file {path} does not exist: check the 'pipeline' key of the config")
    return parse_pipeline(path.read_text(), source=str(path))


def _code(value: Any, indent: int) -> str:
    pad = " " * indent
    if isinstance(value, Step | Pipeline):
        kind = type(value).__name__
        defaults = Step(func="x") if kind == "Step" else None
        parts = []
        for name in _FIELDS[kind]:
            item = getattr(value, name)
            if kind == "Pipeline" and name == "description":
                continue  # the description is the file's docstring
            if defaults is not None and name != "func" and item == getattr(defaults, name):
                continue
            parts.append(f"{name}={_code(item, indent + 4)}")
        one_line = f"{kind}({', '.join(parts)})"
        if len(one_line) + indent <= 100 and kind == "Step":
            return one_line
        inner = ",\n".join(f"{pad}    {part}" for part in parts)
        return f"{kind}(\n{inner},\n{pad})"
    if isinstance(value, list):
        if value and any(isinstance(item, Step) for item in value):
            inner = ",\n".join(f"{pad}    {_code(item, indent + 4)}" for item in value)
            return f"[\n{inner},\n{pad}]"
        return "[" + ", ".join(_code(item, indent) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_code(k, indent)}: {_code(v, indent)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid Python string literal
    if isinstance(value, int | float | bool) or value is None:
        return repr(value)
    raise TypeError(f"cannot write {type(value).__name__} into a pipeline file")


def pipeline_to_code(pipeline: Pipeline) -> str:
    """Canonical pipeline file text for a :class:`Pipeline` (inverse of :func:`parse_pipeline`)."""
    doc = pipeline.description or f"Pipeline {pipeline.name}."
    if '"""' in doc:
        raise ValueError("a pipeline description cannot contain triple quotes")
    body = _code(pipeline, 0)
    return f'"""{doc}"""\n\nfrom {_IMPORT_MODULE} import Pipeline, Step\n\npipeline = {body}\n'
