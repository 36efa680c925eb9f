"""The allow-list of processing functions a pipeline may name, and what kind of result each returns.

Pipeline files name functions by string; only names in this table can run. ``kind`` tells the executor
how to treat the result: ``image`` replaces the planes, ``labels`` stores a label image per
site/z/t, ``measure`` turns labels + all channels into object rows.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openhcs_rules.errors import PipelineError


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    module: str
    attribute: str
    kind: str  # image | labels | measure
    doc: str

    def load(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.attribute)

    def parameters(self) -> dict[str, inspect.Parameter]:
        return dict(inspect.signature(self.load()).parameters)


FUNCTIONS: dict[str, FunctionSpec] = {
    spec.name: spec
    for spec in (
        FunctionSpec(
            "flatfield_correct",
            "openhcs_rules.functions.illumination",
            "flatfield_correct",
            "image",
            "divide by the plate's illumination profile (estimated per channel from the plate)",
        ),
        FunctionSpec(
            "subtract_background",
            "openhcs_rules.functions.background",
            "subtract_background",
            "image",
            "remove smooth background under objects smaller than `radius`",
        ),
        FunctionSpec(
            "project_z",
            "openhcs_rules.functions.projection",
            "project_z",
            "image",
            "z projection (max, mean) of the stack",
        ),
        FunctionSpec(
            "denoise", "openhcs_rules.functions.denoise", "denoise", "image", "gaussian (or median) denoising"
        ),
        FunctionSpec(
            "segment_nuclei",
            "openhcs_rules.functions.segmentation",
            "segment_nuclei",
            "labels",
            "threshold + seeded watershed that splits touching nuclei",
        ),
        FunctionSpec(
            "measure_objects",
            "openhcs_rules.functions.measurement",
            "measure_objects",
            "measure",
            "per-object area, centroid and per-channel intensities",
        ),
    )
}

#: parameters the executor fills in itself; a pipeline may not set them
INJECTED_PARAMETERS = ("illumination", "labels_2d", "intensities", "channel_names")


def get_function(name: str) -> FunctionSpec:
    """The spec of an allowed function, or a PipelineError listing the allowed names."""
    try:
        return FUNCTIONS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, FUNCTIONS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise PipelineError(f"unknown function {name!r}.{hint} Available: {', '.join(sorted(FUNCTIONS))}") from None


def check_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Reject keyword arguments the function does not take (typos fail at load time, not mid-run)."""
    parameters = get_function(name).parameters()
    names = list(parameters)
    if names and names[0] not in INJECTED_PARAMETERS:
        names = names[1:]  # the first parameter is the stack the executor passes
    accepted = [p for p in names if p not in INJECTED_PARAMETERS]
    for key in kwargs:
        if key not in accepted or key in INJECTED_PARAMETERS:
            raise PipelineError(
                f"function {name!r} has no parameter {key!r}; it takes: {', '.join(accepted) or 'none'}"
            )
