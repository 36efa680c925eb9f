"""Validate a screen config and fill in defaults, with messages a biologist can act on.

Snakemake's own ``validate()`` reports jsonschema's raw text; here every problem names the key path
(``plates.demo.sorce``), says what is wrong, and suggests the closest valid key for a typo.
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any

import yaml

from openhcs_rules.errors import ConfigError


def default_schema_path() -> Path:
    """The schema, shipped inside the package so an installed package validates on its own.

    ``workflow/schemas/config.schema.yaml`` is a link to this file: one schema, two ways to reach it.
    """
    return Path(__file__).resolve().parent / "config.schema.yaml"


def _load_schema(schema_path: str | Path | None) -> dict[str, Any]:
    """The shipped schema (parsed once per process, see config.schema) or the one at ``schema_path``."""
    if not schema_path:
        from openhcs_rules.config.schema import load_schema

        return load_schema()
    path = Path(schema_path)
    if not path.exists():
        raise ConfigError(f"config schema not found at {path}: is the workflow/ folder next to the package?")
    return yaml.safe_load(path.read_text())


def apply_defaults(schema: dict[str, Any], data: Any) -> Any:
    """Fill object defaults recursively (properties and additionalProperties)."""
    if not isinstance(data, dict) or schema.get("type") not in (None, "object"):
        return data
    for key, sub in schema.get("properties", {}).items():
        if key not in data and "default" in sub:
            data[key] = copy.deepcopy(sub["default"])
        if key in data:
            data[key] = apply_defaults(sub, data[key])
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in data:
            if key not in schema.get("properties", {}):
                data[key] = apply_defaults(extra, data[key])
    return data


def _key_path(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _describe(error: Any) -> str:
    """One readable line for a jsonschema ValidationError."""
    where = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        known = set(allowed)
        unknown = [k for k in error.instance if k not in known]
        lines = []
        for key in unknown:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            prefix = f"{where}." if error.absolute_path else ""
            lines.append(f"unknown key '{prefix}{key}'.{hint} Allowed here: {', '.join(allowed)}.")
        return " ".join(lines)
    if error.validator == "required":
        return f"{where}: {error.message}; add it (see config/README.md)."
    if error.validator == "enum":
        options = ", ".join(map(str, error.validator_value))
        return f"{where}: {error.instance!r} is not one of: {options}."
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"{where}: expected {expected}, got {type(error.instance).__name__} {error.instance!r}."
    if error.validator == "pattern" and error.validator_value.startswith("^[A-Za-z0-9]"):
        return (
            f"{where}: {error.instance!r} cannot be used as a plate name; use letters, digits, '_', '.', '-'"
            " (it becomes a folder name and the {plate} wildcard)."
        )
    if error.validator == "oneOf" and error.schema.get("description"):  # e.g. wells_per_job: 'auto' or N >= 1
        options = " or ".join(_option(choice) for choice in error.validator_value)
        return f"{where}: {error.instance!r} is not allowed; use {options}."
    return f"{where}: {error.message}."


def _option(choice: dict[str, Any]) -> str:
    """'an integer >= 1', "'auto'": one alternative of a oneOf, in words."""
    if "const" in choice:
        return repr(choice["const"])
    words = f"an {choice.get('type', 'value')}"
    return f"{words} >= {choice['minimum']}" if "minimum" in choice else words


def validate_screen_config(config: dict[str, Any], schema_path: str | Path | None = None) -> dict[str, Any]:
    """Return a validated copy of ``config`` with defaults filled in; raise ConfigError listing every problem."""
    if not isinstance(config, dict):
        raise ConfigError("the config must be a mapping of keys (plates, pipeline, output, ...)")
    schema = _load_schema(schema_path)
    data = copy.deepcopy(config)
    problems = schema_problems(schema, data)
    if problems:
        raise invalid_config(problems)
    data = apply_defaults(schema, data)
    problems = list(_plate_source_problems(data["plates"]))
    if problems:
        raise invalid_config(problems)
    return data


def schema_problems(schema: dict[str, Any], data: Any) -> list[str]:
    """Every way ``data`` breaks ``schema``, one readable line each (see :func:`_describe`), in key order."""
    import jsonschema

    errors = _full_match_validator(jsonschema)(schema).iter_errors(data)
    return [_describe(error) for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path)))]


def invalid_config(problems: list[str]) -> ConfigError:
    """The one error a refused config raises: every problem on a line of its own."""
    lines = "\n".join(f"  - {problem}" for problem in problems)
    return ConfigError(f"invalid screen config:\n{lines}")


#: the most pixel data a generated demo plate may hold (it is written to disk, then read by every job)
MAX_SYNTHETIC_BYTES = 16 << 30


def _plate_source_problems(plates: dict[str, Any]) -> Any:
    """What each plate's source needs beyond the schema (fills in format omero for OMERO plates)."""
    for name, plate in plates.items():
        if plate["source"] == "disk" and not plate.get("path"):
            yield f"plates.{name}: a disk plate needs 'path' (the plate folder)."
        if plate["source"] == "omero":
            if not plate.get("plate_id"):
                yield f"plates.{name}: an OMERO plate needs 'plate_id' (the plate's id on the server)."
            plate["format"] = "omero"
        if plate["source"] == "synthetic":
            yield from _synthetic_size_problems(name, plate["synthetic"])
        yield from _pattern_problems(name, plate)


