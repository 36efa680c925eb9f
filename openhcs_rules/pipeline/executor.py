"""Run a pipeline on the planes of one well.

The well's planes live in a dict keyed by (site, channel, z, t). Each step groups the planes by the
components it does not vary, stacks each group along the components it does vary, calls the function
once per stack on the chosen memory type, and puts the result back. A projection (one plane out of a
stack of n) collapses the varied components to index 1. Labels and object rows are kept beside the
images. ``on_step`` is called with every step's output so viewers can show it live.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import numpy as np

from openhcs_rules.core.arrays import modules_for, to_memory, to_numpy
from openhcs_rules.errors import PipelineError
from openhcs_rules.pipeline.model import STACK_COMPONENTS, Pipeline, Step
from openhcs_rules.pipeline.registry import get_function

log = logging.getLogger(__name__)


class PlaneKey(NamedTuple):
    """Where one image plane of a well sits: field (site), channel, z plane and timepoint (all 1-based)."""

    site: int
    channel: int
    z: int
    t: int


class LabelKey(NamedTuple):
    """Where one label plane of a well sits: labels are per field, z plane and timepoint, not per channel."""

    site: int
    z: int
    t: int


assert PlaneKey._fields == STACK_COMPONENTS, "PlaneKey's fields are the stack components, in order"


@dataclass
class WellResult:
    """Everything a pipeline produced for one well."""

    images: dict[PlaneKey, Any]
    labels: dict[LabelKey, Any] = field(default_factory=dict)  # 2D int32 label planes
    objects: list[dict[str, Any]] = field(default_factory=list)
    #: the planes as read, before any step (the instrument's pixels, in their own dtype): the well job keeps
    #: them to write them (``output.images: raw``) and to measure image quality; empty unless a caller sets it
    raw: dict[PlaneKey, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """What steps may need beyond their stack: channel names, plate illumination, the nuclei channel."""

    channel_names: dict[int, str]
    memory_type: str = "numpy"
    illumination: dict[int, np.ndarray] = field(default_factory=dict)
    nuclei_channel: int | str | None = None
    on_step: Callable[[Step, PlaneKey, Any], None] | None = None

    def resolve_channel(self, selector: int | str | None, step: Step) -> int:
        """A channel index from an index, a name, or 'nuclei' (the config's nuclei_channel, else the first)."""
        if selector == "nuclei":
            selector = self.nuclei_channel
        indices = sorted(self.channel_names)
        if selector is None:
            return indices[0]
        if isinstance(selector, int) or (isinstance(selector, str) and selector.isdigit()):
            index = int(selector)
            if index in self.channel_names:
                return index
        else:
            for index, name in self.channel_names.items():
                if name.lower() == selector.lower():
                    return index
        available = ", ".join(f"{i} ({self.channel_names[i]})" for i in indices)
        raise PipelineError(f"step {step.label!r}: channel {selector!r} is not in this plate; channels: {available}")


def _group(keys: Iterable[PlaneKey], variable: list[str]) -> dict[tuple[int, ...], list[PlaneKey]]:
    fixed = [c for c in STACK_COMPONENTS if c not in variable]
    groups: dict[tuple[int, ...], list[PlaneKey]] = {}
    for key in sorted(keys):
        groups.setdefault(tuple(getattr(key, c) for c in fixed), []).append(key)
    return groups


def _collapse(key: PlaneKey, variable: list[str]) -> PlaneKey:
    return key._replace(**{component: 1 for component in variable})


def _stack(result: WellResult, keys: list[PlaneKey], memory_type: str) -> Any:
    """Stack planes on the step's memory type; planes already there are not copied across devices."""
    planes = [to_memory(result.images[k], memory_type) for k in keys]
    xp, _ = modules_for(planes[0])
    return xp.stack(planes)


def _call_image_step(
    func: Callable[..., Any],
    step: Step,
    keys: list[PlaneKey],
    result: WellResult,
    context: RunContext,
    kwargs: dict[str, Any],
    memory_type: str,
) -> dict[PlaneKey, Any]:
    stack = _stack(result, keys, memory_type)
    call_kwargs = dict(kwargs)
    if "illumination" in inspect.signature(func).parameters:
        channels = {k.channel for k in keys}
        if len(channels) != 1:
            raise PipelineError(
                f"step {step.label!r}: flat-field needs one channel per stack; drop 'channel' from variable_components"
            )
        channel = channels.pop()
        if channel not in context.illumination:
            raise PipelineError(f"step {step.label!r}: no illumination profile for channel {channel}")
        call_kwargs["illumination"] = to_memory(context.illumination[channel], memory_type)
    out = func(stack, **call_kwargs)
    if getattr(out, "ndim", None) != 3:  # a plugin may return anything; say what came back
        got = f"a {out.ndim}-D array" if hasattr(out, "ndim") else f"a {type(out).__name__}"
        raise PipelineError(f"step {step.label!r}: function returned {got}, expected an (n, y, x) array")
    if out.shape[0] == len(keys):
        return dict(zip(keys, out, strict=True))
    if out.shape[0] == 1:
        return {_collapse(keys[0], step.variable_components): out[0]}
    raise PipelineError(f"step {step.label!r}: got {out.shape[0]} planes back from a stack of {len(keys)}")


def _labels_of(out: Any, step: Step, planes: int) -> np.ndarray:
    """A labels function's result on the host, checked: one label plane per plane of the stack it was given."""
    shape = getattr(out, "shape", None)
    if shape is None or len(shape) != 3 or shape[0] != planes:
        got = f"shape {tuple(shape)}" if shape is not None else f"a {type(out).__name__}"
        raise PipelineError(f"step {step.label!r}: labels function returned {got}, expected ({planes}, y, x)")
    return to_numpy(out)


def run_step(step: Step, result: WellResult, context: RunContext) -> None:
    """Apply one step to the well in place."""
    keys = list(result.images)
    if step.channel is not None:
        channel = context.resolve_channel(step.channel, step)
        keys = [k for k in keys if k.channel == channel]
    if isinstance(step.func, dict):
        names = {context.resolve_channel(ch, step): name for ch, name in step.func.items()}
    else:
        names = None
    specs_by_kind = {get_function(n).kind for n in step.function_names()}
    if specs_by_kind == {"measure"}:
        _run_measure(step, result, context)
        return
    new_images: dict[PlaneKey, Any] = {}
    replaced: set[PlaneKey] = set()
    for group_keys in _group(keys, step.variable_components).values():
        if names is not None:
            channels = {k.channel for k in group_keys}
            if len(channels) != 1:
                raise PipelineError(
                    f"step {step.label!r}: group_by='channel' needs 'channel' out of variable_components"
                )
            function_name = names.get(channels.pop())
            if function_name is None:
                continue  # channel not named in the dict: passes through unchanged
        else:
            function_name = cast(str, step.func)  # names is None: func is not a dict, so one function name
        spec = get_function(function_name)
        func = spec.load()
        memory_type = spec.memory_type_for(context.memory_type)  # numpy-only plugins get host arrays
        if spec.kind == "labels":
            stack = _stack(result, group_keys, memory_type)
            labels = _labels_of(func(stack, **step.kwargs), step, len(group_keys))
            for key, plane in zip(group_keys, labels, strict=True):
                result.labels[LabelKey(key.site, key.z, key.t)] = plane.astype(np.int32, copy=False)
                if context.on_step:
                    context.on_step(step, key, plane)
            continue
        produced = _call_image_step(func, step, group_keys, result, context, step.kwargs, memory_type)
        replaced.update(group_keys)
        new_images.update(produced)
        if context.on_step:
            for key, plane in produced.items():
                context.on_step(step, key, plane)
    for key in replaced:
        del result.images[key]
    result.images.update(new_images)


def _run_measure(step: Step, result: WellResult, context: RunContext) -> None:
    spec = get_function(step.function_names()[0])
    func = spec.load()
    channels = sorted({k.channel for k in result.images})
    names = [context.channel_names.get(c, f"w{c}") for c in channels]
    for (site, z, t), labels in sorted(result.labels.items()):
        planes = []
        for channel in channels:
            plane = result.images.get(PlaneKey(site, channel, z, t))
            if plane is None:
                # the image was projected (z collapsed to 1) after segmentation, or the other way round
                plane = result.images.get(PlaneKey(site, channel, 1, t))
            if plane is None:
                raise PipelineError(
                    f"step {step.label!r}: no channel {channel} image at site {site}, z {z}, t {t} to measure"
                )
            planes.append(to_numpy(plane))
        rows = func(labels, np.stack(planes), names, **step.kwargs)
        for row in rows:
            result.objects.append({"site": site, "z": z, "t": t, **row})


def run_pipeline(pipeline: Pipeline, planes: dict[PlaneKey, np.ndarray], context: RunContext) -> WellResult:
    """Run every step on one well's planes; images come back as host (numpy) float32 arrays."""
    result = WellResult(images={PlaneKey(*k): v.astype(np.float32, copy=False) for k, v in planes.items()})
    for step in pipeline.steps:
        log.debug("step %s on %d planes", step.label, len(result.images))
        run_step(step, result, context)
    result.images = {k: to_numpy(v) for k, v in result.images.items()}
    return result
