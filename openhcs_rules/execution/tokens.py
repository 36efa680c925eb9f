"""Bearer tokens of the execution server's HTTP API: who a browser (or a script) is.

The ZMQ channels know their users by CURVE keys; a browser cannot hold one, so the HTTP API knows users by
a random token given to each (``openhcs-rules serve-token USER``). A user of the HTTP API and a user of the
ZMQ channels with the same name are the same user: they see the same runs.

Why only a hash is stored: the token file sits in the runs folder, next to everything the server writes; a
copy of it (a backup, a support bundle) must not let anyone in. A token is 32 random bytes
(``secrets.token_urlsafe``), so an unsalted SHA-256 of it cannot be reversed or guessed, and looking a
request's token up by its hash never compares the secret itself character by character (no timing leak).
Tokens are returned once, when issued; a lost token is revoked and a new one issued.

SQLite (its own file, ``RUNS_DIR/tokens.sqlite``, not the runs store): ``serve-token`` issues and revokes
tokens while the server runs, and each request reads the current state, so a revoked token stops working on
the next request.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import sqlite3
import threading
import time
from pathlib import Path

from openhcs_rules.errors import ConfigError

#: the random bytes of a token (``secrets.token_urlsafe(32)``: 43 characters)
TOKEN_BYTES = 32
#: a presented token longer than this is not one of ours (nothing is hashed for it)
MAX_TOKEN_CHARS = 256
#: user names: as CURVE users are named (their key file's stem), so both transports share runs
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    digest TEXT PRIMARY KEY,          -- SHA-256 hex of the token; the token itself is never stored
    user TEXT NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tokens_by_user ON tokens (user);
"""


def token_digest(token: str) -> str:
    """The stored form of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_user_name(user: str) -> str:
    """A user name a token may be issued to; ConfigError (naming the rule) otherwise."""
    if not isinstance(user, str) or not USER_NAME.match(user):
        raise ConfigError(
            f"user name {user!r}: letters, digits, '_', '.', '@' and '-' only (at most 64), starting with a "
            "letter or digit"
        )
    return user


class TokenStore:
    """Issued tokens (as hashes) and their users, in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            # owner-only from the first byte: the hashes are not secrets, but nobody else needs to read them
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> TokenStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def issue(self, user: str) -> str:
        """A new token for ``user`` (earlier ones stay valid); the only time the token itself is seen."""
        check_user_name(user)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self._lock:
            self._db.execute(
                "INSERT INTO tokens (digest, user, created_at) VALUES (?, ?, ?)",
                (token_digest(token), user, time.time()),
            )
        return token

    def user_of(self, token: str | None) -> str | None:
        """The user a token was issued to; None for anything else (unknown, revoked, empty, not text)."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            return None
        digest = token_digest(token)
        with self._lock:
            row = self._db.execute("SELECT user FROM tokens WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else str(row[0])

    def revoke(self, user: str) -> int:
        """Revoke every token of ``user``; how many there were."""
        with self._lock:
            return int(self._db.execute("DELETE FROM tokens WHERE user = ?", (user,)).rowcount)

    def users(self) -> list[str]:
        """The users holding at least one token, sorted."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT user FROM tokens ORDER BY user").fetchall()
        return [str(row[0]) for row in rows]
