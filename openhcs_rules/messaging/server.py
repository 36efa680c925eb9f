"""The dual-channel server every viewer and service builds on.

Control is a ROUTER on the base port that REQ clients talk to (one request, one reply: ping, status,
commands); data is a ROUTER on base + 1000 that receives frames from any number of DEALER senders and
answers each with an ack or an error. Each channel has its own thread, so a slow command never stalls
incoming frames and a burst of frames never delays a ping.

The control channel is a ROUTER, not a REP, so each reply is addressed to the peer that sent the request
(``[identity, b"", reply...]``): a REP keeps one implicit "current peer" state that any connected peer's
input takes part in, and junk from a stray TCP peer was reported to make it lose the next real request.
A message without the empty delimiter of a REQ envelope is answered (to that identity) with an error.

Every received message goes through :func:`messages.decode` first. Whatever a client sends - bytes that
are not JSON, JSON nested 1,000 deep, a wrong version, a missing field, a handler that raises anything or
returns something that cannot be sent - the client gets an error reply and the channel thread keeps
serving: each message is handled under a guard that catches every exception, so no input can end a
thread (a dead thread closes its socket while the process lives on, and the viewer looks "not running").

Binding beyond loopback requires CURVE keys (:class:`InsecureBindError` otherwise); a port that is taken
raises :class:`PortInUseError` naming its holder.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import socket as pysocket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import zmq

from openhcs_rules import __version__
from openhcs_rules.messaging import messages
from openhcs_rules.messaging.addresses import (
    DEFAULT_HOST,
    check_base_port,
    data_port,
    is_loopback,
    port_holder,
    tcp_endpoint,
)
from openhcs_rules.messaging.auth import (
    load_server_keys,
    secure_server_socket,
    start_authenticator,
    stop_authenticator,
)
from openhcs_rules.messaging.errors import InsecureBindError, MessageError, PortInUseError

log = logging.getLogger(__name__)

#: a reply: the JSON message and any binary payload frames that follow it
Reply = tuple[dict[str, Any], list[bytes]]

#: bounds what one peer can make the server buffer before ZMQ drops the connection
CONTROL_MAX_BYTES = 4 << 20
DATA_MAX_BYTES = 1 << 31
_POLL_MS = 100


def check_secure_bind(kind: str, host: str, port: int, keys_dir: str | Path | None) -> None:
    """Refuse a server beyond loopback without CURVE keys, before anything is bound, probed or started.

    Wildcards (``*``, ``0.0.0.0``, ``::``) and every address that is not loopback count as beyond loopback;
    the CLI calls this too, so ``viewer start --host '*'`` says this instead of a raw ZMQ error.
    """
    if not keys_dir and not is_loopback(host):
        raise InsecureBindError(
            f"{kind} server on {host}:{port} would accept connections from other machines without "
            "authentication: pass a CURVE keys folder (--keys-dir; created by `openhcs-rules viewer keys`) "
            "or bind 127.0.0.1"
        )


def _user_id(frame: zmq.Frame) -> str:
    """The ZAP User-Id of a received frame's peer (with CURVE: its public key in Z85), or ""."""
    try:
        return str(frame.get("User-Id") or "")
    except zmq.ZMQError:  # no metadata: a connection without a security mechanism
        return ""


