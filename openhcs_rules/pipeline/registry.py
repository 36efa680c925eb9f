"""The allow-list of processing functions a pipeline may name, and what kind of result each returns.

Pipeline files name functions by string; only names in this table can run. ``kind`` tells the executor
how to treat the result: ``image`` replaces the planes, ``labels`` stores a label image per
site/z/t, ``measure`` turns labels + all channels into object rows.

Installed packages may add functions through the ``openhcs_rules.functions`` entry-point group (see
docs/plugins.md). The pipeline text still names only strings: a name is looked up in the built-in table
first, then among the entry points' *names* (never as a module path), and a plugin module is imported only
when a pipeline names one of its functions or the functions are listed. A plugin function's signature is
checked when it is loaded, so its keywords are type-checked like a built-in's.
"""

from __future__ import annotations

import collections.abc
import functools
import importlib
import importlib.metadata
import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from openhcs_rules.core.arrays import MEMORY_TYPES, NUMPY
from openhcs_rules.errors import PipelineError

#: the entry-point group through which installed packages register processing functions
ENTRY_POINT_GROUP = "openhcs_rules.functions"
#: ``FunctionSpec.source`` of the functions this package ships
BUILT_IN = "built-in"
#: the kinds a plugin function may have (``measure`` functions get injected arguments only: not offered yet)
PLUGIN_KINDS = ("image", "labels")
#: plugin names are dotted (``lab.cellpose``); built-in names never are, so a plugin cannot shadow one
_PLUGIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
#: the attribute :func:`processing_function` sets on a plugin function
TRAITS_ATTRIBUTE = "__openhcs_function__"


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    module: str
    attribute: str
    kind: str  # image | labels | measure
    doc: str
    source: str = BUILT_IN  # or the distribution that registered it
    memory_types: tuple[str, ...] = MEMORY_TYPES  # what the function accepts; plugins default to numpy only

    def load(self) -> Callable[..., Any]:
        module: Any = importlib.import_module(self.module)  # whatever the dotted attribute names
        return functools.reduce(getattr, self.attribute.split("."), module)

    def memory_type_for(self, requested: str) -> str:
        """The memory type to call the function on: the run's, unless the function cannot take it (then numpy)."""
        return requested if requested in self.memory_types else NUMPY

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
        FunctionSpec(
            "measure_compartments",
            "openhcs_rules.functions.compartments",
            "measure_compartments",
            "measure",
            "nuclei (and cells grown into `cell_channel`, cytoplasm): CellProfiler shape, intensity, texture",
        ),
    )
}

#: parameters the executor fills in itself; a pipeline may not set them
INJECTED_PARAMETERS = ("illumination", "labels_2d", "intensities", "channel_names")


def get_function(name: str) -> FunctionSpec:
    """The spec of an allowed function, or a PipelineError listing the allowed names.

    Built-in names are answered from the table without looking at any installed package, so a broken or
    hostile plugin cannot change what ``denoise`` means, nor slow down a pipeline that uses no plugin.
    """
    spec = FUNCTIONS.get(name)
    if spec is not None:
        return spec
    entries = [entry for entry in plugin_entries() if entry.name == name]
    if not entries:
        raise _unknown_function(name)
    if len(entries) > 1:
        raise PipelineError(f"function {name!r} is registered twice: {entries[0]} and {entries[1]}; uninstall one")
    if not _PLUGIN_NAME.fullmatch(name):
        raise PipelineError(f"{entries[0]}: {_NAME_RULE}")
    return _load_plugin(entries[0])


