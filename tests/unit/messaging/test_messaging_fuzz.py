"""Fuzzing both channels of a real server on loopback: whatever arrives, it answers and keeps serving.

Arbitrary bytes, arbitrary JSON (bounded recursion), near-valid messages (a valid message with one field
mutated) and multipart messages with junk payloads go to a :class:`ViewerServer` (the real frame path:
schema, size caps, codecs) over real sockets. After every example the server must have answered that
message (an error reply or a valid reply), and each test ends with a ping that must pong.
"""

from __future__ import annotations

import json

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openhcs_rules.messaging import messages
from openhcs_rules.messaging.addresses import data_port, find_free_base_port
from openhcs_rules.messaging.client import ControlClient
from openhcs_rules.viewers.viewer_server import ViewerServer

FUZZ = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
#: a reply that never comes means a dead thread, not a slow one: this only bounds how long a failure takes
RECV_MS = 5000


@pytest.fixture(scope="module")
def server():
    srv = ViewerServer("fuzz", find_free_base_port(), max_frame_bytes=1 << 20, max_queued_bytes=4 << 20)
    srv.start()
    yield srv
    srv.stop()


class Peer:
    """A raw socket that expects exactly one reply per message; a REQ stuck by a lost reply is replaced."""

    def __init__(self, socket_type: int, port: int) -> None:
        self.socket_type, self.port = socket_type, port
        self.sock = self._open()

    def _open(self) -> zmq.Socket:
        sock = zmq.Context.instance().socket(self.socket_type)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, RECV_MS)
        sock.connect(f"tcp://127.0.0.1:{self.port}")
        return sock

    def ask(self, parts: list[bytes]) -> dict:
        """Send one message and return the decoded reply; no reply fails the example (after a fresh socket)."""
        self.sock.send_multipart(parts)
        try:
            reply = self.sock.recv_multipart()
        except zmq.Again:
            self.sock.close(linger=0)
            self.sock = self._open()
            pytest.fail(f"no reply to {parts!r:.300}")
        envelope = 1 if self.socket_type == zmq.DEALER and reply[0] == b"" and len(reply) > 1 else 0
        return messages.decode(reply[envelope])

    def close(self) -> None:
        self.sock.close(linger=0)


@pytest.fixture(autouse=True)
def _serving_after_each_test(server):
    yield
    _still_serving(server)


@pytest.fixture(scope="module")
def dealer_control(server):
    peer = Peer(zmq.DEALER, server.port)
    yield peer
    peer.close()


@pytest.fixture(scope="module")
def control(server):
    peer = Peer(zmq.REQ, server.port)
    yield peer
    peer.close()


@pytest.fixture(scope="module")
def data(server):
    peer = Peer(zmq.DEALER, data_port(server.port))
    yield peer
    peer.close()


def _still_serving(server) -> None:
    with ControlClient("127.0.0.1", server.port, timeout_s=5) as client:
        assert client.ping()["server"]["kind"] == "fuzz"
    assert all(thread.is_alive() for thread in server._threads)


def _drain(server) -> None:
    """The test plays the GUI: shown frames leave the queue, so the queue bound does not hide other paths."""
    server.pump(lambda batch: None, budget_s=1)


def _encode(value) -> bytes:
    return json.dumps(value).encode()


# -- strategies --------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)

COMPONENT = {"plate": "p", "well": "A01", "site": 1, "channel": 1, "z": 1, "t": 1}
VALID = [
    {"v": 1, "type": "ping"},
    {"v": 1, "type": "status"},
    {"v": 1, "type": "stats"},
    {"v": 1, "type": "get_plane", "layer": "x", "index": {"z": 1}},
    {"v": 1, "type": "ack", "id": 3},
    {"v": 1, "type": "release", "names": ["ohcs_1_0a1b2c3d_1"]},
    {
        "v": 1,
        "type": "frame",
        "id": 1,
        "sent_ns": 0,
        "sender": "h:1",
        "component": COMPONENT,
        "step": {"index": 0, "name": "raw"},
        "role": "image",
        "dtype": "uint8",
        "shape": [4, 4],
        "transport": "inline",
        "codec": "raw",
    },
]
weird = (
    json_values
    | st.sampled_from([True, 1.0, -1, 0, 2**63, 1e308, "", "ohcs_1_0a1b2c3d_1", [65536, 65536], [1, 1], "blosc2-lz4"])
    | st.sampled_from(["shm", "inline", "float64", "labels", "../x"])
)


