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

Live viewers of a remote run are on the *client's* machine (the hybrid mode): the client's ``streaming``
section is rewritten so that the server never starts a viewer (``start`` and ``xvfb`` off: a viewer started
here would show nothing to the person who submitted), and so that its jobs reach a viewer beyond loopback
with CURVE. The client's ``curve_keys_dir`` is a path on the client's machine and is dropped; in its place
each run gets ``.openhcs/stream-keys/`` holding the server's streaming keypair (:func:`ensure_stream_keys`,
one per server, as ``client.key``/``client.key_secret``) and the viewer's public key, sent by the client in
``viewer_keys``, as ``server.key``: the layout every sender already loads
(:func:`openhcs_rules.messaging.auth.load_client_keys`). The viewer accepts those frames once the client
authorized the server's streaming public key in its keys folder (``openhcs-rules submit`` does that).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from openhcs_rules.config.checks import check_screen
from openhcs_rules.config.streaming import DEFAULT_PORTS
from openhcs_rules.core.files import atomic_write_text
from openhcs_rules.errors import ConfigError, PipelineError
from openhcs_rules.messaging.addresses import is_loopback

#: the largest config text accepted (a 1536-well screen with per-plate options is a few KB)
MAX_CONFIG_BYTES = 256 * 1024
#: the largest pipeline text accepted over the network (the parser's own limit is higher)
MAX_PIPELINE_BYTES = 512 * 1024
#: the largest plate map text accepted with a submission (a 1536-well map with a few columns is ~100 KB)
MAX_PLATEMAP_BYTES = 1024 * 1024
#: where the plate maps sent with a submission are written, inside its run folder
PLATEMAPS_DIR = "platemaps"
#: nesting of YAML mappings/sequences accepted (the deepest valid config is 4 levels)
MAX_CONFIG_DEPTH = 16
#: names of pipelines in the server's library, and run ids: no separators, no dots at the start
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: the config as it runs, and its pipeline, inside the run folder
SCREEN_FILE = "screen.yaml"
PIPELINE_FILE = "pipeline.py"
#: where a run's results go, inside its folder (a relative ``output.dir`` of the client goes below it)
RESULTS_DIR = "results"
#: a run's CURVE keys for streaming to the client's viewer, inside its folder
RUN_STREAM_KEYS = PurePosixPath(".openhcs") / "stream-keys"
#: the server's streaming identity, inside ``--runs-dir`` unless the operator names another folder
DEFAULT_STREAM_KEYS = "stream-keys"
#: a CURVE public key as ZMQ writes it: 32 bytes in Z85, 40 characters of this alphabet
Z85_KEY = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


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
    stream_keys_dir: Path | None = None  # the server's streaming keypair; default <runs-dir>/stream-keys

    def stream_keys_folder(self) -> Path:
        """Where the server's streaming keypair lives (``runs_root`` is ``<runs-dir>/runs``)."""
        return self.stream_keys_dir if self.stream_keys_dir is not None else self.runs_root.parent / DEFAULT_STREAM_KEYS

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


# -- streaming to the client's viewers -------------------------------------------------------------------
_stream_keys_lock = threading.Lock()


def check_public_key(value: Any, what: str) -> str:
    """A CURVE public key in Z85 (40 characters that decode to 32 bytes), or SubmissionError naming ``what``.

    Strict because the key is written into a certificate file the jobs parse: anything but Z85 is refused
    rather than escaped.
    """
    if not isinstance(value, str) or not Z85_KEY.match(value):
        raise SubmissionError(
            f"{what}: not a CURVE public key (40 Z85 characters, the public-key line of a viewer's server.key)"
        )
    import struct

    import zmq.utils.z85

    try:
        decoded = zmq.utils.z85.decode(value)
    except (ValueError, KeyError, struct.error):  # five characters past 2**32 (e.g. "#####")
        decoded = b""
    if len(decoded) != 32:
        raise SubmissionError(f"{what}: not a CURVE public key (does not decode to 32 bytes)")
    return value


