"""Pipelines as readable Python, loaded by parsing, never by running.

A pipeline file is the text a person reads *and* the text the execution server receives over the
network. It is parsed with :mod:`ast` against an allow-list: a docstring, ``from openhcs_rules.pipeline
import ...``, and one assignment ``pipeline = Pipeline(...)`` whose arguments are literals and ``Step(...)``
calls. Anything else (a function call, an attribute, a name, a comprehension, an import of anything
else) is rejected with its line number. :func:`pipeline_to_code` writes the canonical text back;
``parse_pipeline(pipeline_to_code(p)) == p`` for every pipeline.

The text may come from another machine, so size, token count and nesting are bounded before :mod:`ast`
sees it (the ``MAX_*`` limits below, each named in its error), keyword values are checked against the
function's annotations, and every failure is a :class:`PipelineError` naming the file and, where known, the line.
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import math
import tokenize
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openhcs_rules.errors import PipelineError
from openhcs_rules.pipeline.model import Pipeline, Step
from openhcs_rules.pipeline.registry import (
    KeywordError,
    check_kwargs,
    describe_type,
    describe_value,
    get_function,
    value_matches,
)

_CONSTRUCTORS = {"Pipeline": Pipeline, "Step": Step}
_FIELDS = {
    "Pipeline": ("name", "steps", "description"),
    "Step": ("name", "func", "kwargs", "variable_components", "group_by", "channel"),
}
_FIELD_TYPES = {kind: typing.get_type_hints(cls) for kind, cls in _CONSTRUCTORS.items()}
_IMPORT_MODULE = "openhcs_rules.pipeline"

# Limits. Pipeline text comes from other machines, and ast.parse has no limits of its own below the
# interpreter's: a 50 MB list literal took 140 s and 23.8 GB, 3,000 minus signs end in a bare RecursionError.
# A real pipeline is a few KB with literals nested 5 deep (Pipeline > steps > Step > kwargs > value).
#: bytes of pipeline text, checked before anything else
MAX_BYTES = 1 << 20
#: significant tokens; bounds ast.parse's memory (~0.5 KB per token: 200,000 tokens ~ 100 MB, 0.3 s)
MAX_TOKENS = 200_000
#: nesting of literals inside Pipeline(...) (Pipeline(...) itself is level 1, a step's kwargs level 4)
MAX_DEPTH = 32
#: nesting of brackets in the text; above MAX_DEPTH so that a deep literal is named as such, with its line
MAX_BRACKETS = 2 * MAX_DEPTH
#: tokens in one item (between commas) at one bracket level; bounds unbracketed nesting (``- - - 1``, ``a.b.c``)
MAX_ITEM_TOKENS = 32
#: values (numbers, strings, lists, dicts, keys...) of all literals together; below MAX_TOKENS / 2 so that a
#: list of numbers meets this limit, which names what is wrong, before the token limit
MAX_ELEMENTS = 50_000
#: characters of one string literal
MAX_STRING = 65_536

_OPENING, _CLOSING = frozenset("([{"), frozenset(")]}")
_UNCOUNTED_TOKENS = frozenset(
    {tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER, tokenize.ENCODING}
)


class _Reject(Exception):
    def __init__(self, node: ast.AST, message: str) -> None:
        super().__init__(message)
        self.lineno = getattr(node, "lineno", 0)


def _where(source: str, line: int | None) -> str:
    """``file:line`` for error messages, or just the file when the line is unknown."""
    return f"{source}:{line}" if line else source


def _line_of(text: str | bytes, index: int) -> int:
    """1-based line of a character (or byte) offset."""
    if isinstance(text, str):
        return text.count("\n", 0, index) + 1
    return text.count(b"\n", 0, index) + 1


# --- reading literals ----------------------------------------------------------------------------------------


@dataclass
class _Budget:
    """Elements left for the whole file: deep or wide literals are rejected before they are built."""

    elements: int = MAX_ELEMENTS

    def spend(self, node: ast.AST, count: int = 1) -> None:
        self.elements -= count
        if self.elements < 0:
            raise _Reject(node, f"the literals of this pipeline have more than {MAX_ELEMENTS} elements (the limit)")


def _literal(node: ast.AST, budget: _Budget, depth: int = 1, calls: bool = True) -> Any:
    """Evaluate an allowed literal node: constants, lists, tuples, dicts, signed numbers, Step calls.

    ``depth`` bounds recursion (the RecursionError of a deep file would otherwise escape); ``calls`` is False
    inside a Step, whose values are plain data: a Step(...) inside kwargs would reach the function.
    """
    if depth > MAX_DEPTH:
        raise _Reject(node, f"literals are nested more than {MAX_DEPTH} levels deep (the limit)")
    budget.spend(node)
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool | type(None)):
        return _constant(node)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _literal(node.operand, budget, depth + 1, calls=False)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Reject(node, "a sign may only precede a number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(item, budget, depth + 1, calls) for item in node.elts]
    if isinstance(node, ast.Dict):
        return _dict(node, budget, depth, calls)
    if isinstance(node, ast.Call):
        if not calls:
            raise _Reject(node, f"call to {_describe(node.func)!r} is not allowed here: a step holds only literals")
        return _constructor(node, budget, depth)
    raise _Reject(
        node,
        f"{type(node).__name__} is not allowed here: a pipeline file holds only Pipeline(...) and Step(...)"
        " with literal arguments (strings, numbers, lists, dicts)",
    )


def _constant(node: ast.Constant) -> Any:
    """Strings and numbers that can be written back and stored: bounded, finite, valid Unicode."""
    value = node.value
    if isinstance(value, float) and not math.isfinite(value):
        raise _Reject(node, f"numbers must be finite, got {value}")
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise _Reject(node, f"a string of {len(value)} characters is longer than the limit of {MAX_STRING}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Reject(node, "strings must be valid Unicode (this one holds a lone surrogate)") from None
    return value


def _dict(node: ast.Dict, budget: _Budget, depth: int, calls: bool) -> dict[Any, Any]:
    if any(key is None for key in node.keys):
        raise _Reject(node, "'**' unpacking is not allowed in a pipeline file")
    keys = [_literal(key, budget, depth + 1, calls=False) for key in node.keys if key is not None]
    if not all(isinstance(key, str | int) for key in keys):
        raise _Reject(node, "dict keys must be strings or integers")
    return {key: _literal(value, budget, depth + 1, calls) for key, value in zip(keys, node.values, strict=True)}


def _describe(node: ast.AST, limit: int = 80) -> str:
    """Source text of a node for an error message; bounded, and safe on nodes too deep to unparse."""
    try:
        text = ast.unparse(node)
    except (RecursionError, ValueError):
        text = f"<{type(node).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _constructor(node: ast.Call, budget: _Budget, depth: int) -> Any:
    if not isinstance(node.func, ast.Name) or node.func.id not in _CONSTRUCTORS:
        raise _Reject(
            node, f"call to {_describe(node.func)!r} is not allowed; only {', '.join(_CONSTRUCTORS)} may be called"
        )
    kind = node.func.id
    if node.args:
        raise _Reject(node, f"{kind}(...) takes keyword arguments only, e.g. {kind}({_FIELDS[kind][0]}=...)")
    kwargs: dict[str, Any] = {}
    nodes: dict[str, ast.expr] = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            raise _Reject(node, "'**' unpacking is not allowed in a pipeline file")
        if keyword.arg not in _FIELDS[kind]:
            raise _Reject(keyword, f"{kind} has no field {keyword.arg!r}; fields: {', '.join(_FIELDS[kind])}")
        kwargs[keyword.arg] = _literal(keyword.value, budget, depth + 1, calls=kind == "Pipeline")
        nodes[keyword.arg] = keyword.value
    _check_fields(kind, kwargs, nodes)
    try:
        if kind == "Step":
            _check_step(kwargs)
        return _CONSTRUCTORS[kind](**kwargs)
    except KeywordError as exc:
        raise _Reject(_keyword_node(nodes.get("kwargs", node), exc.keyword), str(exc)) from None
    except PipelineError as exc:
        raise _Reject(node, str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise _Reject(node, f"{kind}: {exc}") from None


def _check_fields(kind: str, kwargs: dict[str, Any], nodes: dict[str, ast.expr]) -> None:
    """Field types from the model's own annotations, so ``steps=5`` or ``name=[1]`` fail here with a line."""
    for field, value in kwargs.items():
        expected = _FIELD_TYPES[kind][field]
        if not value_matches(value, expected, lenient=False):
            wanted, got = describe_type(expected), describe_value(value)
            raise _Reject(nodes[field], f"{kind}: {field} must be {wanted}, got {got}")


