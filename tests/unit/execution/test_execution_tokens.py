"""HTTP API tokens: random, returned once, stored only as hashes, revocable while the server runs."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
import threading

import pytest

from openhcs_rules.errors import ConfigError
from openhcs_rules.execution.tokens import TokenStore, token_digest


@pytest.fixture
def tokens(tmp_path):
    with TokenStore(tmp_path / "tokens.sqlite") as store:
        yield store


def test_an_issued_token_names_its_user_and_each_is_new(tokens):
    first, second = tokens.issue("alice"), tokens.issue("alice")
    assert first != second
    assert len(first) == 43  # 32 random bytes, URL-safe base64
    assert tokens.user_of(first) == tokens.user_of(second) == "alice"
    bob = tokens.issue("bob")
    assert tokens.user_of(bob) == "bob"
    assert tokens.users() == ["alice", "bob"]


def test_only_the_hash_is_stored_and_the_file_is_private(tokens, tmp_path):
    token = tokens.issue("alice")
    rows = sqlite3.connect(tmp_path / "tokens.sqlite").execute("SELECT digest, user FROM tokens").fetchall()
    assert rows == [(hashlib.sha256(token.encode()).hexdigest(), "alice")]
    assert token_digest(token) == rows[0][0]
    for path in tmp_path.iterdir():  # the database and its WAL files
        assert token.encode() not in path.read_bytes()
    assert stat.S_IMODE((tmp_path / "tokens.sqlite").stat().st_mode) == 0o600


@pytest.mark.parametrize("presented", [None, "", "x", "Bearer abc", "a" * 10_000, 42, b"bytes", "\ud800", "\x00"])
def test_anything_but_an_issued_token_is_nobody(tokens, presented):
    tokens.issue("alice")
    assert tokens.user_of(presented) is None


def test_a_token_with_one_character_changed_is_nobody(tokens):
    token = tokens.issue("alice")
    assert tokens.user_of(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert tokens.user_of(token + " ") is None
    assert tokens.user_of(token.upper() if token.upper() != token else token.lower()) is None


def test_revoking_ends_every_token_of_that_user_only(tokens):
    alice = [tokens.issue("alice") for _ in range(3)]
    bob = tokens.issue("bob")
    assert tokens.revoke("alice") == 3
    assert [tokens.user_of(token) for token in alice] == [None, None, None]
    assert tokens.user_of(bob) == "bob"
    assert tokens.revoke("alice") == 0
    assert tokens.users() == ["bob"]


def test_a_second_store_on_the_same_file_sees_and_revokes_at_once(tokens, tmp_path):
    """``serve-token`` writes the file while the server reads it: no restart needed either way."""
    with TokenStore(tmp_path / "tokens.sqlite") as cli:
        token = cli.issue("carol")
        assert tokens.user_of(token) == "carol"
        assert cli.revoke("carol") == 1
    assert tokens.user_of(token) is None


@pytest.mark.parametrize("user", ["", "a b", "../x", "key:abc", "x" * 65, ".hidden", "a/b", "é"])
def test_user_names_are_refused_unless_plain(tokens, user):
    with pytest.raises(ConfigError, match="user name"):
        tokens.issue(user)
    assert tokens.users() == []


def test_plain_user_names_are_accepted(tokens):
    for user in ("local", "alice", "bob.smith", "c-d_e", "ann@lab", "A1"):
        assert tokens.user_of(tokens.issue(user)) == user


def test_threads_share_one_store(tokens):
    issued: list[tuple[str, str]] = []

    def work(name: str) -> None:
        for _ in range(20):
            issued.append((name, tokens.issue(name)))

    threads = [threading.Thread(target=work, args=(f"user{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(issued) == 80
    assert all(tokens.user_of(token) == name for name, token in issued)
