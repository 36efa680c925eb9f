"""The dual-channel server and client over real ZMQ sockets: handshake, errors, CURVE, ports in use."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys
import threading
import time

import pytest
import zmq

from openhcs_rules.messaging import messages
from openhcs_rules.messaging.addresses import data_port, find_free_base_port, is_local_host, is_loopback
from openhcs_rules.messaging.auth import ensure_keys
from openhcs_rules.messaging.client import ControlClient
from openhcs_rules.messaging.errors import (
    AuthenticationError,
    InsecureBindError,
    PortInUseError,
    ServerError,
    ServerNotResponding,
)
from openhcs_rules.messaging.instance import ServerSpec, ensure_server, probe
from openhcs_rules.messaging.server import DualChannelServer


class EchoServer(DualChannelServer):
    """A server with one command and a data handler that acks, to drive both channels."""

    def on_control(self, message, payload):
        if message["type"] == "status":
            return messages.make("reply", result={"echo": True}), []
        return super().on_control(message, payload)

    def on_data(self, message, payload):
        return messages.make("ack", id=message["id"])


@pytest.fixture
def server():
    srv = EchoServer("echo", find_free_base_port())
    srv.start()
    yield srv
    srv.stop()


def _raw(socket_type, port):
    sock = zmq.Context.instance().socket(socket_type)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 3000)
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


def test_ping_answers_with_the_servers_identity_and_status(server):
    with ControlClient("127.0.0.1", server.port) as client:
        pong = client.ping()
    assert pong["server"]["kind"] == "echo"
    assert pong["server"]["pid"] == os.getpid()
    assert (pong["server"]["port"], pong["server"]["data_port"]) == (server.port, server.port + 1000)
    assert pong["server"]["auth"] == "none"
    assert pong["status"]["ready"] is True


def test_garbage_on_the_control_channel_gets_an_error_reply_and_the_server_keeps_serving(server):
    sock = _raw(zmq.REQ, server.port)
    for junk in (b"\x80\x04\x95pickle", b'{"v": 1, "type": "shutdown", "now": true}', b""):
        sock.send(junk)
        reply = messages.decode(sock.recv())
        assert (reply["type"], reply["code"]) == ("error", "bad_message")
    sock.close()
    with ControlClient("127.0.0.1", server.port) as client:
        assert client.ping()["status"]["errors_replied"] == 3
        with pytest.raises(ServerError, match="does not handle 'macro'"):
            client.call("macro", code="x")
        assert client.ping()["server"]["kind"] == "echo"  # still serving after the error reply
    assert not server.shutdown_requested.is_set()


def test_garbage_on_the_data_channel_gets_an_error_reply_and_valid_frames_still_ack(server):
    sock = _raw(zmq.DEALER, data_port(server.port))
    sock.send(b"not json")
    assert messages.decode(sock.recv())["code"] == "bad_message"
    sock.send(messages.encode(messages.make("ack", id=1)))  # valid JSON, wrong direction: the handler decides
    assert messages.decode(sock.recv()) == messages.make("ack", id=1)
    sock.close()


def test_a_closed_port_fails_fast_instead_of_waiting_for_the_timeout():
    with ControlClient("127.0.0.1", find_free_base_port(), timeout_s=10) as client:
        with pytest.raises(ServerNotResponding, match="connection refused"):
            client.ping()


def test_binding_beyond_loopback_without_keys_is_refused():
    with pytest.raises(InsecureBindError, match="CURVE"):
        DualChannelServer("echo", find_free_base_port(), host="0.0.0.0")


def test_curve_server_serves_authorized_clients_and_refuses_others(tmp_path):
    keys = ensure_keys(tmp_path / "keys")
    intruder = ensure_keys(tmp_path / "intruder")  # a valid keypair the server never authorized
    (intruder / "server.key").write_bytes((keys / "server.key").read_bytes())  # it knows the server's key
    srv = EchoServer("echo", find_free_base_port("0.0.0.0"), host="0.0.0.0", keys_dir=keys)
    srv.start()
    try:
        with ControlClient("127.0.0.1", srv.port, keys_dir=keys) as client:
            assert client.ping()["server"]["auth"] == "curve"
        with ControlClient("127.0.0.1", srv.port, keys_dir=intruder, timeout_s=5) as client:
            with pytest.raises(AuthenticationError, match="refused this client's CURVE key"):
                client.ping()
        with ControlClient("127.0.0.1", srv.port, timeout_s=5) as client:
            with pytest.raises(AuthenticationError, match="requires CURVE"):
                client.ping()
        with ControlClient("127.0.0.1", srv.port, keys_dir=keys) as client:
            assert client.ping()["server"]["kind"] == "echo"  # still serving
    finally:
        srv.stop()


def test_a_port_held_by_something_else_is_reported_with_its_holder_and_left_alone():
    port = find_free_base_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        with pytest.raises(PortInUseError, match=f"pid {os.getpid()}"):
            EchoServer("echo", port).start()
        spec = ServerSpec("echo", port, command=[sys.executable, "-c", "raise SystemExit(1)"])
        with pytest.raises(PortInUseError, match="does not answer ping as a viewer, so it is left alone"):
            ensure_server(spec, timeout_s=5)
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # the holder was not killed: it still accepts connections
    finally:
        holder.close()


def test_a_server_of_another_kind_on_the_port_is_not_mistaken_for_ours(server):
    with pytest.raises(PortInUseError, match="held by a 'echo' server"):
        probe(ServerSpec("napari", server.port))


def test_local_and_loopback_hosts():
    assert is_loopback("127.0.0.1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert is_local_host("127.0.0.1") and is_local_host(socket.gethostname())
    assert not is_local_host("240.0.0.1")  # reserved (class E): no interface can own it
    assert not is_local_host("no-such-host.invalid")


# -- hostile input: no message may end a channel thread (issue: deep JSON, junk peers, bad handlers) ---------

DEEP = b"[" * 1000 + b"]" * 1000  # 2 KB: nested deeper than any message, and than json's recursion limit


def test_deeply_nested_json_gets_an_error_reply_on_both_channels_and_the_server_keeps_serving(server):
    control = _raw(zmq.REQ, server.port)
    control.send(DEEP)
    reply = messages.decode(control.recv())
    assert reply["code"] == "bad_message" and f"limit of {messages.MAX_DEPTH} levels" in reply["error"]
    control.close()
    data = _raw(zmq.DEALER, data_port(server.port))
    data.send(b'{"v": 1, "type": "ack", "id": ' + DEEP + b"}")
    assert messages.decode(data.recv())["code"] == "bad_message"
    data.send(messages.encode(messages.make("ack", id=7)))
    assert messages.decode(data.recv()) == messages.make("ack", id=7)  # the data thread still serves
    data.close()
    with ControlClient("127.0.0.1", server.port, timeout_s=3) as client:
        assert client.ping()["server"]["kind"] == "echo"


class FaultyServer(DualChannelServer):
    """Handlers that fail in every way a careless subclass can: raise anything, or return what cannot be sent."""

    def on_control(self, message, payload):
        code = message.get("code", "") if message["type"] == "macro" else ""
        if code == "recursion":
            raise RecursionError("maximum recursion depth exceeded")
        if code == "key":
            raise KeyError("missing")
        if code == "nan":
            return messages.make("reply", result={"x": 1.0}) | {"result": float("nan")}, []
        if code == "none":
            return None
        if code == "exit":
            raise SystemExit(3)
        return super().on_control(message, payload)

    def on_data(self, message, payload):
        if message["id"] == 1:
            raise RecursionError("deep")
        if message["id"] == 2:
            return {"result": float("nan")}
        if message["id"] == 3:
            raise SystemExit(3)
        return messages.make("ack", id=message["id"])


def test_a_handler_that_raises_anything_or_returns_garbage_gets_an_error_reply_and_the_thread_survives():
    srv = FaultyServer("faulty", find_free_base_port())
    srv.start()
    try:
        with ControlClient("127.0.0.1", srv.port, timeout_s=3) as client:
            for code in ("recursion", "key", "nan", "none", "exit", "recursion"):
                with pytest.raises(ServerError, match="failed"):
                    client.call("macro", code=code)
                assert client.ping()["server"]["kind"] == "faulty"
        data = _raw(zmq.DEALER, data_port(srv.port))
        for frame_id in (1, 2, 3):
            data.send(messages.encode(messages.make("ack", id=frame_id)))
            assert messages.decode(data.recv())["code"] == "failed"
        data.send(messages.encode(messages.make("ack", id=9)))
        assert messages.decode(data.recv()) == messages.make("ack", id=9)
        data.close()
        assert all(thread.is_alive() for thread in srv._threads)
    finally:
        srv.stop()


JUNK = [
    b"\x01\x00",  # a ZMTP 1.0 greeting: a one-byte frame with no flags
    b"\x01\x00\x05\x00hello\x01\x00",
    b"\xff\x00\x00\x00\x00\x00\x00\x00\x01\x7f",  # a ZMTP 2.0/3.0 signature followed by nothing sensible
    bytes(range(256)) * 4,
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
]


@pytest.mark.parametrize("junk", JUNK, ids=["zmtp1-greeting", "zmtp1-message", "zmtp3-signature", "bytes", "http"])
def test_junk_on_a_plain_tcp_control_port_does_not_steal_replies(server, junk):
    peers = []
    for _ in range(3):  # several junk peers that stay connected while real clients ask
        peer = socket.create_connection(("127.0.0.1", server.port), timeout=2)
        peer.sendall(junk)
        peers.append(peer)
    try:
        for _ in range(5):
            with ControlClient("127.0.0.1", server.port, timeout_s=3) as client:
                assert client.ping()["server"]["kind"] == "echo"
        with ControlClient("127.0.0.1", server.port, timeout_s=3) as client:
            for _ in range(5):
                assert client.ping()["server"]["kind"] == "echo"
    finally:
        for peer in peers:
            peer.close()


def test_a_dealer_without_an_envelope_on_the_control_channel_gets_an_error_and_others_are_served(server):
    dealer = _raw(zmq.DEALER, server.port)
    dealer.send(messages.encode(messages.make("ping")))  # no empty delimiter frame: not a REQ envelope
    reply = messages.decode(dealer.recv_multipart()[-1])
    assert reply["code"] == "bad_message" and "envelope" in reply["error"]
    dealer.send_multipart([b"", messages.encode(messages.make("ping"))])  # a well-formed envelope is answered
    assert messages.decode(dealer.recv_multipart()[-1])["type"] == "pong"
    dealer.close()
    with ControlClient("127.0.0.1", server.port, timeout_s=3) as client:
        assert client.ping()["server"]["kind"] == "echo"


@pytest.mark.parametrize("host", ["*", "0.0.0.0", "::", "", "192.0.2.1"])
def test_every_wildcard_or_remote_host_without_keys_is_an_insecure_bind(host):
    assert not is_loopback(host)
    with pytest.raises(InsecureBindError, match="CURVE"):
        DualChannelServer("echo", find_free_base_port(), host=host)


@contextlib.contextmanager
def _resetting_port():
    """A raw TCP port that reads each connection's greeting and then resets it: a peer dying mid-handshake."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(1)
            with contextlib.suppress(OSError):
                conn.recv(64)  # the client's ZMTP greeting: the handshake has begun
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_a_connection_reset_during_the_handshake_is_no_answer_not_an_authentication_failure():
    # EVENT_HANDSHAKE_FAILED_NO_DETAIL carries an errno (here ECONNRESET), as from a viewer killed mid-handshake
    with _resetting_port() as port, ControlClient("127.0.0.1", port, timeout_s=0.5) as client:
        started = time.monotonic()
        with pytest.raises(ServerNotResponding, match="dropped during the handshake: Connection reset"):
            client.ping()
        assert time.monotonic() - started >= 0.4  # retried within the timeout


def test_a_curve_client_with_a_wrong_server_key_is_told_to_check_it(tmp_path):
    keys = ensure_keys(tmp_path / "keys")
    stranger = ensure_keys(tmp_path / "stranger")  # its server.key is not this server's: hello cannot be decrypted
    srv = EchoServer("echo", find_free_base_port(), keys_dir=keys)
    srv.start()
    try:
        with ControlClient("127.0.0.1", srv.port, keys_dir=stranger, timeout_s=0.5) as client:
            with pytest.raises(ServerNotResponding, match="server's current public key"):
                client.ping()
        with ControlClient("127.0.0.1", srv.port, keys_dir=keys) as client:
            assert client.ping()["server"]["kind"] == "echo"
    finally:
        srv.stop()
