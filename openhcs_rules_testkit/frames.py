"""Frame messages as a sender on another host sends them (inline pixels), for tests that talk to a viewer's
data channel directly instead of through the package's sender."""

from __future__ import annotations

from collections.abc import Sequence

from openhcs_rules.messaging import messages


def inline_frame_header(
    frame_id: int, shape: Sequence[int], dtype: str = "uint16", codec: str = "blosc2-lz4", plate: str = "p"
) -> bytes:
    """The encoded JSON header of an inline frame of well A01, site/channel/z/t 1, step 0 ``raw``; the pixels
    (compressed with ``codec``) follow it as the next ZMQ frame."""
    return messages.encode(
        messages.make(
            "frame",
            id=frame_id,
            sent_ns=0,
            sender="elsewhere:1",
            component={"plate": plate, "well": "A01", "site": 1, "channel": 1, "z": 1, "t": 1},
            step={"index": 0, "name": "raw"},
            role="image",
            dtype=dtype,
            shape=list(shape),
            transport="inline",
            codec=codec,
        )
    )
