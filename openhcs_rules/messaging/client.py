"""The control-channel client: one request, one validated reply, or a clear error - never a hang.

REQ sockets wedge after a lost reply, so on any failure the socket is thrown away and the next request
opens a fresh one. A socket monitor turns what ZMQ otherwise hides into errors a person can act on:
a refused CURVE key and a security-mechanism mismatch (:class:`AuthenticationError`), and - with
``fail_fast`` - a refused TCP connection, which on the same host means "no server on this port" in about
a millisecond instead of a timeout.

A handshake that fails without detail (``EVENT_HANDSHAKE_FAILED_NO_DETAIL``) is not an authentication
failure: its value is an errno, a system error during the handshake - typically the peer resetting the
connection (a viewer killed mid-handshake). ZMQ reconnects by itself, so the request waits on within its
timeout and then raises :class:`ServerNotResponding`, naming the error. A CURVE server that cannot decrypt
this client's hello (the client has a wrong server public key) drops the connection the same way, so the
message says so when the client uses CURVE.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from openhcs_rules.messaging import messages
from openhcs_rules.messaging.addresses import check_base_port, connect_host, tcp_endpoint
from openhcs_rules.messaging.auth import ClientKeys, load_client_keys, secure_client_socket
from openhcs_rules.messaging.errors import AuthenticationError, ServerError, ServerNotResponding

_EVENTS = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


class ControlClient:
    """Talks to a server's control channel (REQ/REP on its base port)."""

    def __init__(
        self,
        host: str,
        port: int,
        keys_dir: str | Path | None = None,
        timeout_s: float = 2.0,
        fail_fast: bool = True,
        context: zmq.Context | None = None,
    ) -> None:
        self.host = host
        self.port = check_base_port(port)
        self.endpoint = tcp_endpoint(connect_host(host), port)
        self.keys: ClientKeys | None = load_client_keys(keys_dir) if keys_dir else None
        self.timeout_s = timeout_s
        self.fail_fast = fail_fast
        self._context = context or zmq.Context.instance()
        self._socket: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._connected = False
        self._dropped: int | None = None  # errno of the last handshake a system error broke (this request)

    def _open(self) -> zmq.Socket:
        if self._socket is None:
            sock = self._context.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, 1 << 30)
            if self.keys is not None:
                secure_client_socket(sock, self.keys)
            self._monitor = sock.get_monitor_socket(_EVENTS)
            sock.connect(self.endpoint)
            self._socket = sock
            self._connected = False
        return self._socket

    def _reset(self) -> None:
        if self._socket is not None:
            self._socket.disable_monitor()
            self._socket.close(linger=0)
        if self._monitor is not None:
            self._monitor.close(linger=0)
        self._socket = self._monitor = None

    def close(self) -> None:
        self._reset()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _event_error(self) -> Exception | None:
        """The error a monitor event means, if any (None for harmless events)."""
        assert self._monitor is not None
        event = recv_monitor_message(self._monitor)
        kind, value = event["event"], event["value"]
        where = f"{self.host}:{self.port}"
        if kind in (zmq.EVENT_CONNECTED, zmq.EVENT_HANDSHAKE_SUCCEEDED):
            self._connected = True
        elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return AuthenticationError(
                f"the server at {where} refused this client's CURVE key (ZAP status {value}): add the client's "
                "public key to the server's authorized_clients/ folder, or use the server's keys folder"
            )
        elif kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self._dropped = value  # an errno (ECONNRESET, EPIPE, ...): transient, the socket reconnects
        elif kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:  # e.g. a mechanism mismatch: CURVE on one side only
            hint = (
                "the server requires CURVE: pass its keys folder"
                if self.keys is None
                else "this client uses CURVE but the server does not"
            )
            return AuthenticationError(f"security handshake with {where} failed: {hint}")
        elif kind == zmq.EVENT_CONNECT_RETRIED and self.fail_fast and not self._connected:
            return ServerNotResponding(f"nothing listens on {where} (connection refused)")
        return None

    def _dropped_detail(self) -> str:
        """Why the connection kept failing, when a handshake broke on a system error (empty otherwise)."""
        if self._dropped is None:
            return ""
        detail = f" (the connection was dropped during the handshake: {os.strerror(self._dropped)}"
        if self.keys is not None:
            detail += "; if the server is running, check that this client has the server's current public key"
        return detail + ")"

    def request(
        self, kind: str, payload: list[bytes] | None = None, timeout_s: float | None = None, **fields: Any
    ) -> tuple[dict[str, Any], list[bytes]]:
        """Send one request and return (reply message, payload frames); error replies raise ServerError."""
        sock = self._open()
        sock.send_multipart([messages.encode(messages.make(kind, **fields)), *(payload or [])])
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        self._dropped = None
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        while True:
            remaining_ms = (deadline - time.monotonic()) * 1000
            if remaining_ms <= 0:
                self._reset()
                raise ServerNotResponding(
                    f"no reply from {self.host}:{self.port} to {kind!r} within the timeout{self._dropped_detail()}"
                )
            ready = dict(poller.poll(int(remaining_ms)))  # what pyzmq does with a float
            if self._monitor in ready:
                error = self._event_error()
                if error is not None:
                    self._reset()
                    raise error
            if sock in ready:
                frames = sock.recv_multipart()
                break
        reply = messages.decode(frames[0])
        if reply["type"] == "error":
            raise ServerError(f"{self.host}:{self.port} answered {kind!r} with {reply['code']}: {reply['error']}")
        return reply, frames[1:]

    def ping(self, timeout_s: float | None = None) -> dict[str, Any]:
        """The server's pong: ``{"server": identity, "status": status}``."""
        reply, _ = self.request("ping", timeout_s=timeout_s)
        if reply["type"] != "pong":
            raise ServerError(f"{self.host}:{self.port} answered ping with {reply['type']!r}")
        return {"server": reply["server"], "status": reply["status"]}

    def call(self, kind: str, timeout_s: float | None = None, **fields: Any) -> Any:
        """A request whose reply is a ``reply`` message: returns its result."""
        reply, _ = self.request(kind, timeout_s=timeout_s, **fields)
        return reply.get("result")