def _pattern_problems(name: str, plate: dict[str, Any]) -> Any:
    """A pattern plate's expression compiles safely; pattern keys on any other plate are a mistake."""
    from openhcs_rules.formats.pattern import compile_pattern

    if plate.get("format") == "pattern":
        try:
            compile_pattern(plate.get("pattern"), key=f"plates.{name}.pattern")
        except ConfigError as exc:
            yield str(exc)
    else:
        for key in ("pattern", "pattern_layout"):
            if key in plate:
                used = f"this plate's format is {plate['format']!r}"
                yield f"plates.{name}.{key}: only used with 'format: pattern' ({used})."


def _synthetic_size_problems(name: str, spec: dict[str, Any]) -> Any:
    planes = len(spec["wells"]) * spec["sites"] * spec["channels"] * spec["z_planes"] * spec["timepoints"]
    total = planes * spec["size"] ** 2 * 2  # uint16
    if total > MAX_SYNTHETIC_BYTES:
        yield (
            f"plates.{name}.synthetic: {planes} planes of {spec['size']}x{spec['size']} would be "
            f"{total / 2**30:.1f} GiB of images, more than the {MAX_SYNTHETIC_BYTES >> 30} GiB a demo plate may "
            "hold; use fewer wells, sites, planes or a smaller size."
        )


def _full_match_validator(jsonschema: Any) -> Any:
    """Draft 2020-12 with anchored patterns matched against the whole string.

    jsonschema applies ``pattern`` with ``re.search``, where ``$`` also matches before a final newline: a
    plate name ``"p\n"`` passed ``^[A-Za-z0-9][A-Za-z0-9_.-]*$`` and then split the shell command it was
    put in. A pattern written as ``^...$`` means the whole value, so it is matched with ``re.fullmatch``.
    """
    base = jsonschema.Draft202012Validator
    search = base.VALIDATORS["pattern"]

    def pattern(validator: Any, regex: str, instance: Any, schema: dict[str, Any]) -> Any:
        if isinstance(instance, str) and regex.startswith("^") and regex.endswith("$"):
            if re.fullmatch(regex, instance) is None:
                yield jsonschema.ValidationError(f"{instance!r} does not match {regex!r}")
            return
        yield from search(validator, regex, instance, schema)

    return jsonschema.validators.extend(base, {"pattern": pattern})


def read_screen_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML screen config holds, or a ConfigError naming the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys (plates, pipeline, output, ...)")
    return raw


def load_screen_config(path: str | Path, schema_path: str | Path | None = None) -> dict[str, Any]:
    """Read a YAML screen config from a file and validate its shape (see :func:`check_screen` for the rest)."""
    raw = read_screen_yaml(path)
    try:
        return validate_screen_config(raw, schema_path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
