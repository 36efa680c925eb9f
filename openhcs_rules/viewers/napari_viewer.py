"""The napari viewer process: a persistent window that fills layers as wells are processed.

One layer per (plate, step, channel), named ``"<plate> | <step> | <channel>"``; each layer stacks its
planes over (well, site, t, z) with a slider per axis (axis labels say which), growing as new wells,
sites or timepoints arrive. Label images become Labels layers. A Qt timer pumps the queue every 20 ms:
all frames that arrived since the last tick are placed first, then each touched layer is refreshed once,
so a fast producer costs one redraw per layer per tick and is never made to wait for the GUI.

Image layers show planes without copying them (:class:`PlaneGrid`, a lazy array napari slices like a dask
array): a large shared-memory frame is the sender's slot itself, on loan. napari keeps references to what
it last sliced (the layer's slice, vispy's texture data), so a loan is given back only after its layer
no longer shows it: a replaced plane is dropped after every touched layer was refreshed (resliced from the
new plane), a plane the server detaches to a copy marks its layer for that refresh, and ``clear`` drops
planes after the layers are removed and collected. The viewer never unmaps a view (the reader keeps any
mapping an array still refers to) and segments never shrink, so even a stale reference reads valid memory.
Label layers stay dense copies: napari paints labels in place, which a read-only slot cannot take.

At most ``--max-layers`` layers (default :data:`MAX_LAYERS`) exist at once: a frame for a new layer past
the limit gets a ``too_many_layers`` error reply (every layer costs the GUI thread on each redraw - 300
layers froze napari for a minute), and ``clear`` removes every layer and drops every reference to their
arrays, so their memory goes back.

Start: ``python -m openhcs_rules.viewers.napari_viewer --port 5555 [--xvfb] [--max-layers 64]`` (or
``openhcs-rules viewer start --kind napari``). It survives pipeline runs; ``clear`` empties it and
``shutdown`` (or closing the window) ends it.
"""

from __future__ import annotations

import functools
import gc
import logging
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from openhcs_rules.errors import OpenHCSError
from openhcs_rules.messaging import messages
from openhcs_rules.messaging.server import Reply
from openhcs_rules.streaming.frames import Frame, FrameMeta, Plane
from openhcs_rules.viewers.display import ensure_display, has_display
from openhcs_rules.viewers.layout import (
    NAPARI_AXES,
    LayerBudget,
    PlaneGrid,
    PlaneStack,
    coordinates,
    layer_name,
)
from openhcs_rules.viewers.process import max_layers_option, memory_limits, shutdown_on_sigterm, viewer_arguments
from openhcs_rules.viewers.viewer_server import ViewerServer

log = logging.getLogger(__name__)

DEFAULT_PORT = 5555
TICK_MS = 20
#: a plate's steps x channels is typically 5-20 layers; 64 holds a few plates side by side, while each
#: layer still gets redrawn quickly enough that the window stays responsive
MAX_LAYERS = 64


