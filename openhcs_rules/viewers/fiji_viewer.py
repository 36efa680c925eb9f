"""The Fiji/ImageJ viewer process: real ImageJ hyperstacks built from the frames' components.

One hyperstack per (plate, well, site, step), titled ``"<plate> <well> s<site> | <step>"``, with
channels x z x time as ImageJ orders them. A new plane of a known position is written into the existing
stack (incremental update); a plane with a new channel, z or t value rebuilds the stack one size larger,
keeping the planes already there. 8- and 16-bit frames stay 8/16-bit; everything else is shown as 32-bit.
Fiji keeps copying each frame: ImageJ's processors hold Java arrays on the JVM heap, which cannot be a
view of a shared-memory slot, so the frame is copied into one and its slot goes back with the ack.
An ImageJ macro sent over the control channel runs in the viewer (``macro`` request); only clients that
can reach the control channel can send one: loopback by default, CURVE-authenticated otherwise.

Start: ``python -m openhcs_rules.viewers.fiji_viewer --port 5565 [--xvfb]``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from openhcs_rules.errors import OpenHCSError
from openhcs_rules.messaging import messages
from openhcs_rules.messaging.server import Reply
from openhcs_rules.streaming.frames import Frame
from openhcs_rules.viewers import imagej
from openhcs_rules.viewers.display import ensure_display, has_display
from openhcs_rules.viewers.layout import FIJI_AXES, AxisIndex, coordinates, hyperstack_title
from openhcs_rules.viewers.process import memory_limits, shutdown_on_sigterm, viewer_arguments
from openhcs_rules.viewers.viewer_server import ViewerServer

log = logging.getLogger(__name__)

DEFAULT_PORT = 5565


class Hyperstack:
    """One ImagePlus (C x Z x T) and the component values on each of its axes."""

    def __init__(self, title: str, plane_shape: tuple[int, int], depth: int, show: bool) -> None:
        self.title = title
        self.plane_shape = plane_shape
        self.depth = depth
        self.show_window = show
        self.index = AxisIndex(FIJI_AXES)
        self.imp: Any = None

    def _stack_number(self, coords: dict[str, Any]) -> int:
        number = self._number_in(self.index.values, tuple(coords[a] for a in FIJI_AXES))
        if number is None:
            raise KeyError(f"{coords} is not in hyperstack {self.title!r} (axes hold {self.index.values})")
        return number

    @staticmethod
    def _number_in(values: dict[str, list[Any]], key: tuple[Any, ...]) -> int | None:
        """1-based ImageJ stack number of (channel, z, t) in a stack with these axis values, if present."""
        if not all(v in values[a] for a, v in zip(FIJI_AXES, key, strict=True)):
            return None
        c, z, t = (values[a].index(v) for a, v in zip(FIJI_AXES, key, strict=True))
        n_c, n_z = len(values["channel"]), len(values["z"])
        return 1 + c + z * n_c + t * n_c * n_z

    def _rebuild(self, old_values: dict[str, list[Any]]) -> None:
        """A stack with the new axis sizes; planes already shown move to their new positions."""
        height, width = self.plane_shape
        stack = imagej.jclass("ij.ImageStack")(width, height)
        old_stack = self.imp.getStack() if self.imp is not None else None
        for t in self.index.values["t"]:
            for z in self.index.values["z"]:
                for channel in self.index.values["channel"]:
                    old_number = self._number_in(old_values, (channel, z, t)) if old_stack is not None else None
                    if old_stack is not None and old_number is not None:
                        processor = old_stack.getProcessor(old_number)
                    else:
                        processor = imagej.to_processor(_zeros(self.plane_shape), self.depth)
                    stack.addSlice(f"c{channel} z{z} t{t}", processor)
        n_c, n_z, n_t = self.index.shape
        if self.imp is None:
            self.imp = imagej.jclass("ij.ImagePlus")(self.title, stack)
            self.imp.setDimensions(n_c, n_z, n_t)
            self.imp.setOpenAsHyperStack(True)
            if self.show_window:
                self.imp.show()
        else:
            self.imp.setStack(stack, n_c, n_z, n_t)

    def put(self, frame: Frame) -> None:
        coords = coordinates(frame.meta, FIJI_AXES)
        old_values = {axis: list(values) for axis, values in self.index.values.items()}
        if self.index.add(coords) or self.imp is None:
            self._rebuild(old_values)
        number = self._stack_number(coords)
        self.imp.getStack().setProcessor(imagej.to_processor(frame.array, self.depth), number)
        self.imp.setPosition(number)

    def refresh(self) -> None:
        self.imp.resetDisplayRange()
        self.imp.updateAndDraw()

    def describe(self) -> dict[str, Any]:
        imp = self.imp
        return {
            "title": self.title,
            "width": int(imp.getWidth()),
            "height": int(imp.getHeight()),
            "channels": int(imp.getNChannels()),
            "slices": int(imp.getNSlices()),
            "frames": int(imp.getNFrames()),
            "bit_depth": int(imp.getBitDepth()),
            "hyperstack": bool(imp.isHyperStack()),
            "axes": {axis: list(values) for axis, values in self.index.values.items()},
        }

    def plane(self, coords: dict[str, Any]) -> Any:
        return imagej.from_processor(self.imp.getStack().getProcessor(self._stack_number(coords)))

    def close(self) -> None:
        if self.imp is not None:
            self.imp.changes = False
            self.imp.close()


def _zeros(shape: tuple[int, int]) -> Any:
    import numpy as np

    return np.zeros(shape, dtype=np.float32)


class FijiHyperstacks:
    """Frames -> hyperstacks, and the Fiji viewer's commands; runs on the viewer's main thread."""

    def __init__(self, show: bool) -> None:
        self.show_windows = show
        self.stacks: dict[str, Hyperstack] = {}

    def show(self, batch: list[Frame]) -> None:
        touched: dict[str, Hyperstack] = {}
        for frame in batch:
            title = hyperstack_title(frame.meta)
            stack = self.stacks.get(title)
            if stack is not None and stack.plane_shape != frame.array.shape:
                title = f"{title} ({frame.array.shape[0]}x{frame.array.shape[1]})"
                stack = self.stacks.get(title)
            if stack is None:
                depth = imagej.bit_depth(frame.array.dtype.name)
                stack = self.stacks[title] = Hyperstack(title, frame.array.shape, depth, self.show_windows)
            stack.put(frame)
            touched[title] = stack
        for stack in touched.values():
            stack.refresh()

    def hyperstacks(self, message: dict[str, Any], payload: list[bytes]) -> Reply:
        return messages.make("reply", result=[s.describe() for s in self.stacks.values()]), []

    def get_plane(self, message: dict[str, Any], payload: list[bytes]) -> Reply:
        """The pixels ImageJ holds for one plane: hyperstack title plus {channel, z, t}."""
        stack = self.stacks.get(message["layer"])
        if stack is None:
            return messages.error_message("not_found", f"no hyperstack {message['layer']!r}"), []
        try:
            plane = stack.plane(message["index"])
        except KeyError as exc:
            return messages.error_message("not_found", str(exc)), []
        return messages.make("reply", result={"dtype": plane.dtype.name, "shape": list(plane.shape)}), [plane.tobytes()]

    def macro(self, message: dict[str, Any], payload: list[bytes]) -> Reply:
        result, error = imagej.run_macro(message["code"])
        if error:
            return messages.error_message("macro_error", error), []
        return messages.make("reply", result=result), []

    def clear(self, message: dict[str, Any], payload: list[bytes]) -> Reply:
        count = len(self.stacks)
        for stack in self.stacks.values():
            stack.close()
        self.stacks.clear()
        return messages.make("reply", result={"cleared": count}), []


def main(argv: Sequence[str] | None = None) -> int:
    args = viewer_arguments("fiji", DEFAULT_PORT, argv)
    display = ensure_display(args.xvfb)
    if not has_display():
        log.error("no display for Fiji: set DISPLAY (a desktop session) or start the viewer with --xvfb")
        return 2
    status = 0
    try:
        imagej.start_jvm(headless=False)
        hyperstacks = FijiHyperstacks(show=True)
        server = ViewerServer("fiji", args.port, args.host, args.keys_dir, args.name, **memory_limits(args))
        server.handlers.update(
            hyperstacks=hyperstacks.hyperstacks,
            get_plane=hyperstacks.get_plane,
            macro=hyperstacks.macro,
            clear=hyperstacks.clear,
        )
        server.status_extra = lambda: {"hyperstacks": len(hyperstacks.stacks)}
        server.start()
        shutdown_on_sigterm(server)
        try:
            while not server.shutdown_requested.is_set():
                server.pump(hyperstacks.show, budget_s=0.2, block_s=0.1)
        finally:
            server.stop()
            hyperstacks.clear({}, [])
    except (OpenHCSError, FileNotFoundError) as exc:
        log.error("%s", exc)
        status = 3
    finally:
        if display is not None:
            display.stop()
    sys.stdout.flush()
    sys.stderr.flush()
    imagej.exit_jvm(status)  # the JVM's AWT threads would otherwise keep the process alive
    return status


if __name__ == "__main__":
    sys.exit(main())
