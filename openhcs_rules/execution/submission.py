"""A submitted screen becomes a run folder, or is refused with every problem named, before anything starts.

What a client sends is text: a YAML screen config and a pipeline (its text, or the name of a pipeline in the
server's library). Nothing of it is executed: the YAML is read without aliases (a few hundred bytes of
anchors can expand into gigabytes when walked) and within size and depth bounds; the pipeline is parsed
against the allow-list (:func:`openhcs_rules.pipeline.serialize.parse_pipeline`), never run. The config then
passes the same :func:`~openhcs_rules.config.checks.check_screen` a local run passes, with the paths it
names confined to the operator's data roots and the run's own folder: a remote screen reads only plates the
operator opened to it and writes only into its run folder. OMERO plates are those of the server's own OMERO
(the operator's ``omero`` block replaces the client's: a client cannot point the server at another host).

The run folder holds ``screen.yaml`` (the config as it will run: pipeline and output rewritten into the
folder), ``pipeline.py`` and, once running, Snakemake's working files and the results. A refused submission
leaves no folder behind.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from openhcs_rules.config.checks import check_screen
from openhcs_rules.core.files import atomic_write_text
from openhcs_rules.errors import ConfigError, PipelineError

#: the largest config text accepted (a 1536-well screen with per-plate options is a few KB)
MAX_CONFIG_BYTES = 256 * 1024
#: the largest pipeline text accepted over the network (the parser's own limit is higher)
MAX_PIPELINE_BYTES = 512 * 1024
#: nesting of YAML mappings/sequences accepted (the deepest valid config is 4 levels)
MAX_CONFIG_DEPTH = 16
#: names of pipelines in the server's library, and run ids: no separators, no dots at the start
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: the config as it runs, and its pipeline, inside the run folder
SCREEN_FILE = "screen.yaml"
PIPELINE_FILE = "pipeline.py"
#: where a run's results go, inside its folder (a relative ``output.dir`` of the client goes below it)
RESULTS_DIR = "results"


class SubmissionError(ConfigError):
    """A submission refused before anything started; the message names every problem (file, line, key)."""


@dataclass(frozen=True)
class ServerPolicy:
    """What the server's operator configured: where runs live and what a remote screen may reach."""

    runs_root: Path
    data_roots: tuple[Path, ...] = ()
    pipeline_library: Path | None = None  # folder of <name>.py pipelines clients may name
    omero: dict[str, Any] | None = None  # the server's OMERO (host, port, user, password_env, data_dir)
    max_config_bytes: int = MAX_CONFIG_BYTES
    max_pipeline_bytes: int = MAX_PIPELINE_BYTES

    def library_pipelines(self) -> list[str]:
        """Names of the pipelines in the library (what a client may pass as ``pipeline_name``)."""
        if self.pipeline_library is None or not self.pipeline_library.is_dir():
            return []
        return sorted(
            path.stem
            for path in self.pipeline_library.glob("*.py")
            if SAFE_NAME.match(path.stem) and path.is_file() and not path.is_symlink()
        )


@dataclass(frozen=True)
class PreparedRun:
    """A run folder ready for Snakemake: its config as validated, and the plates it names."""

    run_id: str
    folder: Path
    screen: dict[str, Any] = field(repr=False)
    plates: tuple[str, ...] = ()


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses anchors and aliases (expansion bombs) and bounds nesting."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise SubmissionError(
                f"config line {event.start_mark.line + 1}: YAML aliases (*name) are not accepted in a "
                "submitted config; write the values out"
            )
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise SubmissionError(
                f"config line {event.start_mark.line + 1}: YAML anchors (&name) are not accepted in a "
                "submitted config; write the values out"
            )
        depth = getattr(self, "_depth", 0)
        if depth >= MAX_CONFIG_DEPTH:
            raise SubmissionError(
                f"config line {event.start_mark.line + 1}: nested deeper than {MAX_CONFIG_DEPTH} levels"
            )
        self._depth = depth + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth


