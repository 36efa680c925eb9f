"""``openhcs-rules illumination|process-well|process-wells|assemble``: the per-plate and per-well jobs rules run."""

from __future__ import annotations

import argparse
from typing import Any

from openhcs_rules.config.schema import schema_default
from openhcs_rules.core.allocator import keep_large_blocks
from openhcs_rules.jobs.options import WellJobOptions


def _cmd_illumination(args: argparse.Namespace) -> int:
    keep_large_blocks()  # image-sized temporaries reused, not mapped anew (core/allocator.py)
    from openhcs_rules.jobs.illumination import estimate_plate_illumination
    from openhcs_rules.plate.model import PlateStructure

    estimate_plate_illumination(PlateStructure.load_json(args.plate_json), args.out, args.max_images)
    return 0


def _cmd_process_well(args: argparse.Namespace) -> int:
    keep_large_blocks()  # image-sized temporaries reused, not mapped anew (core/allocator.py)
    from openhcs_rules.jobs.process_well import process_well

    options = WellJobOptions.from_args(args)  # the options process-well and process-wells share
    process_well(args.plate_json, args.well, args.pipeline, args.out_dir, options=options)
    return 0


def _cmd_process_wells(args: argparse.Namespace) -> int:
    keep_large_blocks()  # image-sized temporaries reused, not mapped anew (core/allocator.py)
    from openhcs_rules.jobs.process_wells import process_wells

    options = WellJobOptions.from_args(args)
    process_wells(args.plate_json, args.chunk, args.pipeline, args.wells_dir, args.manifest, options=options)
    return 0


def _cmd_assemble(args: argparse.Namespace) -> int:
    from openhcs_rules.jobs.assemble import assemble_plate

    channel = args.nuclei_channel
    assemble_plate(
        args.plate_json,
        args.wells_dir,
        args.out_dir,
        args.backend,
        args.platemap,
        args.control_feature,
        nuclei_channel=int(channel) if channel is not None and channel.isdigit() else channel,
        illumination=args.illumination,
    )
    return 0


def add_parsers(subparsers: Any) -> None:
    """Register the job commands on the console script's subparsers."""
    p = subparsers.add_parser("illumination", help="(rule) estimate per-channel flat fields of a plate")
    p.add_argument("--plate-json", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-images", type=int, default=schema_default("illumination", "max_images"))
    p.set_defaults(func=_cmd_illumination)

    p = subparsers.add_parser("process-well", help="run the pipeline on one well (outside the workflow)")
    p.add_argument("--plate-json", required=True)
    p.add_argument("--well", required=True)
    p.add_argument("--pipeline", required=True)
    p.add_argument("--out-dir", required=True)
    WellJobOptions.add_arguments(p)
    p.set_defaults(func=_cmd_process_well)

    p = subparsers.add_parser(
        "process-wells", help="(rule) run the pipeline on a chunk of wells, skipping finished ones"
    )
    p.add_argument("--plate-json", required=True)
    p.add_argument("--chunk", required=True, help="a well (B02) or a run of wells in plate order (B02-B09)")
    p.add_argument("--pipeline", required=True)
    p.add_argument("--wells-dir", required=True, help="each well's outputs go to WELLS_DIR/<well>/")
    p.add_argument("--manifest", required=True, help="written last, once every well of the chunk is done")
    WellJobOptions.add_arguments(p)
    p.set_defaults(func=_cmd_process_wells)

    p = subparsers.add_parser("assemble", help="(rule) build the plate's OME-Zarr, CSV tables and heatmap")
    p.add_argument("--plate-json", required=True)
    p.add_argument("--wells-dir", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--platemap", default=None, help="the plate map (CSV: well, any columns, control)")
    p.add_argument("--nuclei-channel", default=None, help="the channel the QC montage shows (index or name)")
    p.add_argument("--illumination", default=None, help="the plate's illumination.npz (drawn as flatfield.png)")
    p.add_argument(
        "--control-feature",
        default=schema_default("controls", "feature"),
        help="the wells-table column Z', SSMD and the percent of negative control are computed on",
    )
    WellJobOptions.add_arguments(p, ["backend"])
    p.set_defaults(func=_cmd_assemble)
