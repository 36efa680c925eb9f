"""The allow-list of processing functions a pipeline may name, and what kind of result each returns.

Pipeline files name functions by string; only names in this table can run. ``kind`` tells the executor
how to treat the result: ``image`` replaces the planes, ``labels`` stores a label image per
site/z/t, ``measure`` turns labels + all channels into object rows.
"""

from __future__ import annotations

import collections.abc
import functools
import importlib
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from openhcs_rules.errors import PipelineError


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    module: str
    attribute: str
    kind: str  # image | labels | measure
    doc: str

    def load(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.attribute)

    def parameters(self) -> dict[str, inspect.Parameter]:
        return dict(inspect.signature(self.load()).parameters)

    def parameter_types(self) -> dict[str, Any]:
        """Each parameter's resolved annotation (``Any`` where there is none or it cannot be resolved)."""
        return _parameter_types(self)


FUNCTIONS: dict[str, FunctionSpec] = {
    spec.name: spec
    for spec in (
        FunctionSpec(
            "flatfield_correct",
            "openhcs_rules.functions.illumination",
            "flatfield_correct",
            "image",
            "divide by the plate's illumination profile (estimated per channel from the plate)",
        ),
        FunctionSpec(
            "subtract_background",
            "openhcs_rules.functions.background",
            "subtract_background",
            "image",
            "remove smooth background under objects smaller than `radius`",
        ),
        FunctionSpec(
            "project_z",
            "openhcs_rules.functions.projection",
            "project_z",
            "image",
            "z projection (max, mean) of the stack",
        ),
        FunctionSpec(
            "denoise", "openhcs_rules.functions.denoise", "denoise", "image", "gaussian (or median) denoising"
        ),
        FunctionSpec(
            "segment_nuclei",
            "openhcs_rules.functions.segmentation",
            "segment_nuclei",
            "labels",
            "threshold + seeded watershed that splits touching nuclei",
        ),
        FunctionSpec(
            "measure_objects",
            "openhcs_rules.functions.measurement",
            "measure_objects",
            "measure",
            "per-object area, centroid and per-channel intensities",
        ),
    )
}

#: parameters the executor fills in itself; a pipeline may not set them
INJECTED_PARAMETERS = ("illumination", "labels_2d", "intensities", "channel_names")


def get_function(name: str) -> FunctionSpec:
    """The spec of an allowed function, or a PipelineError listing the allowed names."""
    try:
        return FUNCTIONS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, FUNCTIONS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise PipelineError(f"unknown function {name!r}.{hint} Available: {', '.join(sorted(FUNCTIONS))}") from None


class KeywordError(PipelineError):
    """A PipelineError about one keyword argument, so the loader can point at that keyword's line."""

    def __init__(self, message: str, keyword: str) -> None:
        super().__init__(message)
        self.keyword = keyword


def check_kwargs(name: str, kwargs: dict[str, Any], step: str | None = None) -> None:
    """Reject keyword arguments the function does not take, or of the wrong type, at load time.

    A typo or ``sigma="abc"`` would otherwise load fine and then fail every well of the screen with an obscure
    error from deep inside the function; here it fails once, naming the step, the keyword and the expected type.
    """
    if not isinstance(kwargs, dict):
        raise PipelineError(f"step {step or name!r}: kwargs must be a dict, got {type(kwargs).__name__}")
    parameters = get_function(name).parameters()
    names = list(parameters)
    if names and names[0] not in INJECTED_PARAMETERS:
        names = names[1:]  # the first parameter is the stack the executor passes
    accepted = [p for p in names if p not in INJECTED_PARAMETERS]
    types_ = get_function(name).parameter_types()
    for key, value in kwargs.items():
        if key not in accepted:
            raise KeywordError(
                f"function {name!r} has no parameter {key!r}; it takes: {', '.join(accepted) or 'none'}", str(key)
            )
        expected = types_.get(key, Any)
        if not value_matches(value, expected):
            wanted, got = describe_type(expected), describe_value(value)
            raise KeywordError(f"step {step or name!r}: keyword {key!r} must be {wanted}, got {got}", key)


@functools.cache
def _parameter_types(spec: FunctionSpec) -> dict[str, Any]:
    """Resolve annotations once per function: they are strings under ``from __future__ import annotations``."""
    function = spec.load()
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # an unresolvable name (e.g. imported under TYPE_CHECKING): use what is there
        hints = {}
    resolved: dict[str, Any] = {}
    for parameter in inspect.signature(function).parameters.values():
        raw = parameter.annotation
        fallback = Any if raw is inspect.Parameter.empty or isinstance(raw, str) else raw
        resolved[parameter.name] = hints.get(parameter.name, fallback)
    return resolved


