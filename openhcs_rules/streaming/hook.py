"""The pipeline side of streaming: ``RunContext.on_step`` for a ``process_wells`` job.

``make_streamer(config, plate, well)`` returns a :class:`Streamer` (or None when streaming is off). Called
with every step's output plane, it sends the plane to each enabled viewer - shared memory when the viewer
is on this host, compressed inline frames when it is not - with the plane's components and the step that
produced it. It is a side effect and behaves like one: it never raises into the pipeline, a viewer that
is missing or dies is warned about once and then skipped, and :meth:`Streamer.close` (call it when the
job ends) releases every shared-memory segment the job created.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openhcs_rules.config.streaming import ViewerTarget, viewer_targets
from openhcs_rules.errors import OpenHCSError
from openhcs_rules.messaging.messages import DTYPES
from openhcs_rules.streaming.frames import FrameMeta

log = logging.getLogger(__name__)


@dataclass
class _Link:
    """One viewer as this job sees it: the sender, or why there is none (said once)."""

    target: ViewerTarget
    sender: Any = None  # a FrameSender once connected
    problem: str | None = None
    warned: set[str] = field(default_factory=set)

    def warn_once(self, key: str, text: str, *args: Any) -> None:
        if key not in self.warned:
            self.warned.add(key)
            log.warning(f"streaming to %s at %s: {text}", self.target.kind, self.target.address, *args)


def _connect(target: ViewerTarget) -> _Link:
    link = _Link(target)
    try:
        from openhcs_rules.messaging.client import ControlClient
        from openhcs_rules.streaming.sender import FrameSender  # pyzmq: only where streaming is on

        with ControlClient(target.host, target.port, target.keys_dir, timeout_s=target.connect_timeout_s) as client:
            pong = client.ping()
        if pong["server"].get("kind") != target.kind:
            raise OpenHCSError(f"a {pong['server'].get('kind')!r} server answers there, not {target.kind}")
        link.sender = FrameSender(
            target.host,
            target.port,
            transport=target.transport,
            keys_dir=target.keys_dir,
            ack_timeout_s=target.ack_timeout_s,
        )
    except ImportError as exc:
        link.problem = str(exc)
        link.warn_once("connect", "%s; install openhcs-rules[napari] or [fiji] (pyzmq) to stream", exc)
    except Exception as exc:  # noqa: BLE001 - any failure means "no viewer for this job"
        link.problem = str(exc)
        link.warn_once("connect", "no viewer (%s); this job streams nothing to it", exc)
    return link


def _viewable(plane: Any) -> np.ndarray:
    """A host numpy 2D array of a dtype viewers show (labels stay integers, everything else float32)."""
    from openhcs_rules.core.arrays import to_numpy

    array = np.asarray(to_numpy(plane))
    if array.ndim != 2:
        raise ValueError(f"only 2D planes are streamed, got shape {array.shape}")
    if array.dtype.name in DTYPES:
        return array
    if array.dtype.kind == "b":
        return array.astype(np.uint8)
    if array.dtype.kind in "iu":
        return array.astype(np.int32) if array.size == 0 or abs(int(array.max())) < 2**31 else array.astype(np.float32)
    return array.astype(np.float32)


def _role(step: Any) -> str:
    """'labels' for steps whose function makes label images (napari shows them as a Labels layer)."""
    try:
        from openhcs_rules.pipeline.registry import get_function

        names = step.function_names()
        return "labels" if names and all(get_function(n).kind == "labels" for n in names) else "image"
    except Exception:  # noqa: BLE001 - an unknown step is just an image
        return "image"


class Streamer:
    """``on_step`` callable of one well job; also a context manager that closes itself."""

    def __init__(
        self,
        targets: Sequence[ViewerTarget],
        plate: str,
        well: str,
        channel_names: dict[int, str] | None = None,
    ) -> None:
        self.plate, self.well = plate, well
        self.channel_names = dict(channel_names or {})
        self.links = [_connect(target) for target in targets]
        self._steps: dict[int, tuple[int, str, str]] = {}  # id(step) -> (index, unique name, role)
        self.frames_sent = 0

    def _step_info(self, step: Any) -> tuple[int, str, str]:
        info = self._steps.get(id(step))
        if info is None:
            label = str(getattr(step, "label", step))
            taken = {name for _, name, _ in self._steps.values()}
            name, n = label, 2
            while name in taken:  # two steps with one function: "gaussian", "gaussian#2"
                name, n = f"{label}#{n}", n + 1
            info = (len(self._steps), name, _role(step))
            self._steps[id(step)] = info
        return info

    def __call__(self, step: Any, key: tuple[int, int, int, int], plane: Any) -> None:
        """Send one output plane (site, channel, z, t) of ``step`` to every live viewer; never raises."""
        live = [link for link in self.links if link.sender is not None and link.sender.alive]
        if not live:
            return
        try:
            index, name, role = self._step_info(step)
            site, channel, z, t = (int(v) for v in key)
            array = _viewable(plane)
            meta = FrameMeta(
                self.plate, self.well, site, channel, z, t, index, name, role, self.channel_names.get(channel)
            )
        except Exception as exc:  # noqa: BLE001 - a plane we cannot describe is skipped, not fatal
            live[0].warn_once("plane", "cannot stream a plane of step %s: %s", getattr(step, "label", step), exc)
            return
        for link in live:
            self._send(link, meta, array)

    def _send(self, link: _Link, meta: FrameMeta, array: np.ndarray) -> None:
        sender = link.sender
        assert sender is not None
        try:
            if sender.send(meta, array):
                self.frames_sent += 1
            elif not sender.alive:
                link.warn_once("dead", "the viewer stopped answering (%s); streaming to it is off", sender.dead_reason)
            elif sender.dropped:
                link.warn_once("dropped", "the viewer is not keeping up; frames are dropped, the pipeline goes on")
            if sender.last_error:
                link.warn_once("rejected", "the viewer rejected a frame: %s", sender.last_error)
        except Exception as exc:  # noqa: BLE001 - streaming never fails the pipeline
            link.warn_once("send", "sending failed (%s); streaming to it is off", exc)
            self._close_link(link)

    @staticmethod
    def _close_link(link: _Link) -> None:
        if link.sender is not None:
            try:
                link.sender.close(timeout_s=0)
            except Exception:  # noqa: BLE001 - closing is best effort; the pool unlink already ran
                log.debug("closing the sender failed", exc_info=True)
            link.sender = None

    def close(self) -> None:
        """Wait (bounded) for outstanding acks, then unlink every segment and close the sockets."""
        for link in self.links:
            sender = link.sender
            if sender is None:
                continue
            try:
                sender.close()
            except Exception as exc:  # noqa: BLE001
                link.warn_once("close", "closing failed: %s", exc)
            if sender.dropped:
                log.info("streaming to %s: %d of %d frames dropped", link.target.kind, sender.dropped, sender.sent)
            if getattr(sender, "fallbacks", 0):  # the viewer's displays held every shared-memory slot
                log.info(
                    "streaming to %s: %d of %d frames sent inline (every slot held)",
                    link.target.kind,
                    sender.fallbacks,
                    sender.sent,
                )
            if not sender.alive:
                link.warn_once("dead", "the viewer stopped answering (%s); streaming to it is off", sender.dead_reason)
            link.sender = None

    def __enter__(self) -> Streamer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_streamer(
    streaming_config: dict[str, Any] | None,
    plate: str,
    well: str,
    channel_names: dict[int, str] | None = None,
) -> Streamer | None:
    """The ``on_step`` hook for one well job, or None when no viewer is enabled (or the config is unusable)."""
    try:
        targets = viewer_targets(streaming_config)
    except OpenHCSError as exc:
        log.warning("streaming is off for this job: %s", exc)
        return None
    if not targets:
        return None
    return Streamer(targets, plate, well, channel_names)
