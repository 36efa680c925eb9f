"""The step model: what a pipeline is, independent of how it is stored or run.

A step applies a function to stacks of planes. ``variable_components`` says which components vary inside
one stack (``["z"]``: the function sees the z-stack of one site/channel/timepoint); every other component
is fixed per call. ``func`` may be a dict {channel: function} together with ``group_by="channel"`` to run a
different function per channel (channels not named pass through). ``channel`` restricts a step to one
channel: an index, a name, or ``"nuclei"`` for the config's ``nuclei_channel``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: components a step may stack over (the well is always fixed: one job = one well)
STACK_COMPONENTS: tuple[str, ...] = ("site", "channel", "z", "t")


@dataclass(frozen=True)
class Step:
    """One processing step: function name(s) from the registry plus literal keyword arguments."""

    func: str | dict[str, str]
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    variable_components: list[str] = field(default_factory=lambda: ["z"])
    group_by: str | None = None
    channel: int | str | None = None

    def __post_init__(self) -> None:
        for component in self.variable_components:
            if component not in STACK_COMPONENTS:
                raise ValueError(
                    f"step {self.label!r}: variable component {component!r} is not one of {STACK_COMPONENTS}"
                )
        if isinstance(self.func, dict) and self.group_by != "channel":
            raise ValueError(f"step {self.label!r}: a dict of functions needs group_by='channel'")
        if self.group_by not in (None, "channel"):
            raise ValueError(f"step {self.label!r}: group_by must be 'channel' or None")

    @property
    def label(self) -> str:
        """Name shown in logs and viewers: the explicit name, else the function name."""
        if self.name:
            return self.name
        if isinstance(self.func, dict):
            return "+".join(sorted(set(self.func.values())))
        return self.func

    def function_names(self) -> list[str]:
        return sorted(set(self.func.values())) if isinstance(self.func, dict) else [self.func]


@dataclass(frozen=True)
class Pipeline:
    """An ordered list of steps with a name (used in result metadata)."""

    name: str
    steps: list[Step]
    description: str = ""
