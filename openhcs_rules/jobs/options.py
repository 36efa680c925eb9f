"""The options of a well job, defined once: the CLI's arguments, the rule's params and the resume key.

Every option is one field of :class:`WellJobOptions`. Its metadata says where it lives in the screen config
(whose schema gives its default, choices and help), how the CLI text becomes the value, and how it enters
the *run key* that decides whether a finished well can be skipped: by value, by a file's bytes, or not at all
(only for an option that cannot change a well's results, like the live viewers). From that one definition:

* :meth:`WellJobOptions.add_arguments` / :meth:`from_args`: the ``process-well(s)`` command line;
* :meth:`from_screen` / :meth:`to_argv`: what the workflow's rule passes, per plate, as one argument list;
* :meth:`run_key_fields`, :meth:`key_files`, :meth:`key_values`: what the resume key covers.

A field added here is passed by the rule, parsed by the CLI and covered by the run key with no other edit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from openhcs_rules.config.schema import schema_choices, schema_default, schema_node

#: how an option enters the run key: its value, the bytes of the file it names, or not at all
KeyKind = Literal["value", "file", "none"]
#: an option that has no earlier value (see :attr:`OptionSpec.earlier`)
NO_EARLIER_VALUE: Any = object()


@dataclass(frozen=True)
class OptionSpec:
    """What a :class:`WellJobOptions` field is beyond its name, type and default."""

    help: str
    #: the key path in the screen config (and its schema: default, choices, help); None: not a config key
    config: tuple[str, ...] | None = None
    #: a plate may set its own value: ``plates.<plate>.<last key of config>`` overrides the screen's
    per_plate: bool = False
    #: CLI text (or a Python value) -> the option's value
    parse: Callable[[Any], Any] = str
    #: value -> CLI text
    render: Callable[[Any], str] = str
    key: KeyKind = "value"
    choices: tuple[Any, ...] | None = None
    #: what versions before this option existed did: at this value the option stays out of the run key, so
    #: the wells they finished still count as done (their results are what this value gives)
    earlier: Any = NO_EARLIER_VALUE


def parse_nuclei_channel(value: Any) -> int | str | None:
    """A channel as given (index or name): '2' and 2 are index 2, '' / 'None' / 'null' / None are unset."""
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value)
    if text in ("", "None", "null"):
        return None
    return int(text) if text.isdigit() else text


def _optional_path(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _json_mapping(value: Any) -> dict[str, Any] | None:
    """The streaming block: a mapping, or its JSON text; '' and None are off."""
    if value in (None, ""):
        return None
    mapping = json.loads(value) if isinstance(value, str) else value
    if not isinstance(mapping, dict):
        raise ValueError(f"expected a JSON object, got {value!r}")
    return dict(mapping)


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def option(
    help: str | None = None,  # noqa: A002 - the argparse word
    *,
    config: tuple[str, ...] | None = None,
    default: Any = dataclasses.MISSING,
    per_plate: bool = False,
    parse: Callable[[Any], Any] | None = None,
    render: Callable[[Any], str] = str,
    key: KeyKind = "value",
    earlier: Any = NO_EARLIER_VALUE,
) -> Any:
    """A :class:`WellJobOptions` field. With ``config``, the schema gives its default, choices, help and type."""
    node = schema_node(*config) if config else {}
    if default is dataclasses.MISSING:
        if config is None:
            raise TypeError("an option that is not a config key needs a default")
        default = schema_default(*config)
    if parse is None:
        parse = {"integer": int, "number": float}.get(str(node.get("type")), str)
    choices = schema_choices(*config) if config else None
    text = help or " ".join(str(node.get("description", "")).split())
    spec = OptionSpec(text, config, per_plate, parse, render, key, tuple(choices) if choices else None, earlier)
    return field(default=default, metadata={"option": spec})


@dataclass(frozen=True)
class WellJobOptions:
    """How a well job runs the pipeline and writes its images: everything but the plate, pipeline and wells.

    Fields in their historical positional order (``process_well(..., illumination, nuclei_channel, gpu, ...)``).
    """

    illumination: str | None = option(
        "flat-field profiles (.npz) of the illumination rule; none: no correction", default=None, key="file",
        parse=_optional_path,
    )  # fmt: skip
    nuclei_channel: int | str | None = option(config=("nuclei_channel",), per_plate=True, parse=parse_nuclei_channel)
    gpu: str = option(config=("gpu",))
    backend: str = option(config=("output", "backend"))
    pyramid_levels: int = option(config=("output", "pyramid_levels"))
    #: live viewers: never changes a well's results, so never makes a finished well run again. Not taken from
    #: the config by from_screen (so not a rule param: switching streaming on or off must not rerun well jobs);
    #: the rule passes the block the viewers rule wrote (rules/viewers.smk)
    streaming: dict[str, Any] | None = option(
        "the config's streaming block as JSON (live viewers)", default=None, parse=_json_mapping,
        render=_json_text, key="none",
    )  # fmt: skip
    #: what the image outputs hold (raw, processed, both). Before it existed wells wrote processed images,
    #: so ``processed`` leaves their run key as it was (they are skipped); raw and both redo them
    images: str = option(config=("output", "images"), earlier="processed")

    def __post_init__(self) -> None:
        for item, spec in self.specs():
            value = getattr(self, item.name)
            if value is None:
                continue
            value = spec.parse(value)
            if spec.choices is not None and value not in spec.choices:
                choices = ", ".join(map(str, spec.choices))
                raise ValueError(f"{item.name} must be one of {choices}, not {value!r}")
            object.__setattr__(self, item.name, value)

    @classmethod
    def of(cls, options: WellJobOptions | None, *values: Any, **fields: Any) -> WellJobOptions:
        """``options``, or the options these field values make (a job function's two ways to be called)."""
        if options is None:
            return cls(*values, **fields)
        if values or fields:
            raise TypeError("give the options either as a WellJobOptions or as its fields, not both")
        return options

    # -- the one definition, read back ------------------------------------------------------------------

    @classmethod
    def specs(cls) -> list[tuple[dataclasses.Field[Any], OptionSpec]]:
        """Every option field with its spec, in field order."""
        return [(item, item.metadata["option"]) for item in dataclasses.fields(cls)]

    @classmethod
    def field_names(cls) -> list[str]:
        return [item.name for item in dataclasses.fields(cls)]

    @staticmethod
    def flag(name: str) -> str:
        """The CLI flag of a field: ``pyramid_levels`` -> ``--pyramid-levels``."""
        return "--" + name.replace("_", "-")

    @classmethod
    def run_key_fields(cls) -> list[str]:
        """The fields a well's result depends on: changing any of them makes a finished well run again."""
        return [item.name for item, spec in cls.specs() if spec.key != "none"]

    def key_files(self) -> list[str | None]:
        """The files whose bytes the run key covers (None where the option is unset), in field order."""
        return [getattr(self, item.name) for item, spec in self.specs() if spec.key == "file"]

    def key_values(self) -> dict[str, Any]:
        """The options the run key covers by value (an option at its :attr:`OptionSpec.earlier` value is left out)."""
        values = {}
        for item, spec in self.specs():
            value = getattr(self, item.name)
            if spec.key == "value" and (spec.earlier is NO_EARLIER_VALUE or value != spec.earlier):
                values[item.name] = value
        return values

    # -- the command line -------------------------------------------------------------------------------

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, names: list[str] | None = None) -> None:
        """One ``--flag`` per field (or per field of ``names``), with its default, choices and help."""
        for item, spec in cls.specs():
            if names is None or item.name in names:
                parser.add_argument(
                    cls.flag(item.name), dest=item.name, type=spec.parse, default=item.default,
                    choices=spec.choices, help=spec.help,
                )  # fmt: skip

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> WellJobOptions:
        return cls(**{item.name: getattr(args, item.name) for item, _ in cls.specs()})

    def to_argv(self) -> list[str]:
        """The arguments that give these options to ``process-well(s)``: every field that is set.

        One list, for a rule param quoted element by element (``{params.options:q}``); an unset option is
        left out rather than passed as an empty word (only fields whose default is None can be unset).
        """
        argv = []
        for item, spec in self.specs():
            value = getattr(self, item.name)
            if value is not None:
                argv += [self.flag(item.name), spec.render(value)]
        return argv

    # -- the workflow -----------------------------------------------------------------------------------

    @classmethod
    def from_screen(cls, screen: Mapping[str, Any], plate: str | None = None, **given: Any) -> WellJobOptions:
        """The options of ``plate``'s jobs in a validated screen config; ``given`` sets the rest (files).

        A per-plate option (the nuclei channel) takes the plate's own setting where it has one.
        """
        values: dict[str, Any] = {}
        entry = screen["plates"][plate] if plate is not None else {}
        for item, spec in cls.specs():
            if spec.config is None:
                continue
            if spec.per_plate and spec.config[-1] in entry:
                values[item.name] = entry[spec.config[-1]]
                continue
            values[item.name] = _lookup(screen, spec.config, item.default)
        return cls(**{**values, **given})


def _lookup(config: Mapping[str, Any], path: tuple[str, ...], missing: Any) -> Any:
    """The value at ``path`` in a config, or ``missing`` where a key is absent (a config not yet validated)."""
    node: Any = config
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return missing
        node = node[key]
    return node
