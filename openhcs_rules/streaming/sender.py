"""Send frames to one viewer's data channel without ever blocking the pipeline for long.

Transport is chosen per viewer: ``shm`` when the viewer runs on this machine (pixels go through a shared
segment, the message carries its name), ``inline`` otherwise (pixels travel in the message, compressed
with Blosc2-LZ4 by default). Every frame is acknowledged by the viewer once its display has it.

Shared memory costs one copy, the sender's into a pooled slot: the viewer's display may show the frame
straight from the slot. The sender lends up to ``hold_bytes`` of its slots for that (half the pool by
default, so the other half keeps frames moving); the ack then says the slot is *held*, and a ``release``
from the viewer gives it back once the display no longer shows it (that layer's frame was replaced or
cleared). An ack without ``held`` frees the slot at once. Sends are non-blocking: when every slot is in
flight the sender waits at most ``full_wait_s`` for an ack and then drops the frame (counted in
:attr:`dropped`); when every slot is held - waiting would not free one - the frame goes inline in the
message instead, at once (counted in :attr:`fallbacks`).

The sender is the single owner of its segments. It declares the viewer dead when an ack is overdue by
``ack_timeout_s`` (viewer killed, hung or unreachable): from then on sends are no-ops and every segment is
unlinked at once, held ones included, so a dead viewer leaves nothing in /dev/shm and costs the pipeline
nothing more. Unlinking a held slot never pulls pixels from under a live viewer: its mapping stays valid.
"""

from __future__ import annotations

import logging
import os
import socket as pysocket
import time
from pathlib import Path

import numpy as np
import zmq

from openhcs_rules.messaging import messages
from openhcs_rules.messaging.addresses import connect_host, data_port, is_local_host, tcp_endpoint
from openhcs_rules.messaging.auth import load_client_keys, secure_client_socket
from openhcs_rules.messaging.errors import MessageError
from openhcs_rules.streaming import codec as codecs
from openhcs_rules.streaming import shm
from openhcs_rules.streaming.frames import FrameMeta

log = logging.getLogger(__name__)

TRANSPORTS = ("auto", "shm", "inline")
#: frame message fields that change with every frame (the rest is encoded once per plane, see _header)
_PER_FRAME = frozenset({"v", "type", "id", "sent_ns", "shm"})
_HEADER_CACHE = 256  # planes whose encoded header is kept (cleared when full)


def choose_transport(host: str, requested: str = "auto") -> str:
    """shm for a viewer on this machine (where POSIX shm exists), inline for one on another host."""
    if requested not in TRANSPORTS:
        raise ValueError(f"unknown transport {requested!r}; use one of {', '.join(TRANSPORTS)}")
    if requested == "auto":
        return "shm" if shm.available() and is_local_host(host) else "inline"
    if requested == "shm" and not is_local_host(host):
        raise ValueError(f"transport shm needs a viewer on this machine; {host} is another host")
    return requested


