"""The message schema: what is accepted, and that everything else is refused before any handler sees it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from openhcs_rules.messaging import messages
from openhcs_rules.messaging.errors import MessageError
from openhcs_rules.streaming import codec


def _frame(**overrides):
    fields = {
        "id": 1,
        "sent_ns": 5,
        "sender": "host:1",
        "component": {"plate": "p", "well": "B02", "site": 1, "channel": 2, "z": 1, "t": 1, "channel_name": "FITC"},
        "step": {"index": 0, "name": "denoise"},
        "role": "image",
        "dtype": "uint16",
        "shape": [4, 6],
        "transport": "shm",
        "shm": "ohcs_123_0a1b2c3d_7",
    }
    fields.update(overrides)
    return {"v": messages.SCHEMA_VERSION, "type": "frame", **fields}


def test_a_frame_round_trips_through_the_wire_form():
    message = messages.make("frame", **{k: v for k, v in _frame().items() if k not in ("v", "type")})
    assert messages.decode(messages.encode(message)) == message


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x80\x03cos\nsystem\nq\x00.", "not a JSON message"),  # a pickle is just bytes that are not JSON
        (b"[1, 2]", "must be a JSON object"),
        (b'{"v": 99, "type": "ping"}', "schema version 99"),
        (b'{"type": "ping"}', "schema version None"),
        (b'{"v": 1, "type": "exec"}', "unknown message type 'exec'"),
        (b'{"v": 1, "type": "ping", "code": "x"}', "unknown field"),
        (b'{"v": 1, "type": "ack"}', "missing field 'id'"),
        (b'{"v": 1, "type": "ack", "id": true}', "must be int, got bool"),
        (b'{"v": 1, "type": "ack", "id": NaN}', "not a JSON message"),
        (b'{"v": 1, "type": "ack", "id": -1}', "must be >= 0"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(raw, reason):
    with pytest.raises(MessageError, match=reason):
        messages.decode(raw)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"shm": "../../etc/passwd"}, "not an openhcs shared-memory segment name"),
        ({"shm": "ohcs_1_zzzzzzzz_1"}, "not an openhcs shared-memory segment name"),
        ({"shape": [0, 5]}, r"must be \[height, width\]"),
        ({"shape": [4, 5, 6]}, r"must be \[height, width\]"),
        ({"dtype": "object"}, "must be one of"),
        ({"role": "script"}, "must be one of"),
        ({"component": {"plate": "p", "well": "B02", "site": 0, "channel": 1, "z": 1, "t": 1}}, "must be >= 1"),
        ({"component": {"plate": "p", "well": "B02", "site": 1, "channel": 1, "z": 1}}, "missing field 't'"),
        ({"transport": "inline"}, "transport inline needs the field 'codec'"),
    ],
)
def test_frame_fields_are_checked(overrides, reason):
    with pytest.raises(MessageError, match=reason):
        messages.decode(json.dumps(_frame(**overrides)).encode())


def test_oversized_headers_are_refused_without_parsing():
    with pytest.raises(MessageError, match="larger than"):
        messages.decode(b" " * (messages.MAX_JSON_BYTES + 1))


def test_the_sender_side_validates_too():
    with pytest.raises(MessageError, match="unknown field"):
        messages.make("ping", payload="x")


@pytest.mark.parametrize("dtype", ["uint16", "float32", "int32"])
def test_compressed_frames_decode_to_the_same_pixels(dtype):
    array = (np.random.default_rng(1).random((64, 48)) * 1000).astype(dtype)
    payload = codec.encode(array, "blosc2-lz4")
    assert len(payload) < array.nbytes
    np.testing.assert_array_equal(codec.decode(payload, "blosc2-lz4", dtype, (64, 48)), array)


def test_a_compressed_frame_that_lies_about_its_size_is_refused():
    payload = codec.encode(np.zeros((64, 64), np.uint16), "blosc2-lz4")
    with pytest.raises(MessageError, match="announces"):
        codec.decode(payload, "blosc2-lz4", "uint16", (32, 32))
    with pytest.raises(MessageError, match="inline frame has"):
        codec.decode(b"\x00" * 10, "raw", "uint16", (2, 2))


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"a":' * 1000 + b"1" + b"}" * 1000,
        b'{"v": 1, "type": "reply", "result": '
        + b"[" * (messages.MAX_DEPTH + 1)
        + b"]" * (messages.MAX_DEPTH + 1)
        + b"}",
        b"[" * 100_000,  # unbalanced: refused before the parser sees it, not by the parser's recursion
    ],
    ids=["arrays", "objects", "just-past-the-limit", "unbalanced"],
)
def test_json_nested_deeper_than_the_limit_is_refused_with_the_limit_named(raw):
    with pytest.raises(MessageError, match=f"nested deeper than the limit of {messages.MAX_DEPTH}"):
        messages.decode(raw)


def test_brackets_inside_strings_do_not_count_as_nesting():
    deep_text = "[" * 500 + '\\"{' * 100 + "]"
    message = messages.make("macro", code=deep_text)
    assert messages.decode(messages.encode(message)) == message
    nested = messages.make("reply", result=[[[{"a": [[["x"]]]}]]])
    assert messages.decode(messages.encode(nested)) == nested
    unterminated = b'{"v": 1, "type": "macro", "code": "' + b'\\"' * 50_000  # linear, not quadratic, to refuse
    with pytest.raises(MessageError, match="not a JSON message"):
        messages.decode(unterminated)


@pytest.mark.parametrize("version", [b"true", b"1.0", b"1e0", b'"1"', b"[1]"])
def test_the_schema_version_must_be_exactly_the_integer(version):
    with pytest.raises(MessageError, match="schema version"):
        messages.decode(b'{"v": ' + version + b', "type": "ping"}')
