"""CURVE keys for servers that listen beyond loopback, kept in one directory.

Layout of a keys directory (created by :func:`ensure_keys`, readable by the server's user and, on a cluster,
by the jobs that stream to it through a shared file system)::

    server.key  server.key_secret          the server's keypair (clients need server.key only)
    client.key  client.key_secret          the keypair jobs and CLI clients use
    authorized_clients/*.key                public keys the server accepts (client.key is copied there)

A server refuses every client whose public key is not in ``authorized_clients/`` (ZAP status 400); the
client sees the refusal as a handshake event and raises :class:`AuthenticationError` instead of hanging.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from openhcs_rules.messaging.errors import AuthenticationError

AUTHORIZED = "authorized_clients"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerKeys:
    """The server's keypair and the folder of client public keys it accepts."""

    public: bytes
    secret: bytes
    authorized_dir: Path


@dataclass(frozen=True)
class ClientKeys:
    """A client's keypair and the public key of the server it expects (a man in the middle fails)."""

    public: bytes
    secret: bytes
    server_public: bytes


def ensure_keys(keys_dir: str | Path) -> Path:
    """Create the server and client keypairs (once) and authorize the client key; returns the folder."""
    folder = Path(keys_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for name in ("server", "client"):
        if not (folder / f"{name}.key_secret").is_file():
            zmq.auth.create_certificates(folder, name)
        os.chmod(folder / f"{name}.key_secret", 0o600)
    authorized = folder / AUTHORIZED
    authorized.mkdir(exist_ok=True)
    if not (authorized / "client.key").is_file():
        shutil.copy(folder / "client.key", authorized / "client.key")
    return folder


def _load(path: Path, need_secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise AuthenticationError(
            f"CURVE key file {path} is missing: create the keys with `openhcs-rules viewer keys --keys-dir "
            f"{path.parent}` and give clients the same folder"
        )
    public, secret = zmq.auth.load_certificate(path)
    if need_secret and not secret:
        raise AuthenticationError(f"{path} holds no secret key")
    return public, secret


def load_server_keys(keys_dir: str | Path) -> ServerKeys:
    folder = Path(keys_dir).expanduser()
    public, secret = _load(folder / "server.key_secret", need_secret=True)
    assert secret is not None
    return ServerKeys(public, secret, folder / AUTHORIZED)


def load_client_keys(keys_dir: str | Path) -> ClientKeys:
    folder = Path(keys_dir).expanduser()
    public, secret = _load(folder / "client.key_secret", need_secret=True)
    server_public, _ = _load(folder / "server.key", need_secret=False)
    assert secret is not None
    return ClientKeys(public, secret, server_public)


def secure_server_socket(socket: zmq.Socket, keys: ServerKeys) -> None:
    """Make a socket a CURVE server (call before bind)."""
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_server = True


def secure_client_socket(socket: zmq.Socket, keys: ClientKeys) -> None:
    """Make a socket a CURVE client of the server whose public key it holds (call before connect)."""
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_serverkey = keys.server_public


class AuthorizedKeys:
    """The public keys in ``authorized_clients/``, read again whenever the folder changes.

    pyzmq's ``configure_curve`` reads the folder once, so a key authorized while a server runs (a user added
    to the execution server; the execution server's streaming key, authorized by ``openhcs-rules submit``
    in a viewer that is already open) would be refused until a restart. This is the ZAP handler's
    credentials provider instead: a handshake re-reads the folder when its modification time changed, and an
    unknown key re-reads it at most once a second (a key file rewritten in place does not touch the folder).
    """

    RETRY_S = 1.0

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._keys: frozenset[bytes] = frozenset()
        self._stamp: int | None = None
        self._read_at = 0.0

    def _read(self) -> None:
        keys = set()
        for path in sorted(self.folder.glob("*.key")):
            try:
                public, _ = zmq.auth.load_certificate(path)
            except (OSError, ValueError) as exc:
                log.warning("authorized key %s cannot be read: %s", path, exc)
                continue
            keys.add(public)
        self._keys, self._read_at = frozenset(keys), time.monotonic()

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP: whether the client's public key (Z85) is authorized."""
        try:
            stamp: int | None = self.folder.stat().st_mtime_ns
        except OSError:
            stamp = None
        if stamp != self._stamp or (key not in self._keys and time.monotonic() - self._read_at >= self.RETRY_S):
            self._stamp = stamp
            self._read()
        return key in self._keys


def start_authenticator(context: zmq.Context, keys: ServerKeys) -> ThreadAuthenticator:
    """Run the ZAP handler that accepts exactly the public keys in ``authorized_clients/`` (as it is now)."""
    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve_callback(domain="*", credentials_provider=AuthorizedKeys(keys.authorized_dir))
    return authenticator


def stop_authenticator(authenticator: ThreadAuthenticator, timeout_s: float = 2.0) -> bool:
    """Stop the ZAP thread, waiting at most ``timeout_s``; False (and a warning) if it did not end.

    pyzmq's own ``stop`` joins the thread without a limit, so a ZAP thread stuck on a request would hold the
    server's shutdown, and the process, for ever.
    """
    pipe, thread = authenticator.pipe, authenticator.thread
    if pipe is None or thread is None:
        return True
    try:
        pipe.send(b"TERMINATE", flags=zmq.NOBLOCK)
    except zmq.ZMQError as exc:
        log.warning("the CURVE authenticator could not be told to stop: %s", exc)
    thread.join(timeout_s)
    pipe.close(linger=0)
    authenticator.pipe = None  # type: ignore[assignment]  # pyzmq's own stop() does the same
    if thread.is_alive():
        log.warning("the CURVE authenticator thread did not stop within %.1f s; it is left behind", timeout_s)
        return False
    if authenticator.zap_socket is not None:  # the ended thread no longer polls it
        authenticator.zap_socket.close(linger=0)
        authenticator.zap_socket = None  # type: ignore[assignment]
    return True
