"""Signed tokens (OMERO.web -> execution server): what verifies, and everything that must not."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openhcs_rules.errors import ConfigError
from openhcs_rules.execution.signed_tokens import (
    MAX_TTL_S,
    PREFIX,
    SignedClaims,
    create_secret,
    load_secret,
    omero_user,
    sign_token,
    verify_token,
)

SECRET = b"0123456789abcdef0123456789abcdef"
NOW = 1_800_000_000.0


def test_a_token_verifies_with_its_secret_and_says_who_and_which_plates() -> None:
    token = sign_token(SECRET, "alice@omero", [52, 51, 52], ttl_s=600, now=NOW)
    assert token.startswith(PREFIX)
    assert verify_token(SECRET, token, now=NOW + 1) == SignedClaims("alice@omero", frozenset({51, 52}), NOW + 600)


def test_expired_foreign_and_tampered_tokens_are_refused() -> None:
    token = sign_token(SECRET, "alice@omero", [51], ttl_s=60, now=NOW)
    assert verify_token(SECRET, token, now=NOW + 60) is None  # expired at its exp
    assert verify_token(b"another-secret-another-secret-00", token, now=NOW) is None
    assert verify_token(b"", token, now=NOW) is None
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for changed in ({**claims, "plates": [51, 99]}, {**claims, "sub": "root"}, {**claims, "exp": claims["exp"] + 9}):
        forged = base64.urlsafe_b64encode(json.dumps(changed).encode()).rstrip(b"=").decode()
        assert verify_token(SECRET, f"{head}.{forged}.{signature}", now=NOW) is None
    assert verify_token(SECRET, f"{head}.{payload}.", now=NOW) is None
    assert verify_token(SECRET, f"{head}.{payload}", now=NOW) is None
    assert verify_token(SECRET, "local-token-of-the-store", now=NOW) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_no_text_verifies_without_the_secret_and_none_raises(text: str) -> None:
    assert verify_token(SECRET, text, now=NOW) is None
    assert verify_token(SECRET, PREFIX + text, now=NOW) is None


def test_signing_refuses_what_the_server_could_not_accept() -> None:
    with pytest.raises(ConfigError):
        sign_token(SECRET, "al ice", [1])
    with pytest.raises(ConfigError):
        sign_token(SECRET, "alice@omero", [0])
    with pytest.raises(ConfigError):
        sign_token(SECRET, "alice@omero", [1], ttl_s=MAX_TTL_S + 1)
    with pytest.raises(ConfigError):
        sign_token(b"", "alice@omero", [1])


def test_omero_users_get_their_own_names() -> None:
    assert omero_user("alice") == "alice@omero"
    assert omero_user("a.b@lab.org") == "a.b@lab.org@omero"
    with pytest.raises(ConfigError, match="cannot be an execution-server user"):
        omero_user("alice smith")


def test_a_secret_is_created_once_owner_only_and_refused_when_everyone_reads_it(tmp_path: Path) -> None:
    path = create_secret(tmp_path / "conf" / "secret")
    assert path.stat().st_mode & 0o777 == 0o600
    first = load_secret(path)
    assert len(first) == 64
    create_secret(path)
    assert load_secret(path) == first  # kept, never overwritten
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by every user"):
        load_secret(path)
    with pytest.raises(ConfigError, match="serve-secret"):
        load_secret(tmp_path / "missing")
    short = tmp_path / "short"
    short.write_text("abc\n")
    os.chmod(short, 0o600)
    with pytest.raises(ConfigError, match="shorter"):
        load_secret(short)