def read_submitted_config(text: str, limit: int = MAX_CONFIG_BYTES) -> dict[str, Any]:
    """The mapping a submitted YAML config holds; SubmissionError (with the line) for anything else."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise SubmissionError(f"config: {size} bytes, over the limit of {limit} bytes")
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SubmissionError(f"config: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SubmissionError("config: must be a mapping of keys (plates, pipeline, output, ...)")
    return data


def check_run_id(run_id: str) -> str:
    """A run id as the server makes them; anything else (a path, a dot name) is refused."""
    if not isinstance(run_id, str) or not SAFE_NAME.match(run_id):
        raise SubmissionError(f"run id {run_id!r} is not a run id (letters, digits, '-' and '_' only)")
    return run_id


def pipeline_text(policy: ServerPolicy, text: str | None, name: str | None) -> str:
    """The pipeline's text: the one sent, or the library's pipeline of that name (exactly one of them)."""
    if (text is None) == (name is None):
        raise SubmissionError("send either a pipeline's text or the name of a pipeline in the server's library")
    if text is not None:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > policy.max_pipeline_bytes:
            raise SubmissionError(f"pipeline: {size} bytes, over the limit of {policy.max_pipeline_bytes} bytes")
        return text
    assert name is not None
    available = policy.library_pipelines()
    if not SAFE_NAME.match(name) or name not in available:
        offer = ", ".join(available) if available else "the server has no pipeline library"
        raise SubmissionError(f"pipeline {name!r} is not in the server's library ({offer})")
    assert policy.pipeline_library is not None
    return (policy.pipeline_library / f"{name}.py").read_text(encoding="utf-8")


def _output_dir(config: dict[str, Any]) -> str:
    """The run's results folder: ``results`` or the client's relative folder below it; never outside."""
    output = config.get("output")
    wanted = output.get("dir") if isinstance(output, dict) else None
    if wanted is None or wanted == RESULTS_DIR:
        return RESULTS_DIR
    if not isinstance(wanted, str):
        raise SubmissionError(f"output.dir: must be a folder name, got {type(wanted).__name__}")
    path = PurePosixPath(wanted)
    if path.is_absolute() or ".." in path.parts or "\\" in wanted or not wanted.strip():
        raise SubmissionError(
            f"output.dir: {wanted!r}; a submitted screen writes only into its run folder: give a relative "
            "folder name (it goes below the run's results/), or leave output.dir out"
        )
    return str(PurePosixPath(RESULTS_DIR) / path)


def _server_omero(policy: ServerPolicy, config: dict[str, Any]) -> dict[str, Any] | None:
    """The ``omero`` block the run uses: the operator's, whatever the client sent; None if none is needed."""
    plates = config.get("plates")
    uses_omero = isinstance(plates, dict) and any(
        isinstance(plate, dict) and plate.get("source") == "omero" for plate in plates.values()
    )
    if not uses_omero:
        return None
    if policy.omero is None:
        raise SubmissionError("plates: this server has no OMERO configured, so it cannot run OMERO plates")
    return dict(policy.omero)


def prepare_run(
    policy: ServerPolicy,
    run_id: str,
    config_text: str,
    pipeline: str | None = None,
    pipeline_name: str | None = None,
) -> PreparedRun:
    """Validate a submission and lay out its run folder; SubmissionError naming every problem otherwise.

    On any refusal the folder is removed again, so a refused submission leaves nothing behind.
    """
    check_run_id(run_id)
    config = read_submitted_config(config_text, policy.max_config_bytes)
    text = pipeline_text(policy, pipeline, pipeline_name)
    from openhcs_rules.pipeline.serialize import parse_pipeline

    try:
        parse_pipeline(text, source=PIPELINE_FILE)
    except PipelineError as exc:
        raise SubmissionError(str(exc)) from None
    config = dict(config)
    config["pipeline"] = PIPELINE_FILE
    output = dict(config["output"]) if isinstance(config.get("output"), dict) else {}
    output["dir"] = _output_dir(config)
    config["output"] = output
    omero = _server_omero(policy, config)
    if omero is not None:
        config["omero"] = omero
    else:
        config.pop("omero", None)

    folder = policy.runs_root / run_id
    policy.runs_root.mkdir(parents=True, exist_ok=True)
    folder.mkdir()  # a run id is never reused: FileExistsError is a server bug, not a client error
    try:
        atomic_write_text(folder / PIPELINE_FILE, text)
        roots = [*policy.data_roots, folder]
        if omero is not None and omero.get("data_dir"):
            roots.append(Path(omero["data_dir"]))
        try:
            screen = check_screen(config, workdir=folder, allowed_roots=roots)
        except ConfigError as exc:
            raise SubmissionError(str(exc)) from None
        atomic_write_text(folder / SCREEN_FILE, yaml.safe_dump(config, sort_keys=False))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return PreparedRun(run_id, folder.resolve(), screen, tuple(screen["plates"]))
