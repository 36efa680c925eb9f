"""The versioned message schema of every control and data channel, and the one place messages are parsed.

Messages are JSON objects ``{"v": SCHEMA_VERSION, "type": ..., <fields>}``; pixel payloads travel as extra
ZMQ frames, never inside the JSON. Nothing received is unpickled or evaluated: :func:`decode` parses JSON,
then checks the version, the type and every field (name, type, range) against :data:`SCHEMA` before any
handler sees the message, so a malformed or hostile message becomes an error reply and never reaches
viewer code. Unknown fields are rejected too: a typo in a sender is a loud error, not a silent default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from openhcs_rules.messaging.errors import MessageError

SCHEMA_VERSION = 1

#: the largest JSON part accepted (pixels travel in separate frames, so headers are small)
MAX_JSON_BYTES = 1 << 20

#: the deepest nesting of arrays/objects accepted: the schema's deepest message (a ``layers`` reply) is 5
#: levels, and json's C parser recurses once per level, so 1,000 levels raised RecursionError in decode
MAX_DEPTH = 32

#: a JSON string, its closing quote optional so an unterminated string is consumed in one linear pass
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"?', re.DOTALL)
_OPEN = np.zeros(256, np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1

#: pixel types a frame may carry (what napari and ImageJ can show; labels are int32)
DTYPES = ("uint8", "uint16", "int16", "int32", "uint32", "float32", "float64")

#: shared-memory segment names the viewers agree to open: ours only, no path separators
SHM_NAME = re.compile(r"^ohcs_[0-9]+_[0-9a-f]{8}_[0-9]+$")

_MAX_SIDE = 1 << 16


@dataclass(frozen=True)
class Field:
    """One field of a message: accepted Python types, whether it must be present, and an extra check."""

    types: tuple[type, ...]
    required: bool = True
    check: Callable[[Any], str | None] | None = None


def _positive(value: Any) -> str | None:
    return None if value >= 1 else "must be >= 1"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be >= 0"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _short_text(limit: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if 0 < len(value) <= limit else f"must be 1..{limit} characters"

    return check


def _shape(value: Any) -> str | None:
    if len(value) != 2 or not all(_is_int(side) and 1 <= side <= _MAX_SIDE for side in value):
        return f"must be [height, width] with sides 1..{_MAX_SIDE}"
    return None


def _shm_name(value: Any) -> str | None:
    return None if SHM_NAME.match(value) else "is not an openhcs shared-memory segment name"


def _shm_names(value: Any) -> str | None:
    if len(value) > 4096 or not all(isinstance(v, str) and SHM_NAME.match(v) for v in value):
        return "must be a list of openhcs shared-memory segment names"
    return None


def _platemaps(value: Any) -> str | None:
    if len(value) > 1000 or not all(
        isinstance(k, str) and len(k) <= 200 and isinstance(v, str) for k, v in value.items()
    ):
        return "must map at most 1000 plate names to plate map texts"
    return None


def _viewer_keys(value: Any) -> str | None:
    if len(value) > 8 or not all(isinstance(k, str) and isinstance(v, str) and len(v) <= 64 for k, v in value.items()):
        return "must map at most 8 viewer kinds to public keys (text)"
    return None


_COMPONENT_FIELDS: dict[str, Field] = {
    "plate": Field((str,), check=_short_text(200)),
    "well": Field((str,), check=_short_text(16)),
    "site": Field((int,), check=_positive),
    "channel": Field((int,), check=_positive),
    "z": Field((int,), check=_positive),
    "t": Field((int,), check=_positive),
    "channel_name": Field((str,), required=False, check=_short_text(200)),
}

_STEP_FIELDS: dict[str, Field] = {
    "index": Field((int,), check=_non_negative),
    "name": Field((str,), check=_short_text(200)),
}


def _nested(fields: dict[str, Field]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        try:
            _check_fields(value, fields, "")
        except MessageError as exc:
            return str(exc)
        return None

    return check


_ANY_JSON = (dict, list, str, int, float, bool, type(None))

#: every message type and its fields (besides "v" and "type")
SCHEMA: dict[str, dict[str, Field]] = {
    # control requests, answered by every server
    "ping": {},
    "status": {},
    "shutdown": {},
    # control requests, answered by viewers
    "clear": {},
    "layers": {},
    "get_plane": {
        "layer": Field((str,), check=_short_text(500)),
        "index": Field((dict,)),
    },
    "screenshot": {},
    "hyperstacks": {},
    "macro": {"code": Field((str,), check=_short_text(100_000))},
    "frames": {},
    "stats": {},
    # control requests, answered by the execution server (openhcs_rules.execution)
    "submit": {
        "config": Field((str,), check=_short_text(256 * 1024)),
        "pipeline": Field((str,), required=False, check=_short_text(512 * 1024)),
        "pipeline_name": Field((str,), required=False, check=_short_text(64)),
        # viewer kind -> the Z85 public key of the client's viewer (checked strictly by the server)
        "viewer_keys": Field((dict,), required=False, check=_viewer_keys),
        # plate name -> the text of its plate map (CSV), read on the client's machine (sizes: the server's)
        "platemaps": Field((dict,), required=False, check=_platemaps),
    },
    "stream_key": {},
    "runs": {"all": Field((bool,), required=False)},
    "run": {"run_id": Field((str,), check=_short_text(64))},
    "events": {
        "run_id": Field((str,), check=_short_text(64)),
        "after": Field((int,), required=False, check=_non_negative),
        "limit": Field((int,), required=False, check=_positive),
    },
    "cancel": {
        "run_id": Field((str,), check=_short_text(64)),
        "mode": Field((str,), required=False, check=_one_of("drain", "abort")),
    },
    "resume": {"run_id": Field((str,), check=_short_text(64))},
    "logs": {
        "run_id": Field((str,), check=_short_text(64)),
        "tail": Field((int,), required=False, check=_positive),
    },
    "results": {"run_id": Field((str,), check=_short_text(64))},
    "pipelines": {},
    # control replies
    "pong": {"server": Field((dict,)), "status": Field((dict,))},
    "reply": {"result": Field(_ANY_JSON)},
    "error": {
        "code": Field((str,), check=_short_text(64)),
        "error": Field((str,)),
        "id": Field((int,), required=False),
    },
    # data channel
    "frame": {
        "id": Field((int,), check=_non_negative),
        "sent_ns": Field((int,), check=_non_negative),
        "sender": Field((str,), check=_short_text(300)),
        "component": Field((dict,), check=_nested(_COMPONENT_FIELDS)),
        "step": Field((dict,), check=_nested(_STEP_FIELDS)),
        "role": Field((str,), check=_one_of("image", "labels")),
        "dtype": Field((str,), check=_one_of(*DTYPES)),
        "shape": Field((list,), check=_shape),
        "transport": Field((str,), check=_one_of("shm", "inline")),
        "shm": Field((str,), required=False, check=_shm_name),
        "codec": Field((str,), required=False, check=_one_of("raw", "blosc2-lz4")),
        # shm frames: bytes of this sender's slots the viewer may keep past the ack (a display showing the
        # slot itself); absent or 0: the ack gives the slot back, as senders before slot loans expect
        "hold_bytes": Field((int,), required=False, check=_non_negative),
    },
    # held: the viewer keeps the frame's slot (shown from it); a `release` naming the slot gives it back
    "ack": {"id": Field((int,), check=_non_negative), "held": Field((bool,), required=False)},
    # data channel of the execution server: a client asks to watch a run, the server pushes its events
    "watch": {
        "run_id": Field((str,), check=_short_text(64)),
        "after": Field((int,), required=False, check=_non_negative),
    },
    "event": {
        "run_id": Field((str,), check=_short_text(64)),
        "seq": Field((int,), check=_positive),
        "time": Field((float, int)),
        "event": Field((str,), check=_short_text(64)),
        "body": Field((dict,)),
    },
    # both ways: sender -> viewer "these segments are gone, unmap them"; viewer -> sender "these held slots
    # are free again"
    "release": {"names": Field((list,), check=_shm_names)},
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # JSON true is not an integer here
        return bool in types
    if int in types and _is_int(value):
        return True
    if float in types and isinstance(value, int | float):
        return True
    return isinstance(value, types)


def _check_fields(data: Any, fields: dict[str, Field], where: str, envelope: frozenset[str] = frozenset()) -> None:
    """``envelope``: names of ``data`` checked elsewhere (a message's ``v`` and ``type``)."""
    if not isinstance(data, dict):
        raise MessageError(f"{where or 'message'} must be a JSON object")
    unknown = data.keys() - fields.keys() - envelope
    if unknown:
        raise MessageError(f"{where}unknown field(s) {', '.join(sorted(unknown))}")
    for name, spec in fields.items():
        if name not in data:
            if spec.required:
                raise MessageError(f"{where}missing field {name!r}")
            continue
        value = data[name]
        if not _type_ok(value, spec.types):
            expected = "/".join(t.__name__ for t in spec.types)
            raise MessageError(f"{where}field {name!r} must be {expected}, got {type(value).__name__}")
        if spec.check is not None:
            problem = spec.check(value)
            if problem:
                raise MessageError(f"{where}field {name!r} {problem}")


def validate(message: Any) -> dict[str, Any]:
    """Check a parsed message against the schema; return it unchanged or raise :class:`MessageError`."""
    if not isinstance(message, dict):
        raise MessageError("a message must be a JSON object")
    version = message.get("v")
    if not _is_int(version) or version != SCHEMA_VERSION:  # True == 1 and 1.0 == 1 in Python: not versions
        raise MessageError(f"schema version {version!r} is not supported (this side speaks {SCHEMA_VERSION})")
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in SCHEMA:
        raise MessageError(f"unknown message type {kind!r}")
    _check_fields(message, SCHEMA[kind], f"{kind}: ", _ENVELOPE)
    if kind == "frame":
        _check_frame_transport(message)
    return message


_ENVELOPE = frozenset({"v", "type"})


def _check_frame_transport(body: dict[str, Any]) -> None:
    if body["transport"] == "shm" and "shm" not in body:
        raise MessageError("frame: transport shm needs the field 'shm'")
    if body["transport"] == "inline" and "codec" not in body:
        raise MessageError("frame: transport inline needs the field 'codec'")


def make(kind: str, **fields: Any) -> dict[str, Any]:
    """A message dict of this schema version (validated, so a sender's bug fails where it is made)."""
    return validate({"v": SCHEMA_VERSION, "type": kind, **fields})


def encode(message: dict[str, Any]) -> bytes:
    """The wire form of a message made with :func:`make`."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()


def decode(raw: bytes) -> dict[str, Any]:
    """Parse and validate one received JSON part; anything else raises :class:`MessageError`."""
    if len(raw) > MAX_JSON_BYTES:
        raise MessageError(f"message of {len(raw)} bytes is larger than {MAX_JSON_BYTES}")
    _check_depth(raw)
    try:
        message = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise MessageError(f"not a JSON message: {exc}") from None
    return validate(message)


def nesting_depth(raw: bytes) -> int:
    """The deepest ``[``/``{`` nesting of a JSON text, brackets inside strings not counted.

    Measured on the bytes before parsing, so a hostile message cannot make the parser recurse; linear in
    the length (one regex pass, then numpy), so a 1 MiB message costs milliseconds.
    """
    structure = _JSON_STRING.sub(b"", bytes(raw))
    if not structure:
        return 0
    steps = _OPEN[np.frombuffer(structure, np.uint8)].astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))


def _check_depth(raw: bytes) -> None:
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:  # no deeper than its brackets: every frame header, ack
        return  # and release (the exact count below costs a regex pass and numpy: ~10 us a message)
    depth = nesting_depth(raw)
    if depth > MAX_DEPTH:
        raise MessageError(f"message is nested deeper than the limit of {MAX_DEPTH} levels ({depth} levels)")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def error_message(code: str, error: str, frame_id: int | None = None) -> dict[str, Any]:
    """The error reply every server sends instead of crashing or staying silent."""
    fields: dict[str, Any] = {"code": code, "error": error[:2000]}
    if frame_id is not None:
        fields["id"] = frame_id
    return make("error", **fields)