def write_certificate(path: Path, public: str, secret: str | None = None) -> None:
    """A ZMQ certificate file (what ``zmq.auth.load_certificate`` reads); a secret one is left 0600."""
    kind = "Secret" if secret else "Public"
    lines = [f"#   ****  ZeroMQ CURVE {kind} Certificate, written by openhcs-rules  ****", "", "metadata", "curve"]
    lines.append(f'    public-key = "{public}"')
    if secret:
        lines.append(f'    secret-key = "{secret}"')
    atomic_write_text(path, "\n".join(lines) + "\n")
    os.chmod(path, 0o600 if secret else 0o644)


def ensure_stream_keys(folder: Path) -> str:
    """The server's streaming keypair in ``folder`` (``client.key``/``client.key_secret``), made once; its
    public key (Z85), which the client authorizes in its viewer's keys folder.

    A CURVE *client* keypair: the server's jobs connect to the viewer, which is the CURVE server. The pair is
    made in a temporary folder and moved in whole, so a concurrent caller never reads half a pair.
    """
    import zmq
    import zmq.auth

    secret_file = folder / "client.key_secret"
    with _stream_keys_lock:
        if not secret_file.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
            public, secret = (key.decode("ascii") for key in zmq.curve_keypair())
            with tempfile.TemporaryDirectory(dir=folder, prefix=".new-") as staging:
                write_certificate(Path(staging) / "client.key", public)
                write_certificate(Path(staging) / "client.key_secret", public, secret)
                os.replace(Path(staging) / "client.key", folder / "client.key")
                os.replace(Path(staging) / "client.key_secret", secret_file)  # last: its presence means done
        public_key, secret_key = zmq.auth.load_certificate(secret_file)
    if not secret_key:
        raise ConfigError(f"{secret_file} holds no secret key: remove the folder {folder} to make a new pair")
    return public_key.decode("ascii")


def check_viewer_keys(viewer_keys: Any) -> dict[str, str]:
    """``{viewer kind: Z85 public key}`` as a submission may send it; SubmissionError for anything else."""
    if viewer_keys is None:
        return {}
    if not isinstance(viewer_keys, Mapping):
        raise SubmissionError("viewer_keys: must map a viewer kind (napari, fiji, record) to its public key")
    checked: dict[str, str] = {}
    for kind, key in viewer_keys.items():
        if kind not in DEFAULT_PORTS:
            raise SubmissionError(f"viewer_keys: {kind!r} is not a viewer kind ({', '.join(DEFAULT_PORTS)})")
        checked[kind] = check_public_key(key, f"viewer_keys.{kind}")
    return checked


def _server_streaming(streaming: Any, viewer_keys: dict[str, str]) -> tuple[Any, str | None]:
    """The ``streaming`` section a remote run uses, and the public key of the viewer(s) beyond loopback.

    Every enabled viewer gets ``start: false`` and ``xvfb: false`` (the server starts no viewer for a remote
    client); the client's ``curve_keys_dir`` (a path on its machine) is dropped. A viewer beyond loopback
    needs its public key in ``viewer_keys``. A malformed section is returned as it came, for
    :func:`check_screen` to name its problem.
    """
    if not isinstance(streaming, dict) or not streaming:
        return streaming, None
    section = {key: value for key, value in streaming.items() if key != "curve_keys_dir"}
    remote: dict[str, str] = {}
    for kind in DEFAULT_PORTS:
        value = section.get(kind)
        if value is True:
            value = {}
        if not isinstance(value, dict) or value.get("enabled", True) is False:
            continue
        section[kind] = {**value, "start": False, "xvfb": False}
        host = value.get("host", "127.0.0.1")
        if not isinstance(host, str) or is_loopback(host):
            continue
        if kind not in viewer_keys:
            raise SubmissionError(
                f"streaming.{kind}.host {host!r}: the server streams to a viewer on another machine with CURVE "
                f"and needs that viewer's public key; submit with `openhcs-rules submit` and streaming.curve_keys_dir "
                f"naming the viewer's keys folder on your machine (it sends server.key's public key and authorizes "
                f"the server), or send viewer_keys: {{{kind}: <public key>}}"
            )
        remote[kind] = viewer_keys[kind]
    keys = set(remote.values())
    if len(keys) > 1:
        raise SubmissionError(
            f"streaming: the viewers {', '.join(sorted(remote))} have different public keys; a run streams with one "
            "keys folder, so its viewers beyond loopback must share one (start them with the same --keys-dir)"
        )
    return section, keys.pop() if keys else None


