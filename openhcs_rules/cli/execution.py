"""``openhcs-rules serve | serve-token | submit | runs ...``: the execution server, and the commands that talk
to it.

``serve`` runs the server in the foreground (runs, events and run folders under ``--runs-dir``; remote
screens confined to ``--data-root`` folders; the HTTP API and web page on ``--http-port``, loopback unless
TLS or ``--http-insecure`` is given). ``serve-token`` issues (or revokes) a user's token for the HTTP API;
``serve-secret`` creates the secret the server shares with OMERO.web's panel (``--signing-secret``).
``submit`` sends a screen config and a pipeline and prints the run (with ``--wait``, follows it with a
progress bar and exits with the run's outcome). ``runs`` lists, inspects, follows, cancels and resumes runs.

Exit codes scripts can rely on: 0 the request (or, with ``--wait``/``watch``, the run) succeeded; 1 the run
failed; 2 a refused request or a bad argument (the message says why); 3 the run was cancelled or
interrupted; 4 the server did not answer.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

EXIT_FAILED, EXIT_REFUSED, EXIT_CANCELLED, EXIT_UNREACHABLE = 1, 2, 3, 4
#: the HTTP API's tokens (as hashes), in the runs folder
TOKENS_FILE = "tokens.sqlite"


def _client(args: argparse.Namespace) -> Any:
    from openhcs_rules.errors import ConfigError
    from openhcs_rules.execution.client import ExecutionClient, parse_server

    try:
        host, port = parse_server(args.server)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return ExecutionClient(host, port, keys_dir=args.keys_dir, timeout_s=args.timeout)


def _print(result: Any) -> None:
    print(json.dumps(result, sort_keys=True, indent=1))


def _outcome(state: str) -> int:
    return {"succeeded": 0, "failed": EXIT_FAILED}.get(state, EXIT_CANCELLED)


# -- serve ----------------------------------------------------------------------------------------------
def _cmd_serve(args: argparse.Namespace) -> int:
    from openhcs_rules.errors import ConfigError
    from openhcs_rules.execution.runner import RunSupervisor, default_snakefile
    from openhcs_rules.execution.server import ExecutionServer
    from openhcs_rules.execution.store import RunStore
    from openhcs_rules.execution.submission import ServerPolicy
    from openhcs_rules.execution.tokens import TokenStore
    from openhcs_rules.execution.users import LOCAL_USER
    from openhcs_rules.messaging.auth import ensure_keys

    _check_http_options(args)
    runs_dir = Path(args.runs_dir).expanduser().resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    omero = json.loads(Path(args.omero_config).read_text()) if args.omero_config else None
    policy = ServerPolicy(
        runs_root=runs_dir / "runs",
        data_roots=tuple(Path(root).expanduser().resolve() for root in args.data_root),
        pipeline_library=Path(args.pipelines).expanduser().resolve() if args.pipelines else None,
        omero=omero,
        stream_keys_dir=Path(args.stream_keys_dir).expanduser().resolve() if args.stream_keys_dir else None,
    )
    if args.keys_dir:
        ensure_keys(args.keys_dir)
    snakefile = Path(args.snakefile).expanduser().resolve() if args.snakefile else default_snakefile()
    if not snakefile.is_file():
        raise ConfigError(
            f"no workflow at {snakefile}: run `serve` from a checkout of openhcs-rules, or pass --snakefile "
            "PATH/workflow/Snakefile"
        )
    from openhcs_rules.execution.gpus import parse_gpus
    from openhcs_rules.execution.signed_tokens import load_secret

    gpus = parse_gpus(args.gpus)
    signing_secret = load_secret(args.signing_secret) if args.signing_secret else None
    if args.http_cors_origin and not args.http_port:
        raise ConfigError("--http-cors-origin needs the HTTP API (--http-port)")
    for origin in args.http_cors_origin:
        if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?|https?://\[[0-9A-Fa-f:]+\](:\d{1,5})?", origin):
            raise ConfigError(
                f"--http-cors-origin {origin!r}: an origin is scheme://host[:port] with no path, e.g. "
                "https://omero.example.org (no wildcard: name each origin)"
            )
    store = RunStore(runs_dir / "runs.sqlite")
    supervisor = RunSupervisor(
        store,
        max_concurrent=args.max_runs,
        gpus=gpus,
        snakemake_args=("--cores", str(args.cores)),
        logger_plugin="openhcs",
        snakefile=snakefile,
        poll_s=0.1,  # events reach watchers, and ended runs are noticed, within ~0.1 s
    )
    server = ExecutionServer(
        policy, store, supervisor, port=args.port, host=args.host, keys_dir=args.keys_dir, operators=args.operator
    )
    tokens = TokenStore(runs_dir / TOKENS_FILE)
    http = None
    if args.http_port:
        from openhcs_rules.execution.http_api import HttpServer, create_app

        http = HttpServer(
            create_app(
                server.service, tokens, signing_secret=signing_secret, cors_origins=tuple(args.http_cors_origin)
            ),
            host=args.http_host,
            port=args.http_port,
            ssl_certfile=args.http_cert,
            ssl_keyfile=args.http_key,
        )
        http.bind()  # a taken HTTP port is refused before any run starts
    try:
        server.start()
        if http is not None:
            http.start()
    except BaseException:
        if http is not None:
            http.stop()
        server.stop()
        raise
    new_token = None
    if http is not None and LOCAL_USER not in tokens.users():
        new_token = tokens.issue(LOCAL_USER)
    page = _page_url(http) if http is not None else None
    first = {
        "server": "execution",
        "address": f"{args.host}:{args.port}",
        "runs_dir": str(runs_dir),
        "http": page,
        "gpus": list(gpus),
    }
    print(json.dumps(first, sort_keys=True))
    if page is not None and new_token is not None:
        # once, on stdout only: the fragment (#token=...) is never sent to a server, so no log records it
        print(f"{page}/#token={new_token}")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown_requested.set())
    try:
        while not server.shutdown_requested.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if http is not None:
            http.stop()
        server.stop()
        tokens.close()
    return 0


def _cmd_serve_secret(args: argparse.Namespace) -> int:
    from openhcs_rules.execution.signed_tokens import create_secret

    path = create_secret(args.path)
    _print({"secret": str(path.resolve())})
    return 0


def _check_http_options(args: argparse.Namespace) -> None:
    """Refuse HTTP options that would expose tokens: beyond loopback needs TLS or an explicit --http-insecure."""
    from openhcs_rules.errors import ConfigError
    from openhcs_rules.messaging.addresses import is_loopback

    if not args.http_port:
        return
    if not 0 < args.http_port < 65536:
        raise ConfigError(f"--http-port {args.http_port}: must be 1..65535, or 0 for no HTTP API")
    if bool(args.http_cert) != bool(args.http_key):
        raise ConfigError("--http-cert and --http-key go together (the TLS certificate and its private key)")
    if not is_loopback(args.http_host) and not args.http_cert and not args.http_insecure:
        raise ConfigError(
            f"--http-host {args.http_host}: beyond loopback the tokens would cross the network in clear; give "
            "--http-cert and --http-key (TLS), or --http-insecure if the network is trusted (or tunnel: ssh -L "
            f"{args.http_port}:127.0.0.1:{args.http_port})"
        )


def _page_url(http: Any) -> str:
    """The address a person opens: a wildcard bind is reached under this machine's name."""
    import socket

    from openhcs_rules.messaging.addresses import WILDCARD_HOSTS

    if http.host not in WILDCARD_HOSTS:
        return str(http.url)
    scheme = "https" if http.tls else "http"
    return f"{scheme}://{socket.getfqdn()}:{http.port}"


