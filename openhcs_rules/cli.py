"""The ``openhcs-rules`` console script: inspect plates, and the commands the workflow's rules call.

Rules run ``python -m openhcs_rules <command>`` so one job is one short process with no Snakemake import;
every command is also usable by hand (``openhcs-rules inspect PLATE``). Errors meant for the user
(bad config, unreadable file, unknown format) print one clear message and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from openhcs_rules.config.schema import ANY_KEY, schema_default
from openhcs_rules.jobs.options import WellJobOptions, parse_nuclei_channel


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


def _cmd_illumination(args: argparse.Namespace) -> int:
    from openhcs_rules.jobs.illumination import estimate_plate_illumination
    from openhcs_rules.plate.model import PlateStructure

    estimate_plate_illumination(PlateStructure.load_json(args.plate_json), args.out, args.max_images)
    return 0


def _cmd_process_well(args: argparse.Namespace) -> int:
    from openhcs_rules.jobs.process_well import process_well

    options = WellJobOptions.from_args(args)  # the options process-well and process-wells share
    process_well(args.plate_json, args.well, args.pipeline, args.out_dir, options=options)
    return 0


def _cmd_process_wells(args: argparse.Namespace) -> int:
    from openhcs_rules.jobs.process_wells import process_wells

    options = WellJobOptions.from_args(args)
    process_wells(args.plate_json, args.chunk, args.pipeline, args.wells_dir, args.manifest, options=options)
    return 0


def _cmd_assemble(args: argparse.Namespace) -> int:
    from openhcs_rules.jobs.assemble import assemble_plate

    assemble_plate(args.plate_json, args.wells_dir, args.out_dir, args.backend)
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openhcs-rules", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="print a plate's format, wells, sites, channels, z and timepoints")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    _add_format_options(p)
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("discover", help="(rule) write a plate's structure as JSON")
    p.add_argument("--name", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--out", required=True)
    _add_format_options(p)
    p.add_argument("--nuclei-channel", help="refuse the plate unless this channel (index or name) is in it")
    p.add_argument("--pipeline", help="refuse the plate unless every channel this pipeline names is in it")
    p.set_defaults(func=_cmd_discover)

    p = sub.add_parser("illumination", help="(rule) estimate per-channel flat fields of a plate")
    p.add_argument("--plate-json", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-images", type=int, default=schema_default("illumination", "max_images"))
    p.set_defaults(func=_cmd_illumination)

    p = sub.add_parser("process-well", help="run the pipeline on one well (outside the workflow)")
    p.add_argument("--plate-json", required=True)
    p.add_argument("--well", required=True)
    p.add_argument("--pipeline", required=True)
    p.add_argument("--out-dir", required=True)
    WellJobOptions.add_arguments(p)
    p.set_defaults(func=_cmd_process_well)

    p = sub.add_parser("process-wells", help="(rule) run the pipeline on a chunk of wells, skipping finished ones")
    p.add_argument("--plate-json", required=True)
    p.add_argument("--chunk", required=True, help="a well (B02) or a run of wells in plate order (B02-B09)")
    p.add_argument("--pipeline", required=True)
    p.add_argument("--wells-dir", required=True, help="each well's outputs go to WELLS_DIR/<well>/")
    p.add_argument("--manifest", required=True, help="written last, once every well of the chunk is done")
    WellJobOptions.add_arguments(p)
    p.set_defaults(func=_cmd_process_wells)

    p = sub.add_parser("assemble", help="(rule) build the plate's OME-Zarr, CSV tables and heatmap")
    p.add_argument("--plate-json", required=True)
    p.add_argument("--wells-dir", required=True)
    p.add_argument("--out-dir", required=True)
    WellJobOptions.add_arguments(p, ["backend"])
    p.set_defaults(func=_cmd_assemble)

    p = sub.add_parser("generate-demo", help="write a synthetic ImageXpress plate with known nuclei counts")
    p.add_argument("--out", required=True)
    p.add_argument("--name", default="demo_plate")
    p.add_argument("--wells", nargs="+", default=None)
    for name in ("sites", "channels", "z_planes", "timepoints", "size", "seed"):  # a synthetic plate's defaults
        default = schema_default("plates", ANY_KEY, "synthetic", name)
        p.add_argument("--" + name.replace("_", "-"), type=int, default=default)
    p.set_defaults(func=_cmd_generate_demo)

    p = sub.add_parser("validate", help="check a screen config and its pipeline file")
    p.add_argument("config")
    p.add_argument("--pipeline")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("pipeline", help="parse a pipeline file (never executing it) and print its canonical form")
    p.add_argument("file")
    p.set_defaults(func=_cmd_pipeline)

    p = sub.add_parser("functions", help="list the functions pipelines may name: built-in and from plugins")
    p.set_defaults(func=_cmd_functions)
    from openhcs_rules.omero_cli import add_omero_parser
    from openhcs_rules.viewers_cli import add_viewer_parser

    add_omero_parser(sub)
    add_viewer_parser(sub)
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