class FrameSender:
    """Frames to the data channel (base port + 1000) of the viewer at ``host:port``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        transport: str = "auto",
        codec: str = "blosc2-lz4",
        keys_dir: str | Path | None = None,
        ack_timeout_s: float = 5.0,
        full_wait_s: float = 1.0,
        max_shm_bytes: int = 128 << 20,
        hold_bytes: int | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.transport = choose_transport(host, transport)
        self.codec = codec
        self.ack_timeout_s = ack_timeout_s
        self.full_wait_s = full_wait_s
        self.sender_id = f"{pysocket.gethostname()}:{os.getpid()}"
        self.pool = shm.SegmentPool(max_shm_bytes) if self.transport == "shm" else None
        #: slot bytes the viewer may keep past the ack; 0: every ack frees the slot (the viewer copies)
        self.hold_bytes = max(0, max_shm_bytes // 2 if hold_bytes is None else min(hold_bytes, max_shm_bytes))
        if self.pool is not None:
            shm.sweep_orphans()  # what killed senders left behind on this host
        self._socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SNDHWM, 16)
        if keys_dir:
            secure_client_socket(self._socket, load_client_keys(keys_dir))
        self._socket.connect(tcp_endpoint(connect_host(host), data_port(port)))
        self._pending: dict[int, tuple[float, str | None]] = {}  # in send order: the first is the oldest
        self._headers: dict[tuple[object, ...], bytes] = {}
        self._next_id = 0
        self.sent = self.acked = self.dropped = self.rejected = 0
        self.fallbacks = 0  # shm frames sent inline because the viewer held every slot
        self.last_error: str | None = None
        self.dead_reason: str | None = None

    @property
    def alive(self) -> bool:
        return self.dead_reason is None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def held(self) -> int:
        """Slots the viewer acknowledged and still shows (given back by its ``release``)."""
        return self.pool.held if self.pool is not None else 0

    # -- acks -------------------------------------------------------------------------------------------
    def _handle_reply(self, raw: bytes) -> None:
        try:
            reply = messages.decode(raw)
        except MessageError as exc:
            self.last_error = f"unreadable reply from the viewer: {exc}"
            return
        if reply["type"] == "release":  # the viewer's display no longer shows these held slots
            if self.pool is not None:
                for name in reply["names"]:
                    self.pool.release_held(name)
            return
        frame_id = reply.get("id")
        if reply["type"] == "error":
            self.rejected += 1
            self.last_error = f"{reply['code']}: {reply['error']}"
        elif reply["type"] == "ack":
            self.acked += 1
        entry = self._pending.pop(frame_id, None) if isinstance(frame_id, int) else None
        if entry is not None and entry[1] is not None and self.pool is not None:
            if reply["type"] == "ack" and reply.get("held"):
                self.pool.hold(entry[1])
            else:
                self.pool.release(entry[1])

    def poll(self, timeout_s: float = 0.0) -> int:
        """Take in acks (waiting up to ``timeout_s`` for the first); returns how many arrived."""
        if not self.alive:
            return 0
        count = 0
        socket = self._socket
        # ZMQ_EVENTS says whether a reply is waiting without a poll call or a zmq.Again exception per check
        # (the no-wait poll runs on every send); it also processes the socket's pending commands
        if socket.getsockopt(zmq.EVENTS) & zmq.POLLIN or (timeout_s > 0 and socket.poll(int(timeout_s * 1000))):
            while socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                try:
                    raw = socket.recv(zmq.NOBLOCK)
                except zmq.Again:  # pragma: no cover - EVENTS said a message is ready
                    break
                self._handle_reply(raw)
                count += 1
        self._check_overdue()
        return count

    def _check_overdue(self) -> None:
        if self._pending:
            # the first pending frame is the oldest: entries go in in send order, each stamped when sent
            oldest = next(iter(self._pending.values()))[0]
            if time.monotonic() - oldest > self.ack_timeout_s:
                self._declare_dead(f"no acknowledgement from {self.host}:{self.port} for {self.ack_timeout_s:.1f} s")

    def _declare_dead(self, reason: str) -> None:
        if self.dead_reason is None:
            self.dead_reason = reason
            self._release_everything(tell_viewer=False)

    def _release_everything(self, tell_viewer: bool) -> None:
        if self.pool is not None:
            names = self.pool.names()
            if tell_viewer and names:
                try:
                    self._socket.send(messages.encode(messages.make("release", names=names)), zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
            self.pool.close()
        self._pending.clear()

    # -- sending ----------------------------------------------------------------------------------------
    def _header(self, meta: FrameMeta, array: np.ndarray, started_ns: int, **transport: str | int) -> bytes:
        """The frame message. What does not change between frames of one plane (its metadata, dtype, shape,
        transport) is made, validated and encoded once and kept (a live view re-sends one plane over and
        over); each frame then only adds its id, its ``sent_ns`` and its slot's name."""
        self._next_id += 1
        slot = transport.pop("shm", None)
        key = (meta, array.dtype, array.shape, *transport.items())
        tail = self._headers.get(key)
        if tail is None:
            message = messages.make(
                "frame",
                id=self._next_id,
                sent_ns=started_ns,
                sender=self.sender_id,
                component=meta.component_fields(),
                step=meta.step_fields(),
                role=meta.role,
                dtype=array.dtype.name,
                shape=list(array.shape),
                **transport,
                **({} if slot is None else {"shm": slot}),
            )
            rest = {k: v for k, v in message.items() if k not in _PER_FRAME}
            tail = messages.encode(rest)[1:]  # '"sender":...}': the object without its opening brace
            if len(self._headers) >= _HEADER_CACHE:
                self._headers.clear()
            self._headers[key] = tail
        if slot is None:
            shm_field = b""
        elif messages.SHM_NAME.match(str(slot)):
            shm_field = b'"shm":"%s",' % str(slot).encode()  # a segment name needs no JSON escaping
        else:
            raise MessageError(f"frame: field 'shm' {slot!r} is not an openhcs shared-memory segment name")
        # sent_ns: when send() was called, so latency includes the copy or the compression
        return b'{"v":%d,"type":"frame","id":%d,"sent_ns":%d,%s%s' % (
            messages.SCHEMA_VERSION,
            self._next_id,
            started_ns,
            shm_field,
            tail,
        )

    def _slot(self, nbytes: int) -> shm.Segment | None:
        """A free slot; waits (bounded) only while some slot is in flight - held slots come back when the
        viewer's display replaces them, which no wait here can hasten."""
        assert self.pool is not None
        segment = self.pool.acquire(nbytes)
        deadline = time.monotonic() + self.full_wait_s
        while segment is None and self.alive and self.pool.in_flight and time.monotonic() < deadline:
            self.poll(min(0.05, max(0.0, deadline - time.monotonic())))
            segment = self.pool.acquire(nbytes)
        return segment

    def send(self, meta: FrameMeta, array: np.ndarray) -> bool:
        """Queue one 2D numpy frame for the viewer; False when it was dropped or the viewer is gone."""
        started_ns = time.monotonic_ns()
        self.poll(0)
        if not self.alive:
            return False
        if array.ndim != 2 or array.dtype.name not in messages.DTYPES:
            raise ValueError(f"frames are 2D arrays of {', '.join(messages.DTYPES)}; got {array.dtype} {array.shape}")
        if not array.dtype.isnative:
            # the message names the dtype without a byte order and the viewer reads native bytes: a big-endian
            # array (e.g. a TIFF read as stored) would show scrambled pixels
            array = array.astype(array.dtype.newbyteorder("="))
        segment = self._slot(array.nbytes) if self.pool is not None else None
        if segment is not None:
            segment.write(array)
            header = self._header(
                meta, array, started_ns, transport="shm", shm=segment.name, hold_bytes=self.hold_bytes
            )
            parts: list[bytes | memoryview] = [header]
            slot: str | None = segment.name
        elif self.pool is not None:
            if not self.alive or self.pool.in_flight:  # the viewer is not keeping up: drop, as before
                self.dropped += 1
                return False
            # every slot is held by the viewer's displays: send this one in the message. A private copy,
            # because the caller may reuse the array once send() returns (the slot copy protected it too)
            self.fallbacks += 1
            private = np.ascontiguousarray(array).tobytes()
            parts = [self._header(meta, array, started_ns, transport="inline", codec="raw"), private]
            slot = None
        else:
            payload = codecs.encode(array, self.codec)
            parts = [self._header(meta, array, started_ns, transport="inline", codec=self.codec), payload]
            slot = None
        if not self._send_parts(parts):  # the viewer is not reading (or not connected): do not wait for it
            if slot is not None and self.pool is not None:
                self.pool.release(slot)
            self.dropped += 1
            return False
        self._pending[self._next_id] = (time.monotonic(), slot)
        self.sent += 1
        return True

    def _send_parts(self, parts: list[bytes | memoryview]) -> bool:
        """Send without blocking; when the send queue is full wait up to ``full_wait_s`` for room."""
        for attempt in range(2):
            try:
                if len(parts) == 1:  # a shared-memory frame is its header alone: a plain send costs less
                    self._socket.send(parts[0], zmq.NOBLOCK)
                else:
                    self._socket.send_multipart(parts, zmq.NOBLOCK, copy=False)
                return True
            except zmq.Again:
                if attempt or not self._socket.poll(int(self.full_wait_s * 1000), zmq.POLLOUT):
                    return False
        return False

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every frame sent so far is acknowledged (or the viewer is declared dead)."""
        deadline = time.monotonic() + (self.ack_timeout_s if timeout_s is None else timeout_s)
        while self._pending and self.alive and time.monotonic() < deadline:
            self.poll(min(0.1, max(0.0, deadline - time.monotonic())))
        return not self._pending and self.alive

    def close(self, timeout_s: float | None = None) -> None:
        """Flush, then unlink every segment this sender owns and close the socket."""
        if self.alive:
            self.flush(timeout_s)
            self._release_everything(tell_viewer=True)
            self._socket.setsockopt(zmq.LINGER, 200)  # let the release message leave
        elif self.pool is not None:
            self.pool.close()
        self._socket.close()