def _keyword_node(kwargs_node: ast.AST, keyword: str) -> ast.AST:
    """The value node of one keyword in ``kwargs={...}``, to point the error at its line."""
    if isinstance(kwargs_node, ast.Dict):
        for key, value in zip(kwargs_node.keys, kwargs_node.values, strict=True):
            if isinstance(key, ast.Constant) and key.value == keyword:
                return value
    return kwargs_node


def _check_step(kwargs: dict[str, Any]) -> None:
    func = kwargs.get("func")
    if isinstance(func, dict):
        kwargs["func"] = {str(key): value for key, value in func.items()}
        names = list(kwargs["func"].values())
        if not names:
            raise PipelineError("Step(func={...}) needs at least one channel: function pair")
    elif isinstance(func, str):
        names = [func]
    else:
        raise PipelineError("Step needs func='<function name>' or a dict {channel: '<function name>'}")
    label = kwargs.get("name") or "+".join(sorted(set(names)))
    for name in names:
        get_function(name)
        check_kwargs(name, kwargs.get("kwargs", {}), step=label)


# --- from text to tree, bounded ------------------------------------------------------------------------------


def _decode(data: bytes, source: str) -> str:
    """UTF-8 text of a file or message (a BOM is allowed); other encodings are refused with the line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = _line_of(data, exc.start)
        raise PipelineError(f"{_where(source, line)}: pipeline files must be UTF-8 text: {exc.reason}") from None


def _check_text(text: str, source: str) -> None:
    """Size and characters, before any parsing: cheap checks that keep huge or binary input out of ast."""
    if len(text) > MAX_BYTES:  # every character is at least one byte; no need to encode 50 MB to know
        raise PipelineError(f"{source}: pipeline text of {len(text)} characters is over the {MAX_BYTES}-byte limit")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        line = _line_of(text, exc.start)
        where = _where(source, line)
        raise PipelineError(f"{where}: pipeline text holds a lone surrogate, not valid Unicode") from None
    if size > MAX_BYTES:
        raise PipelineError(f"{source}: pipeline text of {size} bytes is over the {MAX_BYTES}-byte limit")
    if "\0" in text:
        line = _line_of(text, text.index("\0"))
        raise PipelineError(f"{_where(source, line)}: pipeline text holds a null byte; is this a binary file?")


def _prescan(text: str, source: str) -> None:
    """Bound token count and nesting with the tokenizer before ast.parse sees the text.

    ast.parse recurses once per nesting level and keeps ~1 KB per token; its own failures (RecursionError,
    MemoryError) carry no line. The tokenizer is linear, knows strings and comments, and gives lines. Counting
    tokens per comma-separated item at each bracket level bounds nesting without brackets (``- - - 1``,
    ``a.b.c``, ``f()()``), so the tree ast.parse builds is at most MAX_BRACKETS x MAX_ITEM_TOKENS deep.
    Malformed text is left to ast.parse, which says precisely what is wrong.
    """
    items = [0]  # tokens of the current item, per open bracket
    count = 0
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type in _UNCOUNTED_TOKENS:
                continue
            count += 1
            line = token.start[0]
            if count > MAX_TOKENS:
                raise PipelineError(f"{_where(source, line)}: more than {MAX_TOKENS} tokens (the limit)")
            if token.type == tokenize.NEWLINE:
                items = [0]
            elif token.type == tokenize.OP and token.string == ",":
                items[-1] = 0
            elif token.type != tokenize.STRING:  # adjacent strings are one flat literal
                if token.type == tokenize.OP and token.string in _CLOSING and len(items) > 1:
                    items.pop()
                items[-1] += 1
                if items[-1] > MAX_ITEM_TOKENS:
                    raise PipelineError(
                        f"{_where(source, line)}: expression too complex: more than {MAX_ITEM_TOKENS} operators"
                        " and names in one item (the limit); a pipeline holds only literals"
                    )
                if token.type == tokenize.OP and token.string in _OPENING:
                    items.append(0)
                    if len(items) - 1 > MAX_BRACKETS:
                        raise PipelineError(
                            f"{_where(source, line)}: brackets nested more than {MAX_BRACKETS} levels deep (the limit)"
                        )
    except (tokenize.TokenError, SyntaxError):
        return


def _parse_tree(text: str, source: str) -> ast.Module:
    """ast.parse with every failure turned into a PipelineError (it can raise more than SyntaxError)."""
    try:
        return ast.parse(text, filename=source)
    except SyntaxError as exc:
        raise PipelineError(f"{_where(source, exc.lineno)}: not valid Python: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise PipelineError(f"{source}: too deeply nested or too large to parse") from None
    except ValueError as exc:  # null bytes and the like, on interpreters that do not call them SyntaxError
        raise PipelineError(f"{source}: not valid Python: {exc}") from None


# --- the allow-list ------------------------------------------------------------------------------------------


def _is_docstring(index: int, statement: ast.stmt) -> bool:
    return (
        index == 0
        and isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _assigned_value(statement: ast.stmt) -> ast.expr | None:
    """The value of ``pipeline = <value>``, or None for any other statement."""
    if (
        isinstance(statement, ast.Assign)
        and len(statement.targets) == 1
        and isinstance(statement.targets[0], ast.Name)
        and statement.targets[0].id == "pipeline"
    ):
        return statement.value
    return None


def _pipeline_of(tree: ast.Module) -> Pipeline | None:
    """The one ``pipeline = Pipeline(...)`` of a module, checking every statement against the allow-list."""
    pipeline: Pipeline | None = None
    budget = _Budget()
    for index, statement in enumerate(tree.body):
        if _is_docstring(index, statement):
            continue
        if isinstance(statement, ast.ImportFrom):
            if statement.module != _IMPORT_MODULE or any(a.name not in _CONSTRUCTORS for a in statement.names):
                raise _Reject(statement, f"only 'from {_IMPORT_MODULE} import Pipeline, Step' may be imported")
            continue
        value = _assigned_value(statement)
        if value is not None:
            if pipeline is not None:
                raise _Reject(statement, "'pipeline' is assigned twice")
            if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "Pipeline"):
                raise _Reject(statement, "'pipeline' must be assigned Pipeline(...)")
            pipeline = _literal(value, budget)
            continue
        raise _Reject(
            statement,
            f"{type(statement).__name__} statement is not allowed: a pipeline file holds a docstring, the"
            " import of Pipeline/Step and 'pipeline = Pipeline(...)'",
        )
    return pipeline


def parse_pipeline(text: str | bytes, source: str = "<pipeline>") -> Pipeline:
    """Parse pipeline text into a :class:`Pipeline` without executing any of it.

    Every failure is a :class:`PipelineError` naming ``source`` and, where known, the line: the text may come
    from another machine, and a bare RecursionError or TypeError would say nothing about what to fix.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise PipelineError(f"{source}: pipeline text of {len(text)} bytes is over the {MAX_BYTES}-byte limit")
        text = _decode(text, source)
    _check_text(text, source)
    _prescan(text, source)
    tree = _parse_tree(text, source)
    try:
        pipeline = _pipeline_of(tree)
    except _Reject as exc:
        raise PipelineError(f"{_where(source, exc.lineno)}: {exc}") from None
    except (RecursionError, MemoryError):  # not reachable within the limits above; a last guard
        raise PipelineError(f"{source}: too deeply nested or too large to load") from None
    if pipeline is None:
        raise PipelineError(f"{source}: no 'pipeline = Pipeline(...)' assignment found")
    docstring = ast.get_docstring(tree)
    if docstring and not pipeline.description:
        pipeline = Pipeline(pipeline.name, pipeline.steps, docstring)
    return pipeline


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and parse a pipeline file; errors name the file and line.

    The size is checked on disk before reading, so a huge file is refused without being loaded.
    """
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"pipeline file {path} does not exist: check the 'pipeline' key of the config")
    if not path.is_file():
        raise PipelineError(f"pipeline file {path} is not a regular file: check the 'pipeline' key of the config")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise PipelineError(f"{path}: pipeline file of {size} bytes is over the {MAX_BYTES}-byte limit")
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)  # the file may have grown since stat
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read pipeline file: {exc.strerror or exc}") from None
    return parse_pipeline(data, source=str(path))


# --- writing -------------------------------------------------------------------------------------------------


def _code(value: Any, indent: int) -> str:
    pad = " " * indent
    if isinstance(value, Step | Pipeline):
        kind = type(value).__name__
        defaults = Step(func="x") if kind == "Step" else None
        parts = []
        for name in _FIELDS[kind]:
            item = getattr(value, name)
            if kind == "Pipeline" and name == "description" and (not item or _docstring_safe(item)):
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
        return _string_code(value)
    if isinstance(value, int | float | bool) or value is None:
        return repr(value)
    raise TypeError(f"cannot write {type(value).__name__} into a pipeline file")


def _string_code(value: str) -> str:
    """A JSON string is a valid Python string literal; non-ASCII stays readable unless it cannot be UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value)  # escapes a lone surrogate as a \\u escape, which Python reads back
    return json.dumps(value, ensure_ascii=False)


def _docstring_safe(text: str) -> bool:
    """Whether ``text`` in triple quotes reads back as ``text``: no escapes, no closing quotes, already in
    :func:`inspect.cleandoc` form (the docstring is read through it), nothing the parser would normalise."""
    printable = all(char == "\n" or char.isprintable() for char in text)
    quotes = '"""' not in text and not text.endswith('"')
    return printable and quotes and "\\" not in text and inspect.cleandoc(text) == text


def pipeline_to_code(pipeline: Pipeline) -> str:
    """Canonical pipeline file text for a :class:`Pipeline` (inverse of :func:`parse_pipeline`).

    The description is the file's docstring when it reads back unchanged, else a ``description=`` argument;
    an empty description writes no docstring (a docstring would become the description on reading back).
    """
    body = _code(pipeline, 0)
    doc = pipeline.description
    head = f'"""{doc}"""\n\n' if doc and _docstring_safe(doc) else ""
    return f"{head}from {_IMPORT_MODULE} import Pipeline, Step\n\npipeline = {body}\n"