@st.composite
def near_valid(draw) -> dict:
    """A valid message with one field replaced, added or removed (nested component fields included)."""
    message = json.loads(json.dumps(draw(st.sampled_from(VALID))))
    target = message
    if "component" in message and draw(st.booleans()):
        target = message["component"]
    action = draw(st.sampled_from(["replace", "add", "remove"]))
    keys = sorted(target)
    if action == "add" or not keys:
        target[draw(st.text(max_size=8))] = draw(weird)
    elif action == "remove":
        del target[draw(st.sampled_from(keys))]
    else:
        target[draw(st.sampled_from(keys))] = draw(weird)
    return message


junk_payload = st.binary(max_size=300) | st.sampled_from([b"", b"\x05\x01\x25\x02" + bytes(28)])


# -- the tests ---------------------------------------------------------------------------------------------


@FUZZ
@given(raw=st.binary(max_size=2000))
def test_arbitrary_bytes(server, control, data, raw):
    assert control.ask([raw])["type"] in ("error", "pong", "reply")
    assert data.ask([raw])["type"] in ("error", "ack")


def _deep(depth: int, opener: bytes, closer: bytes) -> bytes:
    return opener * depth + closer * depth


deep_json = st.builds(_deep, st.integers(1, 5000), st.sampled_from([b"[", b'{"a":[']), st.sampled_from([b"]", b"]}"]))


@FUZZ
@given(value=json_values | deep_json)
def test_arbitrary_json(server, control, data, value):
    raw = value if isinstance(value, bytes) else _encode(value)
    assert control.ask([raw])["type"] == "error"  # no JSON without "v": 1 and a type is valid
    assert data.ask([raw])["type"] == "error"


@FUZZ
@given(parts=st.lists(junk_payload | near_valid().map(_encode), min_size=1, max_size=4))
def test_multipart_junk_on_the_control_channel_from_a_peer_without_req_envelopes(server, dealer_control, parts):
    assert dealer_control.ask(parts)["type"] in ("error", "pong", "reply")


@FUZZ
@given(message=near_valid(), payload=st.lists(junk_payload, max_size=3))
def test_near_valid_messages(server, control, data, message, payload):
    raw = _encode(message)
    assert control.ask([raw, *payload])["type"] in ("error", "pong", "reply")
    if message.get("type") in ("release",) and "names" in message and not payload:
        data.sock.send_multipart([raw])  # an accepted release has no reply by design: nothing to wait for
        return
    assert data.ask([raw, *payload])["type"] in ("error", "ack")
    _drain(server)


@FUZZ
@given(
    shape=st.lists(st.integers(min_value=-2, max_value=70000), min_size=0, max_size=3),
    dtype=st.sampled_from(["uint8", "uint16", "float64", "object", "int64"]),
    codec=st.sampled_from(["raw", "blosc2-lz4", "zstd"]),
    payload=st.lists(junk_payload, max_size=3),
)
def test_frames_with_junk_payloads(server, data, shape, dtype, codec, payload):
    message = {**VALID[-1], "shape": shape, "dtype": dtype, "codec": codec}
    assert data.ask([_encode(message), *payload])["type"] in ("error", "ack")
    _drain(server)


def test_the_server_still_serves_after_the_fuzzing(server):
    _still_serving(server)
    assert server.status()["errors_replied"] > 500  # the fuzzing reached the server, and it answered
