"""``openhcs-rules generate-demo``: write a synthetic plate with known nuclei counts."""

from __future__ import annotations

import argparse
from typing import Any

from openhcs_rules.config.schema import ANY_KEY, schema_default


def _cmd_generate_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from openhcs_rules.demo.synthetic import generate_imagexpress_plate

    generate_imagexpress_plate(
        Path(args.out),
        plate_name=args.name,
        wells=args.wells,
        sites=args.sites,
        channels=args.channels,
        z_planes=args.z_planes,
        timepoints=args.timepoints,
        shape=(args.size, args.size),
        seed=args.seed,
    )
    return 0


def add_parsers(subparsers: Any) -> None:
    """Register ``generate-demo`` on the console script's subparsers."""
    p = subparsers.add_parser("generate-demo", help="write a synthetic ImageXpress plate with known nuclei counts")
    p.add_argument("--out", required=True)
    p.add_argument("--name", default="demo_plate")
    p.add_argument("--wells", nargs="+", default=None)
    for name in ("sites", "channels", "z_planes", "timepoints", "size", "seed"):  # a synthetic plate's defaults
        default = schema_default("plates", ANY_KEY, "synthetic", name)
        p.add_argument("--" + name.replace("_", "-"), type=int, default=default)
    p.set_defaults(func=_cmd_generate_demo)
