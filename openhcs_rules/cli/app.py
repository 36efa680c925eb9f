"""The ``openhcs-rules`` console script: inspect plates, and the commands the workflow's rules call.

Rules run ``python -m openhcs_rules <command>`` so one job is one short process with no Snakemake import;
every command is also usable by hand (``openhcs-rules inspect PLATE``). Errors meant for the user
(bad config, unreadable file, unknown format) print one clear message and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import import_module
from types import ModuleType

#: the command modules of ``openhcs_rules.cli``, in the order their commands appear in ``--help``
COMMAND_MODULES = ("plates", "jobs", "demo", "pipelines", "status", "omero", "viewers", "execution")

#: which module registers each command. A job's process builds only its own command's parser: registering
#: every command imports every command module and what their arguments need at registration (the format
#: registry for ``--format``'s choices, the config schema), ~0.2 s of each well job's start spent on commands
#: it does not run. A command missing here still works (the whole parser is built); a test keeps this complete.
COMMANDS = {
    "inspect": "plates",
    "discover": "plates",
    "illumination": "jobs",
    "process-well": "jobs",
    "process-wells": "jobs",
    "assemble": "jobs",
    "generate-demo": "demo",
    "validate": "pipelines",
    "pipeline": "pipelines",
    "functions": "pipelines",
    "status": "status",
    "setup-omero": "omero",
    "omero-server": "omero",
    "viewer": "viewers",
    "serve": "execution",
    "serve-secret": "execution",
    "serve-token": "execution",
    "submit": "execution",
    "runs": "execution",
}


def command_module(name: str) -> ModuleType:
    """The command module ``name`` (of :data:`COMMAND_MODULES`), imported on first use."""
    if name not in COMMAND_MODULES:
        raise KeyError(f"no command module {name!r}; known: {', '.join(COMMAND_MODULES)}")
    return import_module(f"openhcs_rules.cli.{name}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The console script's parser: every command module registers its own subcommands.

    With ``command`` (one of :data:`COMMANDS`), only the module that owns it registers (and is imported);
    otherwise, or for a command not listed there, all of them.
    """
    parser = argparse.ArgumentParser(prog="openhcs-rules", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES
    for name in modules:
        command_module(name).add_parsers(sub)
    return parser


def requested_command(argv: Sequence[str]) -> str | None:
    """The command an argument list runs: its first word that is not an option (the script's only option,
    ``-v``, takes no value), or None when there is none or help is asked for before it."""
    for word in argv:
        if word in ("-h", "--help"):
            return None
        if not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    from openhcs_rules.errors import OpenHCSError

    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(requested_command(words)).parse_args(words)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except OpenHCSError as exc:
        print(f"openhcs-rules {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
