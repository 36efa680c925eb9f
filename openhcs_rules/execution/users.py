"""Who sent a request: the user a CURVE client key belongs to, and whether that user is an operator.

With CURVE (a server beyond loopback) every client is one of the public keys in the keys folder's
``authorized_clients/``; the user is the key file's name (``alice.key`` is ``alice``), so giving a person
access is copying their public key there under their name. Without CURVE the server listens on loopback only
and cannot tell local users apart: every client is :data:`LOCAL_USER`, an operator (whoever can reach a
loopback port can also read the run folders).

A user sees and cancels their own runs; an operator sees and cancels every run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import zmq.auth

from openhcs_rules.messaging.auth import AUTHORIZED

log = logging.getLogger(__name__)

#: the one user of a server without CURVE (loopback only)
LOCAL_USER = "local"


class Users:
    """Maps a peer's CURVE public key (Z85 text, ZMQ's User-Id) to a user name."""

    def __init__(self, keys_dir: str | Path | None, operators: Iterable[str] = ()) -> None:
        self.keys_dir = Path(keys_dir) if keys_dir else None
        self.operators = frozenset(operators)
        self._names: dict[str, str] = {}
        self._stamp: float | None = None

    def _refresh(self) -> None:
        """Re-read ``authorized_clients/`` when it changed (keys are added while the server runs)."""
        assert self.keys_dir is not None
        folder = self.keys_dir / AUTHORIZED
        try:
            stamp = folder.stat().st_mtime
        except OSError:
            return
        if stamp == self._stamp:
            return
        names: dict[str, str] = {}
        for path in sorted(folder.glob("*.key")):
            try:
                public, _ = zmq.auth.load_certificate(path)
            except (OSError, ValueError) as exc:
                log.warning("authorized key %s cannot be read: %s", path, exc)
                continue
            names[public.decode("ascii")] = path.stem
        self._names, self._stamp = names, stamp

    def name_of(self, user_id: str) -> str:
        """The user behind a ZMQ User-Id ("" without CURVE: the local user)."""
        if not user_id or self.keys_dir is None:
            return LOCAL_USER
        self._refresh()
        return self._names.get(user_id, f"key:{user_id[:8]}")

    def is_operator(self, user: str) -> bool:
        return user == LOCAL_USER or user in self.operators