class NapariLayers:
    """Places frames into napari layers by component; runs on the Qt thread only."""

    def __init__(self, viewer: Any, follow: bool = True, max_layers: int = MAX_LAYERS) -> None:
        self.viewer = viewer
        self.follow = follow
        self.budget = LayerBudget(max_layers, "napari layers")
        self.stacks: dict[str, PlaneGrid | PlaneStack] = {}
        self.roles: dict[str, str] = {}
        self._ranges: dict[str, tuple[float, float]] = {}
        self._detached: set[str] = set()  # layers whose loaned plane became a copy: reslice before it goes back

    # -- frames ---------------------------------------------------------------------------------------
    def admit(self, meta: FrameMeta, shape: tuple[int, int]) -> None:
        """(data thread) Refuse a frame whose layer would be one past the limit; see :class:`LayerBudget`."""
        self.budget.admit((layer_name(meta), tuple(shape)), layer_name(meta))

    def _stack_for(self, frame: Frame) -> tuple[str, PlaneGrid | PlaneStack] | None:
        """The frame's stack, made if needed; None when a new one would pass the layer limit."""
        name = layer_name(frame.meta)
        stack = self.stacks.get(name)
        if stack is not None and stack.plane_shape != frame.array.shape:  # e.g. a binned step output
            name = f"{name} ({frame.array.shape[0]}x{frame.array.shape[1]})"
            stack = self.stacks.get(name)
        if stack is None:
            if not self.budget.claim((layer_name(frame.meta), tuple(frame.array.shape))):
                log.warning("napari holds %d layers, its limit: frame for %r not shown", self.budget.limit, name)
                return None
            if frame.meta.role == "labels":
                stack = self.stacks[name] = PlaneStack(NAPARI_AXES, frame.array.shape, np.int32)
            else:
                stack = self.stacks[name] = PlaneGrid(NAPARI_AXES, frame.array.shape, frame.array.dtype)
            self.roles[name] = frame.meta.role
        return name, stack

    def show(self, batch: list[Frame]) -> None:
        """Put a batch of frames into their stacks, then refresh each touched layer once."""
        touched: dict[str, bool] = {}
        replaced: list[Plane] = []
        last: tuple[str, dict[str, Any]] | None = None
        for frame in batch:
            found = self._stack_for(frame)
            if found is None:
                continue
            name, stack = found
            coords = coordinates(frame.meta, NAPARI_AXES)
            if isinstance(stack, PlaneGrid):
                plane = frame.keep(on_detach=functools.partial(self._detached.add, name))
                reshaped, previous = stack.put(coords, plane)
                if previous is not None:
                    replaced.append(previous)
            else:
                reshaped = stack.put(coords, frame.array)  # labels: copied into the editable dense stack
            touched[name] = touched.get(name, False) or reshaped
            low, high = float(frame.array.min()), float(frame.array.max())
            old = self._ranges.get(name, (low, high))
            self._ranges[name] = (min(old[0], low), max(old[1], high))
            last = (name, coords)
        for name in self._detached:
            touched.setdefault(name, False)
        self._detached.clear()
        for name, reshaped in touched.items():
            if name in self.stacks:
                self._update_layer(name, reshaped)
        if self.follow and last is not None:
            position = self.stacks[last[0]].index.position(last[1])
            current = tuple(self.viewer.dims.current_step)
            self.viewer.dims.current_step = position + current[len(position) :]
        for previous in replaced:  # every layer has resliced from its new planes: nothing shows these any more
            previous.drop()

    def _update_layer(self, name: str, reshaped: bool) -> None:
        stack = self.stacks[name]
        axes = {axis: list(values) for axis, values in stack.index.values.items()}
        if name not in self.viewer.layers:
            if self.roles[name] == "labels":
                layer = self.viewer.add_labels(stack.data, name=name, metadata={"axes": axes})
            else:
                low, high = self._ranges[name]
                layer = self.viewer.add_image(
                    stack.data, name=name, metadata={"axes": axes}, contrast_limits=(low, max(high, low + 1))
                )
            self.viewer.dims.axis_labels = (*NAPARI_AXES, "y", "x")
            return
        layer = self.viewer.layers[name]
        layer.metadata["axes"] = axes
        if reshaped:
            layer.data = stack.data
        else:
            layer.refresh()
        if self.roles[name] == "image":
            low, high = self._ranges[name]
            current = layer.contrast_limits_range
            if low < current[0] or high > current[1]:
                layer.contrast_limits_range = (min(low, current[0]), max(high, current[1], low + 1))

    # -- commands -------------------------------------------------------------------------------------
    def layers(self, message: dict[str, Any], payload: list[bytes]) -> Reply:
        """What napari holds: every layer's name, type, data shape and dtype, and the values on each axis."""
        result = []
        for layer in self.viewer.layers:
            result.append(
                {
                    "name": layer.name,
                    "type": type(layer).__name__.lower(),
                    "shape": list(layer.data.shape),
                    "dtype": str(layer.data.dtype),
                    "axes": layer.metadata.get("axes", {}),
                    "axis_labels": list(self.viewer.dims.axis_labels),
                }
            )
        return messages.make("reply", result=result), []

    def get_plane(self, message: dict[str, Any], payload: list[bytes]) -> Reply:
        """The pixels napari holds for one plane: layer name plus {well, site, t, z}."""
        name = message["layer"]
        if name not in self.viewer.layers or name not in self.stacks:
            return messages.error_message("not_found", f"no layer {name!r}"), []
        try:
            position = self.stacks[name].index.position(message["index"])
        except KeyError as exc:
            return messages.error_message("not_found", str(exc)), []
        plane = np.ascontiguousarray(np.asarray(self.viewer.layers[name].data[position]))
        return messages.make("reply", result={"dtype": plane.dtype.name, "shape": list(plane.shape)}), [plane.tobytes()]

    def screenshot(self, message: dict[str, Any], payload: list[bytes]) -> Reply:
        """The canvas as RGBA pixels (what a person would see), for checks that rendering works."""
        image = np.ascontiguousarray(self.viewer.screenshot(canvas_only=True, flash=False))
        return messages.make("reply", result={"dtype": image.dtype.name, "shape": list(image.shape)}), [image.tobytes()]

    def clear(self, message: dict[str, Any], payload: list[bytes]) -> Reply:
        """Remove every layer and every reference to its arrays, then collect, so the memory goes back.

        Layers sit in reference cycles (events, the Qt layer list), which only the cycle collector frees:
        without ``gc.collect`` their arrays stayed alive for a long while after ``clear`` (1.5 GB seen).
        """
        count = len(self.viewer.layers)
        self.viewer.layers.select_all()
        self.viewer.layers.clear()
        planes = [plane for stack in self.stacks.values() if isinstance(stack, PlaneGrid) for plane in stack.clear()]
        self.stacks.clear()
        self.roles.clear()
        self._ranges.clear()
        self.budget.reset()
        gc.collect()
        for plane in planes:  # the layers and what they sliced are gone: their slots go back
            plane.drop()
        return messages.make("reply", result={"cleared": count}), []


