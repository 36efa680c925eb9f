"""``openhcs-rules inspect`` and ``discover``: read a plate's structure, and the --format options they share."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from openhcs_rules.config.schema import ANY_KEY, schema_default
from openhcs_rules.jobs.options import parse_nuclei_channel


def _cmd_inspect(args: argparse.Namespace) -> int:
    from openhcs_rules.formats.registry import discover_plate

    plate = discover_plate(args.path, format_name=args.format, **_format_options(args))
    summary = plate.summary()
    if args.json:
        out = {
            "name": summary["name"],
            "plate_id": plate.metadata.get("plate_id"),
            "format": summary["format"],
            "layout": summary["layout"],
            "wells": summary["wells"],
            "sites": summary["sites"],
            "channels": summary["channels"],
            "z": summary["z"],
            "timepoints": summary["timepoints"],
            "image_shape": summary["image_shape"],
            "dtype": summary["dtype"],
            "pixel_size_um": summary["pixel_size_um"],
            "warnings": summary["warnings"],
        }
        print(json.dumps(out, indent=1))
        return 0
    channels = ", ".join(f"{c['index']}={c['name']}" for c in summary["channels"])
    plate_id = plate.metadata.get("plate_id")
    instrument = f", instrument plate id {plate_id}" if plate_id and plate_id != plate.name else ""
    print(f"plate       {plate.name}  ({plate.root}{instrument})")
    print(f"format      {summary['format']}  layout {plate.rows}x{plate.columns}")
    print(f"wells       {len(summary['wells'])}: {' '.join(summary['wells'])}")
    print(f"sites       {summary['sites']}")
    print(f"channels    {channels}")
    print(f"z           {summary['z']}")
    print(f"timepoints  {summary['timepoints']}")
    print(f"image       {summary['image_shape']} {summary['dtype']}, pixel size {summary['pixel_size_um']} um")
    for warning in summary["warnings"]:
        print(f"warning     {warning}")
    return 0


def _cmd_discover(args: argparse.Namespace) -> int:
    from openhcs_rules.jobs.discover import discover

    discover(
        args.name,
        args.path,
        args.out,
        args.format,
        parse_nuclei_channel(args.nuclei_channel),
        args.pipeline,
        **_format_options(args),
    )
    return 0


def _add_format_options(p: argparse.ArgumentParser) -> None:
    """--format and the pattern format's settings; '' means unset (the rule passes every plate's values)."""
    p.add_argument("--format", default=schema_default("plates", ANY_KEY, "format"), choices=FORMATS)
    p.add_argument("--pattern", default="", help="format pattern: regular expression with named groups")
    p.add_argument("--pattern-layout", default="", help="format pattern: the plate's well count (96, 384...)")


def _format_options(args: argparse.Namespace) -> dict[str, Any]:
    """The pattern settings as keyword arguments of discover_plate (None when not given)."""
    layout = args.pattern_layout.strip()
    return {"pattern": args.pattern or None, "layout": int(layout) if layout.isdigit() else layout or None}


class _FormatChoices:
    """The --format choices: auto (detect) or a registered format (pattern is never detected).

    Read from the format registry when argparse checks a value or prints them, so the commands that take no
    --format do not import every format handler.
    """

    def _names(self) -> list[str]:
        from openhcs_rules.formats.registry import registered_handlers

        return ["auto", *(handler.name for handler in registered_handlers())]

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


FORMATS = _FormatChoices()


def add_parsers(subparsers: Any) -> None:
    """Register ``inspect`` and ``discover`` on the console script's subparsers."""
    p = subparsers.add_parser("inspect", help="print a plate's format, wells, sites, channels, z and timepoints")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    _add_format_options(p)
    p.set_defaults(func=_cmd_inspect)

    p = subparsers.add_parser("discover", help="(rule) write a plate's structure as JSON")
    p.add_argument("--name", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--out", required=True)
    _add_format_options(p)
    p.add_argument("--nuclei-channel", help="refuse the plate unless this channel (index or name) is in it")
    p.add_argument("--pipeline", help="refuse the plate unless every channel this pipeline names is in it")
    p.set_defaults(func=_cmd_discover)