def _unknown_function(name: str) -> PipelineError:
    """'unknown function' with the closest name and every name a pipeline may use (from metadata only)."""
    import difflib

    plugins = sorted({entry.name for entry in plugin_entries() if _PLUGIN_NAME.fullmatch(entry.name)})
    close = difflib.get_close_matches(name, [*FUNCTIONS, *plugins], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    extra = f"; from installed plugins: {', '.join(plugins)}" if plugins else ""
    return PipelineError(f"unknown function {name!r}.{hint} Available: {', '.join(sorted(FUNCTIONS))}{extra}")


# --- functions from installed packages (entry points) --------------------------------------------------------

_NAME_RULE = (
    "plugin function names must be dotted, like 'mylab.cellpose' (letters, digits, underscores and dots):"
    " built-in names have no dot, so a plugin can never replace one"
)


@dataclass(frozen=True)
class FunctionTraits:
    """What a plugin declares about its function: the kind of result and the memory types it accepts."""

    kind: str = "image"
    memory: tuple[str, ...] = (NUMPY,)

    def problems(self) -> list[str]:
        """Why these traits cannot be used (empty when they can)."""
        found = []
        if self.kind not in PLUGIN_KINDS:
            found.append(f"kind must be one of {', '.join(PLUGIN_KINDS)}, got {self.kind!r}")
        if NUMPY not in self.memory or not set(self.memory) <= set(MEMORY_TYPES):
            found.append(f"memory must include 'numpy' and name only {', '.join(MEMORY_TYPES)}, got {self.memory!r}")
        return found


def processing_function(
    *, kind: str = "image", memory: tuple[str, ...] = (NUMPY,)
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a plugin function's kind (``image`` or ``labels``) and memory types (``("numpy", "cupy")``).

    Without it a plugin function is an ``image`` step that is given numpy arrays only: the executor moves a
    GPU stack to the host before the call, so a function written for numpy is never handed a cupy array.
    """
    traits = FunctionTraits(kind, tuple(memory))
    problems = traits.problems()
    if problems:
        raise ValueError("; ".join(problems))

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        setattr(function, TRAITS_ATTRIBUTE, traits)
        return function

    return mark


@dataclass(frozen=True)
class PluginEntry:
    """One entry point of the group, read from package metadata (nothing imported)."""

    name: str
    value: str  # "package.module:function"
    distribution: str

    def __str__(self) -> str:
        return f"entry point {self.name!r} = {self.value!r} of distribution {self.distribution!r}"


@functools.cache
def plugin_entries() -> tuple[PluginEntry, ...]:
    """Every entry point of :data:`ENTRY_POINT_GROUP` in the installed packages' metadata, read once per process.

    Only metadata is read; no plugin module is imported here. Install a plugin, then start a new process
    (or call :func:`clear_plugin_cache`).
    """
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    entries = {
        PluginEntry(ep.name, ep.value, ep.dist.name if ep.dist is not None else "<unknown distribution>")
        for ep in found
    }
    return tuple(sorted(entries, key=lambda entry: (entry.name, entry.distribution)))


def clear_plugin_cache() -> None:
    """Forget discovered and loaded plugins (after installing one in a running process, and in tests)."""
    plugin_entries.cache_clear()
    _load_plugin.cache_clear()
    _parameter_types.cache_clear()


@functools.cache
def _load_plugin(entry: PluginEntry) -> FunctionSpec:
    """Import a plugin function and check its signature; every failure names the distribution and entry point."""
    module, _, attribute = entry.value.partition(":")
    if not module or not attribute:
        raise PipelineError(f"{entry}: the value must be 'package.module:function'")
    try:
        loaded: Any = importlib.import_module(module.strip())
        function = functools.reduce(getattr, attribute.strip().split("."), loaded)
    except Exception as exc:  # noqa: BLE001 - whatever the plugin raises on import, the user must see it
        raise PipelineError(f"{entry} failed to load: {type(exc).__name__}: {exc}") from exc
    traits = _traits_of(function, entry)
    _check_signature(function, entry)
    doc = (inspect.getdoc(function) or "").split("\n", 1)[0]
    return FunctionSpec(
        entry.name, module.strip(), attribute.strip(), traits.kind, doc, entry.distribution, traits.memory
    )


def _traits_of(function: Any, entry: PluginEntry) -> FunctionTraits:
    """The traits :func:`processing_function` set, or the default (an image step on numpy)."""
    if not callable(function):
        raise PipelineError(f"{entry}: {type(function).__name__} is not a function")
    traits = getattr(function, TRAITS_ATTRIBUTE, FunctionTraits())
    if not isinstance(traits, FunctionTraits):
        raise PipelineError(f"{entry}: {TRAITS_ATTRIBUTE} must be set with @processing_function(...)")
    problems = traits.problems()
    if problems:
        raise PipelineError(f"{entry}: {'; '.join(problems)}")
    return traits


def _check_signature(function: Callable[..., Any], entry: PluginEntry) -> None:
    """The contract: ``f(stack, *, keyword: <literal type> = default, ...)`` with nothing hidden from the checker.

    The stack comes first (positional); every other parameter can be passed by keyword and carries an
    annotation :func:`value_matches` really checks, so a pipeline's literal is judged at load time, as for a
    built-in. ``*args``/``**kwargs`` would take any keyword unchecked, so they are refused.
    """
    try:
        parameters = list(inspect.signature(function).parameters.values())
        hints = typing.get_type_hints(function)
    except Exception as exc:  # noqa: BLE001 - an annotation naming something undefined, a C function...
        raise PipelineError(f"{entry}: cannot read the signature: {type(exc).__name__}: {exc}") from exc
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not parameters or parameters[0].kind not in positional:
        raise PipelineError(f"{entry}: the first parameter must be the image stack, passed by position")
    for parameter in parameters:
        problem = _parameter_problem(parameter, hints, first=parameter is parameters[0])
        if problem:
            raise PipelineError(f"{entry}: parameter {parameter.name!r} {problem}")


def _parameter_problem(parameter: inspect.Parameter, hints: dict[str, Any], first: bool) -> str | None:
    """Why one parameter breaks the contract, or None."""
    if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
        return "is *args/**kwargs: every keyword must be named so that its value can be checked"
    if parameter.name in INJECTED_PARAMETERS:
        return f"uses a name the executor reserves ({', '.join(INJECTED_PARAMETERS)})"
    if first:
        return None
    if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
        return "is positional-only: a pipeline passes keywords"
    if parameter.name not in hints:
        return "has no annotation: its type must be declared so that pipeline values can be checked"
    hint = hints[parameter.name]
    if not type_is_understood(hint):
        return (
            f"is annotated {describe_type(hint)}, which a literal cannot be checked against;"
            " use bool, int, float, str, None, Literal[...], or lists/tuples/dicts of those"
        )
    if parameter.default is not inspect.Parameter.empty and not value_matches(parameter.default, hint):
        return f"has default {parameter.default!r}, which is not {describe_type(hint)}"
    return None


@dataclass(frozen=True)
class FunctionListing:
    """One line of ``openhcs-rules functions``: a usable function, or an entry point that cannot be used."""

    name: str
    source: str
    spec: FunctionSpec | None
    problem: str | None = None

    @property
    def signature(self) -> str:
        return signature_text(self.spec) if self.spec else ""


def signature_text(spec: FunctionSpec) -> str:
    """``(stack, sigma: float = 1.0)``: what a pipeline may set, in the words of the load-time errors.

    Parameters the executor fills in (illumination, labels...) are left out: a pipeline cannot set them.
    """
    types_ = spec.parameter_types()
    parts = []
    for index, parameter in enumerate(spec.parameters().values()):
        if parameter.name in INJECTED_PARAMETERS:
            continue
        if index == 0:
            parts.append(parameter.name)
            continue
        default = "" if parameter.default is inspect.Parameter.empty else f" = {parameter.default!r}"
        parts.append(f"{parameter.name}: {describe_type(types_[parameter.name])}{default}")
    return f"({', '.join(parts)})"


def list_functions() -> list[FunctionListing]:
    """Built-in functions, then every plugin entry point, loaded (plugins are imported) or with its problem."""
    listing = [FunctionListing(name, BUILT_IN, spec) for name, spec in sorted(FUNCTIONS.items())]
    for entry in plugin_entries():
        try:
            spec = get_function(entry.name)
        except PipelineError as exc:
            listing.append(FunctionListing(entry.name, entry.distribution, None, str(exc)))
            continue
        if spec.source != entry.distribution:  # a built-in name registered by a plugin: ignored
            listing.append(FunctionListing(entry.name, entry.distribution, None, f"{entry}: {_NAME_RULE}"))
            continue
        listing.append(FunctionListing(entry.name, entry.distribution, spec))
    return listing


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
    missing = [p for p in accepted if parameters[p].default is inspect.Parameter.empty and p not in kwargs]
    if missing:  # only plugins have required keywords; a built-in has a default for each
        raise PipelineError(f"step {step or name!r}: function {name!r} needs keyword(s) {', '.join(missing)}")


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
