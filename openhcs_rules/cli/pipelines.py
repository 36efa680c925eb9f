"""``openhcs-rules validate|pipeline|functions``: check a screen config, print a pipeline, list functions."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _cmd_validate(args: argparse.Namespace) -> int:
    from openhcs_rules.config import check_screen_file
    from openhcs_rules.pipeline.serialize import load_pipeline

    config = check_screen_file(args.config, pipeline=args.pipeline)  # the workflow's own check
    pipeline = load_pipeline(config["pipeline"])
    print(
        f"{args.config}: valid; {len(config['plates'])} plate(s); pipeline {pipeline.name!r} "
        f"with {len(pipeline.steps)} steps"
    )
    return 0


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from openhcs_rules.pipeline.serialize import load_pipeline, pipeline_to_code

    pipeline = load_pipeline(args.file)
    sys.stdout.write(pipeline_to_code(pipeline))
    return 0


def _cmd_functions(args: argparse.Namespace) -> int:
    """Every function a pipeline may name, built-in or from an installed plugin; 1 if a plugin is unusable."""
    from openhcs_rules.pipeline.registry import list_functions

    unusable = 0
    for item in list_functions():
        if item.spec is None:
            unusable += 1
            print(f"{item.name:<24} {item.source:<24} unusable: {item.problem}")
            continue
        memory = ",".join(item.spec.memory_types)
        print(f"{item.name:<24} {item.source:<24} {item.spec.kind:<7} {memory:<11} {item.signature}")
    return 1 if unusable else 0


def add_parsers(subparsers: Any) -> None:
    """Register ``validate``, ``pipeline`` and ``functions`` on the console script's subparsers."""
    p = subparsers.add_parser("validate", help="check a screen config and its pipeline file")
    p.add_argument("config")
    p.add_argument("--pipeline")
    p.set_defaults(func=_cmd_validate)

    p = subparsers.add_parser(
        "pipeline", help="parse a pipeline file (never executing it) and print its canonical form"
    )
    p.add_argument("file")
    p.set_defaults(func=_cmd_pipeline)

    p = subparsers.add_parser("functions", help="list the functions pipelines may name: built-in and from plugins")
    p.set_defaults(func=_cmd_functions)
