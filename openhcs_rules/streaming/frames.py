"""What a streamed frame is about: the plane's components, the step that produced it, and its role.

Senders build the ``frame`` message from a :class:`FrameMeta`; viewers get one back from a validated
message, so napari and Fiji place images by the same component names the plate model uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FrameMeta:
    """Plate, well, 1-based site/channel/z/t, the producing step (index and name) and image|labels."""

    plate: str
    well: str
    site: int
    channel: int
    z: int
    t: int
    step_index: int
    step_name: str
    role: str = "image"
    channel_name: str | None = None

    @property
    def channel_label(self) -> str:
        return self.channel_name or f"w{self.channel}"

    def component_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "plate": self.plate,
            "well": self.well,
            "site": self.site,
            "channel": self.channel,
            "z": self.z,
            "t": self.t,
        }
        if self.channel_name:
            fields["channel_name"] = self.channel_name
        return fields

    def step_fields(self) -> dict[str, Any]:
        return {"index": self.step_index, "name": self.step_name}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> FrameMeta:
        """From a ``frame`` message that :func:`openhcs_rules.messaging.messages.decode` already validated."""
        component, step = message["component"], message["step"]
        return cls(
            plate=component["plate"],
            well=component["well"],
            site=component["site"],
            channel=component["channel"],
            z=component["z"],
            t=component["t"],
            step_index=step["index"],
            step_name=step["name"],
            role=message["role"],
            channel_name=component.get("channel_name"),
        )


@dataclass
class Frame:
    """A received frame: its metadata, the pixels and when it arrived.

    ``array`` may be a read-only view of the sender's shared-memory slot: it is valid until
    :meth:`release`, which acknowledges the frame so the sender can reuse the slot. A viewer copies what
    it keeps (into a layer, an ImageJ processor) before the frame is released.
    """

    meta: FrameMeta
    array: Any
    sent_ns: int
    received_ns: int
    on_release: Callable[[], None] | None = None

    def release(self) -> None:
        if self.on_release is not None:
            self.on_release()
            self.on_release = None