def main(argv: Sequence[str] | None = None) -> int:
    args = viewer_arguments("napari", DEFAULT_PORT, argv, max_layers_option(MAX_LAYERS, "layers"))
    display = ensure_display(args.xvfb)
    try:
        if not has_display():
            log.error("no display for napari: set DISPLAY (a desktop session) or start the viewer with --xvfb")
            return 2
        import napari
        from qtpy.QtCore import QTimer
        from qtpy.QtWidgets import QApplication

        viewer = napari.Viewer(title=f"openhcs-rules napari :{args.port}", show=True)
        layers = NapariLayers(viewer, max_layers=args.max_layers)
        try:
            server = ViewerServer("napari", args.port, args.host, args.keys_dir, args.name, **memory_limits(args))
        except OpenHCSError as exc:
            log.error("%s", exc)
            return 3
        server.handlers.update(
            layers=layers.layers, get_plane=layers.get_plane, screenshot=layers.screenshot, clear=layers.clear
        )
        server.admit_frame = layers.admit
        server.status_extra = lambda: {
            "layers": len(layers.stacks),
            "max_layers": layers.budget.limit,
            "layer_bytes": sum(stack.nbytes for stack in list(layers.stacks.values())),  # list(): atomic copy
        }
        try:
            server.start()
        except OpenHCSError as exc:
            log.error("%s", exc)
            return 3
        shutdown_on_sigterm(server)

        def tick() -> None:
            server.pump(layers.show, budget_s=0.05)
            if server.shutdown_requested.is_set():
                timer.stop()
                viewer.close()
                QApplication.quit()

        timer = QTimer()
        timer.timeout.connect(tick)
        timer.start(TICK_MS)
        napari.run()
        server.stop()
        return 0
    finally:
        if display is not None:
            display.stop()


if __name__ == "__main__":
    sys.exit(main())
