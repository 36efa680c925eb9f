"""Does a pipeline's every channel exist in a plate? Asked at discovery, before any other job of the plate.

A channel that a step names (``channel="GFP"``, ``func={"DAPI": ...}``, ``"nuclei"`` = the config's
nuclei channel) is otherwise looked up inside each well job, after flat-field estimation and every step
before it: a screen mixing plates whose nuclei are in different channels failed every well that late.
Discovery knows the plate's channels, so it checks them all there, with the same lookup the jobs use.
"""

from __future__ import annotations

from openhcs_rules.errors import PipelineError
from openhcs_rules.pipeline.executor import RunContext
from openhcs_rules.pipeline.model import Pipeline, Step


def channel_problems(pipeline: Pipeline, channel_names: dict[int, str], nuclei_channel: int | str | None) -> list[str]:
    """One line per channel selector of ``pipeline`` that this plate's channels cannot satisfy."""
    context = RunContext(channel_names=channel_names, nuclei_channel=nuclei_channel)
    problems: list[str] = []
    for step in pipeline.steps:
        selectors: list[int | str] = list(step.func) if isinstance(step.func, dict) else []
        if step.channel is not None:
            selectors.append(step.channel)
        for selector in selectors:
            try:
                context.resolve_channel(selector, step)
            except PipelineError as exc:
                where = f" (nuclei_channel is {nuclei_channel!r})" if selector == "nuclei" else ""
                problems.append(f"{exc}{where}")
    return problems


def nuclei_channel_problem(channel_names: dict[int, str], nuclei_channel: int | str | None) -> str | None:
    """Why ``nuclei_channel`` is not a channel of this plate, or None (also checked without a pipeline)."""
    if nuclei_channel is None:
        return None
    context = RunContext(channel_names=channel_names, nuclei_channel=nuclei_channel)
    try:
        context.resolve_channel("nuclei", Step(func="segment_nuclei", name="nuclei_channel"))
    except PipelineError:
        available = ", ".join(f"{i} ({name})" for i, name in sorted(channel_names.items()))
        return f"nuclei_channel {nuclei_channel!r} is not a channel of this plate; its channels: {available}"
    return None
