"""The screen config schema as the one source of defaults, choices and help for code outside validation.

``config.schema.yaml`` says what every key accepts and what it defaults to; the CLI's defaults and choices,
the well job's options and the streaming section's parser read them from here instead of repeating them.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

import yaml

from openhcs_rules.errors import ConfigError

#: in a schema path: the schema of any key of a mapping (``additionalProperties``), e.g. a plate of ``plates``
ANY_KEY = "*"


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The shipped schema, parsed once per process (with libyaml where available: jobs read it at start-up)."""
    from openhcs_rules.config.validate import default_schema_path

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    schema: dict[str, Any] = yaml.load(default_schema_path().read_text(), Loader=loader)  # noqa: S506 - safe loader
    return schema


def schema_node(*path: str) -> dict[str, Any]:
    """The schema of the config key at ``path`` (``"output", "pyramid_levels"``; ``ANY_KEY`` for any key)."""
    node = load_schema()
    for key in path:
        node = node["additionalProperties"] if key == ANY_KEY else node["properties"][key]
    return node


def schema_default(*path: str) -> Any:
    """The default the schema gives the key at ``path`` (a copy: callers may change it)."""
    node = schema_node(*path)
    if "default" not in node:
        raise KeyError(f"the config schema gives {'.'.join(path)} no default")
    return copy.deepcopy(node["default"])


def schema_choices(*path: str) -> list[Any] | None:
    """The values the key at ``path`` is limited to (its ``enum``), or None."""
    choices = schema_node(*path).get("enum")
    return list(choices) if choices is not None else None


def validate_section(name: str, value: Any) -> dict[str, Any]:
    """Check one top-level section of a screen config against the schema and fill in its defaults.

    The same rules and messages as the whole config's validation, for code that receives one section on its
    own (a job given the ``streaming`` block as JSON): a value is accepted here exactly when the schema does.
    """
    from openhcs_rules.config.validate import apply_defaults, schema_problems

    schema = {"type": "object", "properties": {name: schema_node(name)}}
    data = {name: copy.deepcopy(value)}
    problems = schema_problems(schema, data)
    if problems:
        raise ConfigError("; ".join(problems))
    section: dict[str, Any] = apply_defaults(schema, data)[name]
    return section