# -- serve-token ----------------------------------------------------------------------------------------
def _cmd_serve_token(args: argparse.Namespace) -> int:
    """Issue a token for USER (printed once, on stdout alone, for scripts), or revoke all of theirs."""
    from openhcs_rules.errors import ConfigError
    from openhcs_rules.execution.tokens import TokenStore

    runs_dir = Path(args.runs_dir).expanduser().resolve()
    if not runs_dir.is_dir():
        raise ConfigError(f"no runs folder at {runs_dir}: pass the --runs-dir the server was started with")
    with TokenStore(runs_dir / TOKENS_FILE) as tokens:
        if args.revoke:
            _print_line({"user": args.user, "revoked": tokens.revoke(args.user)})
            return 0
        token = tokens.issue(args.user)
    print(token)
    print(
        f"a token for {args.user} (shown only now): open the page as http://HOST:PORT/#token=<token>, or send "
        "'Authorization: Bearer <token>'; revoke with --revoke",
        file=sys.stderr,
    )
    return 0


def _print_line(result: Any) -> None:
    print(json.dumps(result, sort_keys=True))


# -- submit ---------------------------------------------------------------------------------------------
def _cmd_submit(args: argparse.Namespace) -> int:
    from openhcs_rules.execution.client import hybrid_streaming, local_platemaps

    config = Path(args.config).read_text(encoding="utf-8")
    pipeline = Path(args.pipeline).read_text(encoding="utf-8") if args.pipeline else None
    # viewers on this machine (streaming.curve_keys_dir here): their key goes along, the local path does not
    hybrid = hybrid_streaming(config)
    with _client(args) as client:
        if hybrid.keys_dir is not None:
            # before the submission, so the viewer already accepts the run's first frames
            authorized = client.authorize_stream_key(hybrid.keys_dir)
            print(f"authorized the execution server's streaming key for your viewers: {authorized}", file=sys.stderr)
        run = client.submit(
            hybrid.config,
            pipeline=pipeline,
            pipeline_name=args.pipeline_name,
            viewer_keys=hybrid.viewer_keys,
            platemaps=local_platemaps(config),  # the maps are the submitter's files: they travel with the run
        )
        if not args.wait:
            _print(run)
            return 0
        print(f"run {run['run_id']} accepted ({run['state']})", file=sys.stderr)
        return _follow(client, run["run_id"], quiet=args.quiet)


