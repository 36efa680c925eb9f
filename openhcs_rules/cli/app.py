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

from openhcs_rules.cli import demo, execution, jobs, omero, pipelines, plates, status, viewers


def build_parser() -> argparse.ArgumentParser:
    """The console script's parser: every command module registers its own subcommands."""
    parser = argparse.ArgumentParser(prog="openhcs-rules", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (
        plates,
        jobs,
        demo,
        pipelines,
        status,
        omero,
        viewers,
        execution,
    ):  # the order of the commands in --help
        module.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from openhcs_rules.errors import OpenHCSError

    args = build_parser().parse_args(argv)
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
