"""What a streamed frame is about: the plane's components, the step that produced it, and its role.

Senders build the ``frame`` message from a :class:`FrameMeta`; viewers get one back from a validated
message, so napari and Fiji place images by the same component names the plate model uses. A viewer's
display keeps a frame as a :class:`Plane`, possibly a loan of the sender's slot (shown without a copy).
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


class Plane:
    """The pixels a display keeps of a frame, until it drops them (the plane was replaced or cleared).

    ``array`` may be *on loan*: a read-only view of the sender's shared-memory slot, shown without a copy.
    The slot stays the viewer's until :meth:`drop` gives it back, so a display must drop a plane only after
    it no longer shows it (its layer's data was replaced and redrawn, or the layer removed). When the viewer
    needs the slot back earlier (its budget of held slots is spent), :meth:`detach` swaps ``array`` for a
    private copy first and calls ``on_detach`` - a display that caches what it last drew (napari's slice)
    refreshes then, so nothing keeps looking at a slot the sender is about to overwrite. A display must
    therefore read ``array`` each time, never keep the array object itself.
    """

    __slots__ = ("array", "on_detach", "_give_back")

    def __init__(self, array: Any, give_back: Callable[[Plane], None] | None = None) -> None:
        self.array = array
        self.on_detach: Callable[[], None] | None = None
        self._give_back = give_back

    @property
    def on_loan(self) -> bool:
        """Whether ``array`` is still a view of a sender's slot."""
        return self._give_back is not None

    def drop(self) -> None:
        """The display no longer shows these pixels: a slot on loan goes back to its sender (once)."""
        give_back, self._give_back = self._give_back, None
        if give_back is not None:
            give_back(self)

    def detach(self) -> None:
        """Keep the pixels as a private copy and give the slot back (no-op for a plane not on loan)."""
        if self._give_back is None:
            return
        self.array = self.array.copy()
        if self.on_detach is not None:
            self.on_detach()
        self.drop()


@dataclass
class Frame:
    """A received frame: its metadata, the pixels and when it arrived.

    ``array`` may be a read-only view of the sender's shared-memory slot (``borrowed``): valid until
    :meth:`release`, which acknowledges the frame. A display keeps a frame with :meth:`keep`, which gives
    the slot itself on loan when the viewer may hold it (``lend``, set by the viewer server) and otherwise a
    private copy of a borrowed array (or the array itself: a decoded inline frame is the viewer's own).
    """

    meta: FrameMeta
    array: Any
    sent_ns: int
    received_ns: int
    on_release: Callable[[], None] | None = None
    borrowed: bool = False
    same_host: bool = False  # sent_ns is on this host's monotonic clock (latencies are measurable)
    lend: Callable[[Frame], Plane] | None = None
    kept: Plane | None = None

    def keep(self, on_detach: Callable[[], None] | None = None) -> Plane:
        """What the display keeps of this frame (the same :class:`Plane` if asked twice)."""
        if self.kept is None:
            if self.lend is not None:
                self.kept = self.lend(self)
            else:
                self.kept = Plane(self.array.copy() if self.borrowed else self.array)
            self.kept.on_detach = on_detach
        return self.kept

    def release(self) -> None:
        """After the display had the frame: acknowledge it (once); a kept loan stays the viewer's."""
        if self.on_release is not None:
            self.on_release()
            self.on_release = None