# -- runs -----------------------------------------------------------------------------------------------
def _cmd_runs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        action = args.action
        if action == "list":
            runs = client.runs(everyone=args.all)
            if args.json:
                _print(runs)
            else:
                _print_table(runs)
            return 0
        if not args.run_id:
            from openhcs_rules.errors import ConfigError

            raise ConfigError(f"runs {action} needs a run id")
        if action == "status":
            _print(client.run(args.run_id))
        elif action == "watch":
            return _follow(client, args.run_id, quiet=args.quiet)
        elif action == "cancel":
            _print(client.cancel(args.run_id, mode="abort" if args.abort else "drain"))
        elif action == "resume":
            _print(client.resume(args.run_id))
        elif action == "logs":
            print(client.logs(args.run_id, tail=args.tail))
        elif action == "results":
            _print(client.results(args.run_id))
        elif action == "events":
            _print(client.events(args.run_id, after=args.after))
    return 0


def _print_table(runs: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("run", "owner", "state", "queue", "plates", "exit")
    for run in runs:
        queue = run.get("queue_position")
        table.add_row(
            run["run_id"],
            run["owner"],
            run["state"],
            "" if queue is None else str(queue),
            ", ".join(run["plates"]),
            "" if run["exit_code"] is None else str(run["exit_code"]),
        )
    Console().print(table)


def _follow(client: Any, run_id: str, quiet: bool = False) -> int:
    """Follow a run's events to its end: a bar of Snakemake jobs done, the wells done and failed in its
    description; the exit code of the run's outcome."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    wells_done = wells_failed = 0
    state = client.run(run_id)["state"]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=quiet, transient=False) as progress:
        task = progress.add_task(f"{run_id} {state}", total=None)
        for event in client.watch(run_id):
            kind, body = event["type"], event["body"]
            if kind == "run_state":
                state = body.get("state", state)
            elif kind == "well_finished":
                wells_done += 1
            elif kind == "well_failed":
                wells_failed += 1
            elif kind == "progress":
                progress.update(task, completed=body.get("done", 0), total=body.get("total"))
            wells = f"wells {wells_done} done" + (f", {wells_failed} failed" if wells_failed else "")
            progress.update(task, description=f"{run_id} {state} | {wells} | jobs")
    final = client.run(run_id)
    print(json.dumps({"run_id": run_id, "state": final["state"], "exit_code": final["exit_code"]}))
    return _outcome(final["state"])


def _unreachable_is_4(command: Any) -> Any:
    """Exit 4 (not the CLI's generic 2) when the server does not answer."""

    def run(args: argparse.Namespace) -> int:
        from openhcs_rules.messaging.errors import ServerNotResponding

        try:
            return int(command(args))
        except ServerNotResponding as exc:
            print(f"openhcs-rules {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE

    return run


# -- parsers --------------------------------------------------------------------------------------------
def _add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default="127.0.0.1:7777", help="HOST:PORT of the execution server")
    parser.add_argument("--keys-dir", default=None, help="CURVE keys folder (a server beyond loopback needs one)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each reply")


def add_parsers(sub: Any) -> None:
    """Register ``serve``, ``submit`` and ``runs``."""
    serve = sub.add_parser("serve", help="run the execution server next to the data (foreground)")
    serve.add_argument("--port", type=int, default=7777, help="control port (progress on port + 1000)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (beyond loopback needs --keys-dir)")
    serve.add_argument("--keys-dir", default=None, help="CURVE keys folder; authorized_clients/<user>.key")
    serve.add_argument("--runs-dir", default="openhcs-runs", help="runs, their events and results live here")
    serve.add_argument(
        "--data-root", action="append", default=[], help="a folder remote screens may read plates from (repeatable)"
    )
    serve.add_argument("--pipelines", default=None, help="folder of named pipelines clients may choose from")
    serve.add_argument("--max-runs", type=int, default=1, help="runs executed at the same time (others queue)")
    serve.add_argument("--cores", type=int, default=2, help="--cores given to each run's Snakemake")
    serve.add_argument(
        "--gpus",
        default="auto",
        help="GPUs lent to runs, each held by one run at a time: auto (CUDA_VISIBLE_DEVICES, else nvidia-smi), "
        "none, or devices like 0,1",
    )
    serve.add_argument("--operator", action="append", default=[], help="a user who sees and cancels every run")
    serve.add_argument("--omero-config", default=None, help="JSON file: this server's OMERO block")
    serve.add_argument(
        "--stream-keys-dir",
        default=None,
        help="the server's CURVE keypair for streaming runs to viewers on clients' machines (default: "
        "RUNS_DIR/stream-keys; made on start)",
    )
    serve.add_argument("--snakefile", default=None, help="the workflow (default: workflow/Snakefile of this checkout)")
    serve.add_argument("--http-port", type=int, default=7780, help="port of the HTTP API and web page (0: none)")
    serve.add_argument(
        "--http-host",
        default="127.0.0.1",
        help="interface of the HTTP API (beyond loopback needs --http-cert/--http-key, or --http-insecure)",
    )
    serve.add_argument("--http-cert", default=None, help="TLS certificate (PEM) of the HTTP API")
    serve.add_argument("--http-key", default=None, help="private key (PEM) of --http-cert")
    serve.add_argument(
        "--http-insecure",
        action="store_true",
        help="allow plain HTTP beyond loopback (tokens cross the network in clear: trusted networks only)",
    )
    serve.add_argument(
        "--signing-secret",
        default=None,
        help="secret shared with OMERO.web (`serve-secret FILE`): accept the tokens its OpenHCS panel signs",
    )
    serve.add_argument(
        "--http-cors-origin",
        action="append",
        default=[],
        help="an origin whose pages may call the HTTP API, e.g. https://omero.example.org (repeatable)",
    )
    serve.set_defaults(func=_cmd_serve)

    secret = sub.add_parser("serve-secret", help="create the secret the server shares with OMERO.web's panel")
    secret.add_argument("path", help="the file to create (kept when it exists; owner-only)")
    secret.set_defaults(func=_cmd_serve_secret)

    token = sub.add_parser("serve-token", help="issue a token for the execution server's HTTP API and web page")
    token.add_argument("user", help="the user (the same name as their CURVE key file, if they have one)")
    token.add_argument("--runs-dir", default="openhcs-runs", help="the server's --runs-dir")
    token.add_argument("--revoke", action="store_true", help="revoke every token of the user instead")
    token.set_defaults(func=_cmd_serve_token)

    submit = sub.add_parser("submit", help="submit a screen to an execution server")
    _add_connection(submit)
    submit.add_argument("--config", required=True, help="the screen's YAML config")
    which = submit.add_mutually_exclusive_group(required=True)
    which.add_argument("--pipeline", help="a pipeline file (sent as text; parsed, never run, by the server)")
    which.add_argument("--pipeline-name", help="a pipeline of the server's library (see `runs pipelines`)")
    submit.add_argument("--wait", action="store_true", help="follow the run to its end; exit with its outcome")
    submit.add_argument("--quiet", action="store_true", help="no progress bar")
    submit.set_defaults(func=_unreachable_is_4(_cmd_submit))

    runs = sub.add_parser("runs", help="list, follow, cancel and resume runs of an execution server")
    runs.add_argument("action", choices=("list", "status", "watch", "cancel", "resume", "logs", "results", "events"))
    runs.add_argument("run_id", nargs="?", help="the run (all actions but list)")
    _add_connection(runs)
    runs.add_argument("--all", action="store_true", help="list: every user's runs (operators)")
    runs.add_argument("--json", action="store_true", help="list: JSON instead of a table")
    runs.add_argument("--abort", action="store_true", help="cancel: stop running jobs now (default: drain)")
    runs.add_argument("--tail", type=int, default=None, help="logs: only the last N lines")
    runs.add_argument("--after", type=int, default=0, help="events: those after this number")
    runs.add_argument("--quiet", action="store_true", help="watch: no progress bar")
    runs.set_defaults(func=_unreachable_is_4(_cmd_runs))
