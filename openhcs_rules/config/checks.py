"""The one check a screen config passes before anything runs: `validate` and the workflow both call it.

:func:`validate_screen_config` checks the shape of a config (its schema) without looking at the machine;
:func:`check_screen` adds what only the machine can tell: plate folders that exist, an output folder that
is neither empty nor a filesystem root nor inside an input plate, viewers that may listen where they are
asked to, and a pipeline file that parses. Two entry points that called different checks could disagree
("valid" from ``openhcs-rules validate``, then a refused run), so there is only this one.

Paths from a config are also where a hostile or careless config would escape: with ``allowed_roots``
(what an execution server confines remote screens to) every path must resolve, symlinks followed, inside
one of those folders.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from openhcs_rules.config.validate import invalid_config, validate_screen_config
from openhcs_rules.errors import ConfigError, PipelineError

#: characters a path from a config may not hold: they split shell commands and log lines
_CONTROL = {chr(code) for code in range(32)} | {"\x7f"}


def check_screen(
    config: dict[str, Any],
    *,
    workdir: str | Path | None = None,
    allowed_roots: Iterable[str | Path] | None = None,
) -> dict[str, Any]:
    """Validate ``config`` (schema, defaults) and check it against this machine; raise one ConfigError listing
    every problem, or return the validated config.

    Relative paths are taken from ``workdir`` (default: the current folder, where Snakemake runs).
    """
    screen = validate_screen_config(config)
    base = Path(workdir) if workdir is not None else Path.cwd()
    roots = [Path(root).resolve() for root in allowed_roots] if allowed_roots is not None else None
    problems = [
        *_output_dir_problems(screen, base),
        *_plate_problems(screen, base),
        *_streaming_problems(screen),
        *_pipeline_problems(screen, base),
    ]
    if roots is not None:
        problems += _confinement_problems(screen, base, roots)
    if problems:
        raise invalid_config(problems)
    return screen


def _resolve(path: str, base: Path) -> Path:
    expanded = Path(path).expanduser()
    return (expanded if expanded.is_absolute() else base / expanded).resolve()


def _control_characters(key: str, value: str) -> str | None:
    bad = sorted({repr(char) for char in value if char in _CONTROL})
    if bad:
        return f"{key}: {value!r} contains control character(s) {', '.join(bad)}; paths may not hold them."
    return None


def _output_dir_problems(screen: dict[str, Any], base: Path) -> Iterator[str]:
    out = screen["output"]["dir"]
    if not out.strip():
        yield "output.dir: is empty; name the folder that receives the results (e.g. results)."
        return
    problem = _control_characters("output.dir", out)
    if problem:
        yield problem
        return
    resolved = _resolve(out, base)
    if resolved == Path(resolved.anchor):
        yield f"output.dir: {out!r} is the filesystem root; name a folder of its own (e.g. results)."
    elif resolved == Path.home().resolve():
        yield f"output.dir: {out!r} is your home folder; name a folder of its own (e.g. ~/results)."
    elif resolved.exists() and not resolved.is_dir():
        yield f"output.dir: {out!r} is a file ({resolved}); name a folder."
    for name, plate in screen["plates"].items():
        if plate["source"] == "disk" and plate.get("path"):
            source = _resolve(plate["path"], base)
            if resolved == source or source in resolved.parents:
                yield (
                    f"output.dir: {out!r} is inside the input plate {name!r} ({source}); input plates are "
                    "never written to: choose a folder outside it."
                )


def _platemap_problems(screen: dict[str, Any], base: Path) -> Iterator[str]:
    """A plate map that cannot be read or is malformed is refused now, not after every well was processed.
    (Whether its wells are on the plate is known once discovery ran: assembly checks that.)"""
    from openhcs_rules.plate.platemap import read_platemap

    for name, plate in screen["plates"].items():
        path = plate.get("platemap")
        if not path:
            continue
        problem = _control_characters(f"plates.{name}.platemap", path)
        if problem:
            yield problem
            continue
        resolved = _resolve(path, base)
        if not resolved.is_file():
            yield f"plates.{name}.platemap: {path!r} is not a file (looked for {resolved})."
            continue
        try:
            read_platemap(resolved)
        except ConfigError as exc:
            yield f"plates.{name}.platemap: {exc}"


def _plate_problems(screen: dict[str, Any], base: Path) -> Iterator[str]:
    yield from _platemap_problems(screen, base)
    for name, plate in screen["plates"].items():
        if plate["source"] != "disk":
            continue
        path = plate["path"]
        problem = _control_characters(f"plates.{name}.path", path)
        if problem:
            yield problem
            continue
        resolved = _resolve(path, base)
        if not resolved.exists():
            yield (
                f"plates.{name}.path: {path!r} does not exist (looked for {resolved}; relative paths are taken "
                "from the folder Snakemake runs in)."
            )
        elif not resolved.is_dir():
            yield f"plates.{name}.path: {path!r} is a file, not a plate folder ({resolved})."


def _streaming_problems(screen: dict[str, Any]) -> Iterator[str]:
    from openhcs_rules.config.streaming import viewer_targets

    try:
        viewer_targets(screen["streaming"])
    except ConfigError as exc:
        yield str(exc)


def _pipeline_problems(screen: dict[str, Any], base: Path) -> Iterator[str]:
    from openhcs_rules.pipeline.serialize import load_pipeline

    path = screen["pipeline"]
    problem = _control_characters("pipeline", path)
    if problem:
        yield problem
        return
    resolved = _resolve(path, base)
    if not resolved.is_file():
        yield f"pipeline: {path!r} is not a file (looked for {resolved})."
        return
    try:
        load_pipeline(resolved)
    except PipelineError as exc:
        yield f"pipeline: {exc}"


def config_paths(screen: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every (key, path) a validated config names: what confinement to allowed folders must cover."""
    yield "output.dir", screen["output"]["dir"]
    yield "pipeline", screen["pipeline"]
    for name, plate in screen["plates"].items():
        if plate.get("path"):
            yield f"plates.{name}.path", plate["path"]
        if plate.get("platemap"):
            yield f"plates.{name}.platemap", plate["platemap"]
    for key in ("password_file", "data_dir"):
        if screen["omero"].get(key):
            yield f"omero.{key}", screen["omero"][key]
    if screen["streaming"].get("curve_keys_dir"):
        yield "streaming.curve_keys_dir", screen["streaming"]["curve_keys_dir"]


def _confinement_problems(screen: dict[str, Any], base: Path, roots: list[Path]) -> Iterator[str]:
    for key, path in config_paths(screen):
        resolved = _resolve(path, base)
        if not any(resolved == root or root in resolved.parents for root in roots):
            allowed = ", ".join(str(root) for root in roots)
            yield f"{key}: {path!r} resolves to {resolved}, outside the allowed folders ({allowed})."


def check_screen_file(path: str | Path, *, pipeline: str | None = None) -> dict[str, Any]:
    """Read a YAML screen config and :func:`check_screen` it from the current folder, naming the file on error."""
    from openhcs_rules.config.validate import read_screen_yaml

    raw = read_screen_yaml(path)
    if pipeline is not None:
        raw = {**raw, "pipeline": pipeline}
    try:
        return check_screen(raw, workdir=os.getcwd())
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
