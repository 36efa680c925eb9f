"""``openhcs-rules viewer start|status|stop|clear|keys|ensure``: live viewers as services a person or a rule manages.

``start`` is check -> connect -> start -> wait (a viewer that already answers is reused, a port held by
something else is reported, never killed); ``status`` pings; ``stop`` asks the viewer to shut down over
its control channel; ``clear`` empties it (frees its layers' memory, and room under its layer limit);
``keys`` creates the CURVE keys a viewer needs to listen beyond loopback; ``ensure``
is what the workflow runs before a plate's wells (every viewer enabled in the config's ``streaming``).
Each command prints one JSON object. Registered into the main parser by :func:`add_parsers`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

KINDS = ("napari", "fiji", "record")


def _target(args: argparse.Namespace) -> Any:
    from openhcs_rules.config.streaming import DEFAULT_PORTS, ViewerTarget
    from openhcs_rules.errors import ConfigError
    from openhcs_rules.messaging.addresses import check_base_port

    try:
        check_base_port(args.port or DEFAULT_PORTS[args.kind])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return ViewerTarget(
        kind=args.kind,
        host=args.host,
        port=args.port or DEFAULT_PORTS[args.kind],
        xvfb=getattr(args, "xvfb", False),
        keys_dir=str(Path(args.keys_dir).expanduser()) if args.keys_dir else None,
        start_timeout_s=getattr(args, "timeout", 120.0),
    )


def _print(result: dict[str, Any]) -> None:
    print(json.dumps(result, sort_keys=True))


def _cmd_start(args: argparse.Namespace) -> int:
    from openhcs_rules.messaging.auth import ensure_keys
    from openhcs_rules.messaging.instance import ensure_server
    from openhcs_rules.messaging.server import check_secure_bind
    from openhcs_rules.streaming.ensure import server_spec

    target = _target(args)
    check_secure_bind(target.kind, target.host, target.port, target.keys_dir)  # before probing or spawning
    if target.keys_dir:
        ensure_keys(target.keys_dir)
    spec = server_spec(target)
    result = ensure_server(spec, timeout_s=target.start_timeout_s)
    server = result["pong"]["server"]
    _print(
        {
            "kind": target.kind,
            "state": result["state"],
            "address": target.address,
            "pid": server["pid"],
            "auth": server["auth"],
            "start_s": result.get("start_s"),
            "log": str(spec.log_path),
        }
    )
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from openhcs_rules.messaging.addresses import data_port, is_local_host, port_holder, port_is_free
    from openhcs_rules.messaging.instance import probe
    from openhcs_rules.streaming.ensure import server_spec

    target = _target(args)
    pong = probe(server_spec(target), timeout_s=args.timeout)
    if pong is not None:
        _print({"kind": target.kind, "state": "running", "address": target.address, **pong})
        return 0
    result: dict[str, Any] = {"kind": target.kind, "state": "not running", "address": target.address}
    if is_local_host(target.host):
        held = [p for p in (target.port, data_port(target.port)) if not port_is_free(target.host, p)]
        if held:
            result["ports_held_by"] = {str(p): port_holder(p) for p in held}
    _print(result)
    return 1


def _cmd_stop(args: argparse.Namespace) -> int:
    from openhcs_rules.messaging.instance import stop_server
    from openhcs_rules.streaming.ensure import server_spec

    target = _target(args)
    _print({"kind": target.kind, "address": target.address, **stop_server(server_spec(target))})
    return 0


def _cmd_clear(args: argparse.Namespace) -> int:
    from openhcs_rules.messaging.client import ControlClient

    target = _target(args)
    with ControlClient(target.host, target.port, target.keys_dir, timeout_s=args.timeout) as client:
        result = client.call("clear")
    _print({"kind": target.kind, "address": target.address, **result})
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    from openhcs_rules.messaging.auth import ensure_keys

    folder = ensure_keys(args.keys_dir)
    _print({"keys_dir": str(folder), "server_public": str(folder / "server.key"), "client": str(folder / "client.key")})
    return 0


def _cmd_ensure(args: argparse.Namespace) -> int:
    from openhcs_rules.streaming.ensure import ensure_viewers

    text = Path(args.streaming[1:]).read_text() if args.streaming.startswith("@") else args.streaming
    try:
        streaming = json.loads(text)
    except json.JSONDecodeError as exc:
        from openhcs_rules.errors import ConfigError

        raise ConfigError(f"--streaming is not JSON: {exc}") from None
    report = ensure_viewers(streaming)
    if args.out:
        from openhcs_rules.core.files import atomic_write_text

        atomic_write_text(args.out, json.dumps(report, indent=1, sort_keys=True))
    _print(report)
    return 0


def _viewer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", required=True, choices=KINDS, help="napari, fiji (record: headless, for tests)")
    parser.add_argument("--port", type=int, help="control port (data channel: port+1000); napari 5555, fiji 5565")
    parser.add_argument("--host", default="127.0.0.1", help="address the viewer binds / is reached at")
    parser.add_argument("--keys-dir", help="CURVE keys folder (required for a host beyond loopback)")


def add_parsers(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``viewer`` and its subcommands on the main parser's subparsers."""
    viewer = subparsers.add_parser("viewer", help="start, check or stop a live napari/Fiji viewer")
    commands = viewer.add_subparsers(dest="viewer_command", required=True)

    p = commands.add_parser("start", help="start a viewer unless one already answers on the port")
    _viewer_options(p)
    p.add_argument("--xvfb", action="store_true", help="run it on a private Xvfb display (no desktop here)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the viewer to answer")
    p.set_defaults(func=_cmd_start)

    p = commands.add_parser("status", help="ping a viewer (exit 0 running, 1 not)")
    _viewer_options(p)
    p.add_argument("--timeout", type=float, default=1.0)
    p.set_defaults(func=_cmd_status)

    p = commands.add_parser("stop", help="ask a viewer to shut down")
    _viewer_options(p)
    p.set_defaults(func=_cmd_stop)

    p = commands.add_parser("clear", help="empty a viewer: remove its layers and free their memory")
    _viewer_options(p)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the viewer's reply")
    p.set_defaults(func=_cmd_clear)

    p = commands.add_parser("keys", help="create CURVE keys for viewers that listen beyond loopback")
    p.add_argument("--keys-dir", required=True)
    p.set_defaults(func=_cmd_keys)

    p = commands.add_parser("ensure", help="(rule) check/start every viewer enabled in a streaming config")
    p.add_argument("--streaming", required=True, help="the config's streaming section as JSON, or @file")
    p.add_argument("--out", help="also write the report here (the rule's output)")
    p.set_defaults(func=_cmd_ensure)
    return viewer