# --- checking literal values against annotations -------------------------------------------------------------

_SEQUENCES: tuple[Any, ...] = (
    list,
    tuple,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Collection,
    collections.abc.Iterable,
)
_MAPPINGS: tuple[Any, ...] = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_UNIONS: tuple[Any, ...] = (typing.Union, types.UnionType)
_SCALARS: dict[Any, str] = {bool: "bool", int: "int", float: "float", str: "str", type(None): "None"}


def _is_any(hint: Any) -> bool:
    """Annotations that accept every value: ``Any``, ``object``, a missing annotation, a type variable."""
    return hint is Any or hint is object or hint is inspect.Parameter.empty or isinstance(hint, typing.TypeVar)


def _matches_scalar(value: Any, hint: Any) -> bool:
    """Python's numeric tower, minus bool: ``True`` for ``sigma: float`` is a mistake, 3 for 3.0 is not."""
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return value is None


def _matches_items(value: Any, origin: Any, args: tuple[Any, ...], lenient: bool) -> bool:
    """Containers: pipeline files write every sequence as a list, so tuple[...] accepts a list."""
    if origin in _MAPPINGS:
        if not isinstance(value, dict):
            return False
        key, item = args if len(args) == 2 else (Any, Any)
        return all(value_matches(k, key, lenient) and value_matches(v, item, lenient) for k, v in value.items())
    if not isinstance(value, list | tuple):
        return False
    if origin is tuple and args and args[-1] is not Ellipsis:
        if args == ((),):  # tuple[()]
            return not value
        return len(value) == len(args) and all(value_matches(v, a, lenient) for v, a in zip(value, args, strict=True))
    item = args[0] if args else Any
    return all(value_matches(v, item, lenient) for v in value)


def value_matches(value: Any, hint: Any, lenient: bool = True) -> bool:
    """Whether a literal from a pipeline file fits an annotation.

    Understood: bool, int, float, str, None, unions, Optional, Literal, Annotated, list/tuple/Sequence/Iterable
    and dict/Mapping of those. Anything else (a numpy array, a callable, a class of some library) cannot be
    judged from a literal: ``lenient`` accepts it (the function may well convert a list), strict mode requires
    an instance.
    """
    if _is_any(hint):
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return value_matches(value, args[0], lenient)
    if origin in _UNIONS:
        return any(value_matches(value, arg, lenient) for arg in args)
    if origin is Literal:
        return any(type(value) is type(arg) and value == arg for arg in args)
    if hint is None or hint in _SCALARS:
        return _matches_scalar(value, type(None) if hint is None else hint)
    if origin in _SEQUENCES or origin in _MAPPINGS:
        return _matches_items(value, origin, args, lenient)
    if hint in _SEQUENCES or hint in _MAPPINGS:
        return _matches_items(value, hint, (), lenient)
    if isinstance(hint, type) and isinstance(value, hint):
        return True
    return lenient


def type_is_understood(hint: Any) -> bool:
    """Whether :func:`value_matches` really checks ``hint`` rather than accepting any value for want of knowing."""
    if _is_any(hint) or hint is None or hint in _SCALARS or hint in _SEQUENCES or hint in _MAPPINGS:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return True
    if origin is typing.Annotated:
        return type_is_understood(args[0])
    if origin in _UNIONS or origin in _SEQUENCES or origin in _MAPPINGS:
        return all(arg is Ellipsis or arg == () or type_is_understood(arg) for arg in args)
    return False


def describe_type(hint: Any) -> str:
    """An annotation in words for error messages: ``float or None``, ``list of str``, ``one of 'max', 'mean'``."""
    if _is_any(hint):
        return "any value"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is None or hint in _SCALARS:
        return _SCALARS[type(None) if hint is None else hint]
    if origin is typing.Annotated:
        return describe_type(args[0])
    if origin in _UNIONS:
        return " or ".join(describe_type(arg) for arg in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin in _MAPPINGS:
        key, item = args if len(args) == 2 else (Any, Any)
        return f"dict of {describe_type(key)} to {describe_type(item)}"
    if origin in _SEQUENCES:
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"list of {len(args)} items ({', '.join(describe_type(arg) for arg in args)})"
        return f"list of {describe_type(args[0] if args else Any)}"
    return getattr(hint, "__name__", None) or repr(hint)


def describe_value(value: Any, limit: int = 60) -> str:
    """``str 'abc'``: the type and a repr short enough for one line of an error message."""
    shown = repr(value)
    if len(shown) > limit:
        shown = shown[: limit - 3] + "..."
    return f"{type(value).__name__} {shown}"
