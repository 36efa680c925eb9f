"""``openhcs-rules setup-omero`` and ``openhcs-rules omero-server``: the OMERO commands of the console script.

Registered into the console script's parser by :func:`add_parsers`; like every command module of
:mod:`openhcs_rules.cli`, it never imports the parser assembly (:mod:`openhcs_rules.cli.app`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_setup_omero(args: argparse.Namespace) -> int:
    from openhcs_rules.omero.ice_wheel import default_cache_dir, ice_installed, setup_omero

    if ice_installed() and not args.rebuild and not args.force:
        print(f"zeroc-ice {ice_installed()} is already installed; now run: pip install '.[omero]'")
        return 0
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    result = setup_omero(cache, rebuild=args.rebuild, sdist=Path(args.sdist) if args.sdist else None)
    how = "built" if result.built else "reused cached"
    print(f"{how} {result.wheel} and installed it in {result.seconds:.0f} s")
    print("now run: pip install '.[omero]'   (or: pip install omero-py ezomero)")
    return 0


def _cmd_omero_server(args: argparse.Namespace) -> int:
    from openhcs_rules.omero.instance import OmeroInstanceManager
    from openhcs_rules.omero.params import OmeroParams

    params = OmeroParams(host=args.host, port=args.port, user=args.user, password_env=args.password_env)
    manager = OmeroInstanceManager(params, compose_file=Path(args.compose_file) if args.compose_file else None)
    if args.action == "check":
        state = manager.check()
        print(state.describe())
        return 0 if state.reachable else 1
    if args.action == "start":
        manager.ensure_running(timeout=args.timeout)
        print(f"OMERO answers on {params.host}:{params.port}")
        return 0
    manager.stop()
    print("OMERO compose project stopped")
    return 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``setup-omero`` and ``omero-server`` on the console script's subparsers."""
    p = subparsers.add_parser(
        "setup-omero",
        help="build (or reuse from cache) and install the zeroc-ice wheel omero-py needs; then pip install '.[omero]'",
    )
    p.add_argument("--cache-dir", help="where built wheels are kept (default ~/.cache/openhcs-rules/wheels)")
    p.add_argument("--rebuild", action="store_true", help="build even if a cached wheel fits")
    p.add_argument("--force", action="store_true", help="reinstall even if zeroc-ice is already installed")
    p.add_argument("--sdist", help="use this zeroc-ice-3.6.5.tar.gz instead of downloading it")
    p.set_defaults(func=_cmd_setup_omero)

    p = subparsers.add_parser("omero-server", help="check, start (docker compose) or stop a local OMERO server")
    p.add_argument("action", choices=["check", "start", "stop"])
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=4064)
    p.add_argument("--user", default="root")
    p.add_argument("--password-env", default="OMERO_PASSWORD")
    p.add_argument("--compose-file", help="default: the compose file shipped with openhcs-rules")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the server to answer")
    p.set_defaults(func=_cmd_omero_server)