class DualChannelServer:
    """Binds the control and data channels, validates everything received, and dispatches to handlers.

    Subclasses override :meth:`on_control` (requests other than ping/status/shutdown), :meth:`on_data`
    (frames) and :meth:`status`. Handlers run on the channel's thread; they must not touch the other
    channel's socket.
    """

    def __init__(
        self,
        kind: str,
        port: int,
        host: str = DEFAULT_HOST,
        keys_dir: str | Path | None = None,
        name: str | None = None,
    ) -> None:
        self.kind = kind
        self.port = check_base_port(port)
        self.data_port = data_port(port)
        self.host = host
        self.name = name or f"{kind}-{port}"
        check_secure_bind(kind, host, port, keys_dir)
        self.keys = load_server_keys(keys_dir) if keys_dir else None
        self.started_at = time.time()
        self.shutdown_requested = threading.Event()
        self._stop = threading.Event()
        self._context = zmq.Context()
        self._authenticator: Any = None
        self._threads: list[threading.Thread] = []
        self.errors_replied = 0
        self.data_identity = b""  # the sender of the data message being handled (data thread only)
        #: the CURVE public key (Z85 text) of the peer whose control request is being handled, "" without
        #: CURVE (set by the control thread before each request: handlers on that thread may read it)
        self.control_user = ""
        self.data_user = ""  # the same for the data message being handled (data thread only)
        self._deferred: queue.SimpleQueue[tuple[bytes, bytes]] = queue.SimpleQueue()
        self._batching = threading.local()  # reply_later inside replies_batched(): wake the data thread once
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)

    # -- identity and status ---------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Who answers on this port: enough for a client to tell our server from anything else."""
        return {
            "kind": self.kind,
            "name": self.name,
            "pid": os.getpid(),
            "host": pysocket.gethostname(),
            "bind": self.host,
            "port": self.port,
            "data_port": self.data_port,
            "auth": "curve" if self.keys else "none",
            "version": __version__,
            "schema": messages.SCHEMA_VERSION,
            "started_at": self.started_at,
        }

    def status(self) -> dict[str, Any]:
        """Override to report what the server holds; the base reports uptime and readiness."""
        uptime = round(time.time() - self.started_at, 3)
        return {"ready": True, "uptime_s": uptime, "errors_replied": self.errors_replied}

    # -- handlers (override) ----------------------------------------------------------------------------
    def on_control(self, message: dict[str, Any], payload: list[bytes]) -> Reply:
        """Requests other than ping/status/shutdown; the base knows none of them."""
        return messages.error_message("unsupported", f"a {self.kind} server does not handle {message['type']!r}"), []

    def on_data(self, message: dict[str, Any], payload: list[bytes | memoryview]) -> dict[str, Any] | None:
        """A message on the data channel; returns the ack (or error) sent back to that sender, or None."""
        return messages.error_message("unsupported", f"a {self.kind} server takes no data messages")

    def on_shutdown(self) -> None:
        """Called on the control thread after the shutdown reply went out; the default just flags it."""
        self.shutdown_requested.set()

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        """Bind both channels and start serving; raises :class:`PortInUseError` if either port is taken."""
        if self.keys is not None:
            self._authenticator = start_authenticator(self._context, self.keys)
        control = self._bind(zmq.ROUTER, self.port, CONTROL_MAX_BYTES, "control")
        try:
            data_thread = self._open_data_channel()
        except BaseException:
            control.close(linger=0)
            raise
        self._threads = [threading.Thread(target=self._serve_control, args=(control,), daemon=True), data_thread]
        for thread in self._threads:
            thread.start()
        log.info(
            "%s listening on %s:%d (data %d, auth %s)",
            self.name,
            self.host,
            self.port,
            self.data_port,
            "curve" if self.keys else "none",
        )

    def _open_data_channel(self) -> threading.Thread:
        """Bind the data channel and return the (unstarted) thread that serves it.

        The default receives frames (a ROUTER answering each DEALER sender); a server whose data channel
        publishes instead (the execution server's progress) overrides this.
        """
        data = self._bind(zmq.ROUTER, self.data_port, DATA_MAX_BYTES, "data")
        data.setsockopt(zmq.RCVHWM, 256)
        return threading.Thread(target=self._serve_data, args=(data,), daemon=True)

    def _bind(self, socket_type: int, port: int, max_bytes: int, channel: str) -> zmq.Socket:
        sock = self._context.socket(socket_type)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        if socket_type == zmq.ROUTER:
            # A reply to a peer that has gone is dropped, never an error that could stop the thread; a second
            # peer announcing an identity already connected is refused, so it cannot take over its replies.
            sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
            sock.setsockopt(zmq.ROUTER_HANDOVER, 0)
        if ":" in self.host:
            sock.setsockopt(zmq.IPV6, 1)
        if self.keys is not None:
            secure_server_socket(sock, self.keys)
        try:
            sock.bind(tcp_endpoint(self.host, port))
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            if exc.errno == zmq.EADDRINUSE:
                raise PortInUseError(
                    f"port {port} on {self.host} ({channel} channel of base port {self.port}) is already in use "
                    f"by {port_holder(port)}; choose another base port (it needs base and base+1000 free)"
                ) from None
            raise
        return sock

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop both threads, close the sockets and the authenticator."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        stuck = [thread for thread in self._threads if thread.is_alive()]
        if self._authenticator is not None and not stop_authenticator(self._authenticator, timeout_s):
            stuck.append(self._authenticator.thread)
        if stuck:
            # a thread that did not end still owns its socket: terminating the context would wait for it for
            # ever, so the context is left to the process's exit and the stop says so instead of hanging
            log.warning("%s: %d server thread(s) did not stop within %.1f s", self.name, len(stuck), timeout_s)
        else:
            self._context.term()
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the channel loops ------------------------------------------------------------------------------
    def _serve_control(self, sock: zmq.Socket) -> None:
        try:
            while not self._stop.is_set():
                if sock.poll(_POLL_MS):
                    frames = sock.recv_multipart(copy=False)
                    self.control_user = _user_id(frames[-1])
                    parts = [frame.bytes for frame in frames]
                    self._guarded(sock, parts[0], functools.partial(self._control_reply, parts[1:]), "control")
        finally:
            sock.close(linger=0)

    def _control_reply(self, parts: list[bytes]) -> list[bytes]:
        """The frames sent back for one control message (its REQ envelope ``b""`` first when it had one)."""
        if not parts or parts[0] != b"":
            return self._reply_error(
                "bad_message", "a control request needs a REQ envelope (an empty delimiter frame before the message)"
            )
        return [b"", *self._handle_control_raw(parts[1:])]

    def _serve_data(self, sock: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_read, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(_POLL_MS))
                if self._wake_read in ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_read, 4096)
                if sock in ready:
                    # payloads stay in ZMQ's buffers (one copy fewer); headers become bytes
                    parts = sock.recv_multipart(copy=False)
                    self.data_identity = parts[0].bytes
                    self.data_user = _user_id(parts[-1]) if self.keys is not None else ""  # no CURVE: no peer key
                    reply = functools.partial(self._data_reply, parts[1:])
                    self._guarded(sock, self.data_identity, reply, "data")
                while not self._deferred.empty():
                    identity, raw = self._deferred.get_nowait()
                    self._send(sock, [identity, raw], "data")
        finally:
            sock.close(linger=0)

    def _data_reply(self, parts: list[zmq.Frame]) -> list[bytes] | None:
        frames: list[bytes | memoryview] = [parts[0].bytes, *(part.buffer for part in parts[1:])] if parts else []
        return self._handle_data_raw(frames)

    def _guarded(
        self, sock: zmq.Socket, identity: bytes, reply: Callable[[], list[bytes] | None], channel: str
    ) -> None:
        """Answer one message, whatever happens while handling it: any exception becomes an error reply.

        ``BaseException`` too: a handler's ``SystemExit`` or a ``RecursionError`` from a deep structure must
        not end the thread (nothing else would notice, and the socket would close under a live process).
        """
        try:
            frames = reply()
        except BaseException as exc:  # noqa: B036 - the last line of defence of the channel thread
            log.exception("%s: %s message could not be handled", self.name, channel)
            frames = self._reply_error("failed", f"{type(exc).__name__}: {str(exc)[:500]}")
            if channel == "control":
                frames = [b"", *frames]
        if frames is not None:
            self._send(sock, [identity, *frames], channel)

    def _send(self, sock: zmq.Socket, frames: list[Any], channel: str) -> None:
        """Send a reply; a reply that cannot be sent (its peer vanished, a full queue) is logged and dropped."""
        try:
            sock.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.warning("%s: %s reply dropped: %s", self.name, channel, exc)

    def reply_later(self, identity: bytes, message: dict[str, Any]) -> None:
        """Send a data-channel reply from any thread (the data thread sends it); for deferred acks.

        Inside :meth:`replies_batched` (on the thread that entered it) the data thread is woken once at the
        end, for all of them, instead of once per reply.
        """
        self._deferred.put((identity, messages.encode(message)))
        if getattr(self._batching, "depth", 0):
            self._batching.queued = True
        else:
            self._wake_data_thread()

    @contextlib.contextmanager
    def replies_batched(self) -> Iterator[None]:
        """Replies queued by :meth:`reply_later` in this block leave together, after it (one wake-up)."""
        batching = self._batching
        depth = getattr(batching, "depth", 0)
        if not depth:
            batching.queued = False
        batching.depth = depth + 1
        try:
            yield
        finally:
            batching.depth = depth
            if not depth and batching.queued:
                self._wake_data_thread()

    def _wake_data_thread(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a wake-up is already pending
            os.write(self._wake_write, b"\0")

    def _reply_error(self, code: str, error: str, frame_id: int | None = None) -> list[bytes]:
        self.errors_replied += 1
        return [messages.encode(messages.error_message(code, error, frame_id))]

    def _handle_control_raw(self, frames: list[bytes]) -> list[bytes]:
        try:
            message = messages.decode(frames[0]) if frames else messages.decode(b"")
        except MessageError as exc:
            log.warning("%s: malformed control message: %s", self.name, exc)
            return self._reply_error("bad_message", str(exc))
        kind = message["type"]
        try:
            if kind == "ping":
                reply: Reply = messages.make("pong", server=self.identity(), status=self.status()), []
            elif kind == "status":
                reply = messages.make("reply", result=self.status()), []
            elif kind == "shutdown":
                threading.Timer(0.05, self.on_shutdown).start()  # after the reply has left
                reply = messages.make("reply", result={"stopping": True, "pid": os.getpid()}), []
            else:
                reply = self.on_control(message, frames[1:])
            message_out, payload = reply
            return [messages.encode(message_out), *payload]
        except MessageError as exc:
            return self._reply_error(exc.code or "bad_request", str(exc))
        except Exception as exc:  # noqa: BLE001 - a failing handler must not stop the server
            log.exception("%s: %s request failed", self.name, kind)
            return self._reply_error("failed", f"{type(exc).__name__}: {exc}")

    def _handle_data_raw(self, frames: list[bytes | memoryview]) -> list[bytes] | None:
        """``frames``: the JSON header as bytes, then the payload parts (zero-copy memoryviews from ZMQ)."""
        try:
            message = messages.decode(bytes(frames[0])) if frames else messages.decode(b"")
        except MessageError as exc:
            log.warning("%s: malformed data message: %s", self.name, exc)
            return self._reply_error("bad_message", str(exc))
        frame_id = message.get("id") if isinstance(message.get("id"), int) else None
        try:
            reply = self.on_data(message, frames[1:])
            return None if reply is None else [messages.encode(reply)]
        except MessageError as exc:
            return self._reply_error(exc.code or "bad_frame", str(exc), frame_id)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the server
            log.exception("%s: data message failed", self.name)
            return self._reply_error("failed", f"{type(exc).__name__}: {exc}", frame_id)