def _write_run_stream_keys(policy: ServerPolicy, folder: Path, viewer_key: str) -> None:
    """The run's keys folder: the server's streaming keypair as the client pair, the viewer's key as server.key."""
    import zmq.auth

    source = policy.stream_keys_folder()
    ensure_stream_keys(source)
    public, secret = zmq.auth.load_certificate(source / "client.key_secret")
    assert secret is not None
    keys = folder / RUN_STREAM_KEYS
    keys.mkdir(parents=True)
    os.chmod(keys, 0o700)
    write_certificate(keys / "client.key", public.decode("ascii"))
    write_certificate(keys / "client.key_secret", public.decode("ascii"), secret.decode("ascii"))
    write_certificate(keys / "server.key", viewer_key)


def _sent_platemaps(config: dict[str, Any], platemaps: Mapping[str, str] | None) -> dict[str, str]:
    """The plate maps sent with a submission, checked; the config's plates now name their copies in the run
    folder (``platemaps/<plate>.csv``, relative: the run folder is where Snakemake runs)."""
    if not platemaps:
        return {}
    plates = config.get("plates")
    if not isinstance(platemaps, Mapping) or not isinstance(plates, dict):
        raise SubmissionError("platemaps: must map plate names of the config to plate map texts")
    checked: dict[str, str] = {}
    for plate, text in platemaps.items():
        if not isinstance(plate, str) or not isinstance(plates.get(plate), dict) or not SAFE_NAME.match(plate):
            raise SubmissionError(f"platemaps: {plate!r} is not a plate of the config")
        size = len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else -1
        if not 0 <= size <= MAX_PLATEMAP_BYTES:
            raise SubmissionError(f"platemaps.{plate}: must be text of at most {MAX_PLATEMAP_BYTES} bytes")
        checked[plate] = text
        plates[plate] = {**plates[plate], "platemap": f"{PLATEMAPS_DIR}/{plate}.csv"}
    return checked


def prepare_run(
    policy: ServerPolicy,
    run_id: str,
    config_text: str,
    pipeline: str | None = None,
    pipeline_name: str | None = None,
    *,
    viewer_keys: Mapping[str, str] | None = None,
    platemaps: Mapping[str, str] | None = None,
) -> PreparedRun:
    """Validate a submission and lay out its run folder; SubmissionError naming every problem otherwise.

    ``viewer_keys`` (viewer kind -> Z85 public key) are the client's viewers beyond loopback: see the module's
    note on streaming. ``platemaps`` (plate name -> CSV text) are the plate maps the client read on its
    machine: written into the run folder, and the plates' ``platemap`` keys pointed at them. On any refusal
    the folder is removed again, so a refused submission leaves nothing behind.
    """
    check_run_id(run_id)
    config = read_submitted_config(config_text, policy.max_config_bytes)
    keys = check_viewer_keys(viewer_keys)
    maps = _sent_platemaps(config, platemaps)
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
    streaming, viewer_key = _server_streaming(config.get("streaming"), keys)
    if "streaming" in config:
        config["streaming"] = streaming
    if viewer_key is not None:
        config["streaming"]["curve_keys_dir"] = str(policy.runs_root.resolve() / run_id / RUN_STREAM_KEYS)

    policy.runs_root.mkdir(parents=True, exist_ok=True)
    folder.mkdir()  # a run id is never reused: FileExistsError is a server bug, not a client error
    try:
        atomic_write_text(folder / PIPELINE_FILE, text)
        if viewer_key is not None:
            _write_run_stream_keys(policy, folder, viewer_key)
        for plate, text in maps.items():
            atomic_write_text(folder / PLATEMAPS_DIR / f"{plate}.csv", text)
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
