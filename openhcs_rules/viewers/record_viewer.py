"""A viewer with no window: it keeps every frame it receives and reports them over the control channel.

It runs the same :class:`ViewerServer` as napari and Fiji, so it is the reference receiver for the
transport tests and the benchmark (what arrives is exactly what was sent, measured without a GUI's
cost), and a way to check a stream on a machine with no display (``--keep none`` keeps only counts).
It keeps frames the way napari keeps image planes: as :class:`Plane` objects, a large shared-memory
frame being the sender's slot itself (on loan), dropped - the slot given back - when a frame for the same
key replaces it or on ``clear``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from openhcs_rules.errors import OpenHCSError
from openhcs_rules.messaging import messages
from openhcs_rules.messaging.server import Reply
from openhcs_rules.streaming.frames import Frame, Plane
from openhcs_rules.viewers.process import memory_limits, shutdown_on_sigterm, viewer_arguments
from openhcs_rules.viewers.viewer_server import ViewerServer

log = logging.getLogger(__name__)

DEFAULT_PORT = 5575
_KEY_FIELDS = ("plate", "well", "site", "channel", "z", "t")


class FrameRecord:
    """The frames received so far, keyed by (step, plate, well, site, channel, z, t)."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.frames: dict[tuple[Any, ...], Plane] = {}
        self.summaries: dict[tuple[Any, ...], dict[str, Any]] = {}

    def show(self, batch: list[Frame]) -> None:
        for frame in batch:
            meta = frame.meta
            key = (meta.step_name, *(getattr(meta, f) for f in _KEY_FIELDS))
            if self.keep:
                replaced = self.frames.get(key)
                self.frames[key] = frame.keep()  # possibly the sender's slot itself, on loan
                if replaced is not None:
                    replaced.drop()  # nothing refers to it any more: its slot goes back
                self.summaries[key] = {
                    "step": meta.step_name,
                    "step_index": meta.step_index,
                    "role": meta.role,
                    "channel_name": meta.channel_name,
                    **dict(zip(_KEY_FIELDS, key[1:], strict=True)),
                    "dtype": frame.array.dtype.name,
                    "shape": list(frame.array.shape),
                }

    def list_frames(self, message: dict[str, Any], payload: list[bytes]) -> Reply:
        """Every kept frame's components, dtype, shape and pixel sum."""
        result = [
            {**self.summaries[k], "sum": float(self.frames[k].array.sum(dtype=np.float64))}
            for k in sorted(self.summaries, key=str)
        ]
        return messages.make("reply", result=result), []

    def get_plane(self, message: dict[str, Any], payload: list[bytes]) -> Reply:
        index = message["index"]
        try:
            key = (message["layer"], *(index[f] for f in _KEY_FIELDS))
            array = self.frames[key].array
        except KeyError:
            return messages.error_message("not_found", f"no frame {message['layer']!r} {index}"), []
        reply = messages.make("reply", result={"dtype": array.dtype.name, "shape": list(array.shape)})
        return reply, [np.ascontiguousarray(array).tobytes()]

    def clear(self, message: dict[str, Any], payload: list[bytes]) -> Reply:
        count = len(self.frames)
        planes = list(self.frames.values())
        self.frames.clear()
        self.summaries.clear()
        for plane in planes:
            plane.drop()
        return messages.make("reply", result={"cleared": count}), []


def main(argv: Sequence[str] | None = None) -> int:
    def keep_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--keep", choices=["all", "none"], default="all", help="none: count frames only")

    args = viewer_arguments("record", DEFAULT_PORT, argv, keep_option)
    record = FrameRecord(keep=args.keep == "all")
    try:
        server = ViewerServer("record", args.port, args.host, args.keys_dir, args.name, **memory_limits(args))
        server.handlers.update(frames=record.list_frames, get_plane=record.get_plane, clear=record.clear)
        server.status_extra = lambda: {
            "frames_kept": len(record.frames),
            "frames_on_loan": sum(plane.on_loan for plane in list(record.frames.values())),  # list(): atomic copy
        }
        server.start()
    except OpenHCSError as exc:
        log.error("%s", exc)
        return 3
    shutdown_on_sigterm(server)
    try:
        while not server.shutdown_requested.is_set():
            server.pump(record.show, budget_s=0.2, block_s=0.1)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
