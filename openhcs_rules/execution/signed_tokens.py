"""Short-lived signed tokens: how OMERO.web hands its logged-in user to the execution server.

OMERO.web knows who is logged in; the execution server does not, and the browser must talk to the server
directly (an event stream held open through OMERO.web would tie up one of its few workers for the whole
run). So OMERO.web signs a statement, "this is OMERO user alice, she may act on plates 51 and 52, until
10:42", with a secret it shares with the execution server, and gives it to the page; the page sends it as
its bearer token. The server checks the signature and the expiry and nothing else: it never asks OMERO.

The format (``ohcs1.<payload>.<signature>``, both parts base64url without padding): the payload is compact
JSON ``{"sub": user, "plates": [ids], "exp": unix seconds}``; the signature is HMAC-SHA256 of the text
``ohcs1.<payload>`` under the shared secret, compared in constant time. Why not a JWT library: three claims
and one algorithm, with no algorithm field a token could name (the classic ``alg: none`` hole), do not need
one.

What such a token may do (enforced by the server, :mod:`openhcs_rules.execution.http_api`): everything a
user may do with their own runs, but submit only screens whose plates are all OMERO plates named in
``plates``, the ones OMERO.web checked that this user can read. Its user is the OMERO user's name with
:data:`OMERO_SUFFIX` (``alice@omero``), so an OMERO user never becomes a local user of the same name.

The secret is a file of 32 random bytes (hex) readable by the server's and OMERO.web's users only
(``openhcs-rules serve-secret FILE`` creates it); it never travels.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from openhcs_rules.errors import ConfigError
from openhcs_rules.execution.tokens import USER_NAME

#: the version tag every signed token starts with (a later format gets a new tag)
PREFIX = "ohcs1."
#: appended to OMERO user names: ``alice`` of OMERO is ``alice@omero`` on the execution server
OMERO_SUFFIX = "@omero"
#: the longest lifetime a token may be signed for (a page asks for a new one before it ends)
MAX_TTL_S = 3600.0
#: the default lifetime of a token OMERO.web signs
DEFAULT_TTL_S = 600.0
#: plates one token may name at most
MAX_PLATES = 1000
#: a presented token longer than this is refused before any decoding
MAX_TOKEN_CHARS = 16 * 1024
#: random bytes of a secret
SECRET_BYTES = 32


@dataclass(frozen=True)
class SignedClaims:
    """What a valid signed token says: who, which OMERO plates, until when (unix seconds)."""

    user: str
    omero_plates: frozenset[int]
    expires: float


def omero_user(name: str) -> str:
    """The execution server's name of an OMERO user; ConfigError when the OMERO name cannot be one."""
    user = f"{name}{OMERO_SUFFIX}"
    if not isinstance(name, str) or not USER_NAME.match(user):
        raise ConfigError(
            f"OMERO user name {name!r} cannot be an execution-server user (letters, digits, '_', '.', '@', '-'; "
            f"at most {64 - len(OMERO_SUFFIX)} characters)"
        )
    return user


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, signed_part: str) -> str:
    return _b64(hmac.new(secret, signed_part.encode("ascii"), hashlib.sha256).digest())


def sign_token(
    secret: bytes, user: str, omero_plates: Iterable[int], ttl_s: float = DEFAULT_TTL_S, now: float | None = None
) -> str:
    """A token for ``user`` (an execution-server user name, see :func:`omero_user`) allowed to submit runs on
    ``omero_plates``, valid for ``ttl_s`` seconds (at most :data:`MAX_TTL_S`)."""
    if not secret:
        raise ConfigError("the signing secret is empty")
    if not isinstance(user, str) or not USER_NAME.match(user):
        raise ConfigError(f"user name {user!r} is not one the execution server accepts")
    plates = sorted({int(plate) for plate in omero_plates})
    if len(plates) > MAX_PLATES or any(plate < 1 for plate in plates):
        raise ConfigError(f"a signed token names 0 to {MAX_PLATES} OMERO plate ids, each at least 1")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ConfigError(f"a signed token lives between 0 and {MAX_TTL_S:.0f} s, not {ttl_s}")
    expires = int((time.time() if now is None else now) + ttl_s)
    payload = json.dumps({"sub": user, "plates": plates, "exp": expires}, separators=(",", ":"))
    signed_part = PREFIX + _b64(payload.encode("utf-8"))
    return f"{signed_part}.{_signature(secret, signed_part)}"


def is_signed_token(token: str) -> bool:
    """True for text in this module's format (to be checked with :func:`verify_token`)."""
    return isinstance(token, str) and token.startswith(PREFIX)


def verify_token(secret: bytes, token: str, now: float | None = None) -> SignedClaims | None:
    """The claims of a token signed with ``secret`` and not expired; None for anything else (a wrong or
    missing signature, an expired or malformed token), without saying which."""
    if not secret or not is_signed_token(token) or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        return None  # every part of a real token is base64url: anything else is not one
    signed_part, dot, signature = token.rpartition(".")
    expected = _signature(secret, signed_part).encode("ascii")
    if not dot or not hmac.compare_digest(expected, signature.encode("ascii")):
        return None
    try:
        claims = json.loads(_unb64(signed_part[len(PREFIX) :]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None  # a correctly signed token is never malformed; this is a bug on the signer's side
    if not isinstance(claims, dict):
        return None
    user, plates, expires = claims.get("sub"), claims.get("plates"), claims.get("exp")
    if not isinstance(user, str) or not USER_NAME.match(user) or not isinstance(expires, int):
        return None
    if not isinstance(plates, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in plates):
        return None
    if expires <= (time.time() if now is None else now):
        return None
    return SignedClaims(user, frozenset(plates), float(expires))


def create_secret(path: str | Path) -> Path:
    """Write a new random secret to ``path`` (owner-only; ``chgrp`` and ``chmod g+r`` it to share); an existing
    file is kept, never overwritten."""
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        load_secret(target)  # an existing secret must at least be a usable one
        return target
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(SECRET_BYTES) + "\n")
    return target


def load_secret(path: str | Path) -> bytes:
    """The secret in ``path``; ConfigError naming the file when it is missing, unreadable, too short, or
    readable by every user of the machine (whoever reads it signs tokens for anyone; a group may share it,
    when OMERO.web and the execution server run as different users)."""
    source = Path(path).expanduser()
    try:
        mode = source.stat().st_mode
        text = source.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"signing secret {source}: cannot be read ({exc}); create one with `openhcs-rules serve-secret {source}`"
        ) from None
    if mode & 0o007:
        raise ConfigError(f"signing secret {source}: readable by every user; `chmod o-rwx {source}`")
    if len(text) < 2 * 16:
        raise ConfigError(f"signing secret {source}: shorter than 16 bytes of hex; create a new one")
    return text.encode("ascii")
