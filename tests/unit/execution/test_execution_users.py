"""Users are the names of their authorized CURVE keys; without CURVE every client is the local operator."""

from __future__ import annotations

import os
import shutil

import zmq.auth

from openhcs_rules.execution.users import LOCAL_USER, Users
from openhcs_rules.messaging.auth import AUTHORIZED, ensure_keys


def test_a_key_is_its_files_name_and_new_keys_are_seen_while_running(tmp_path):
    keys = ensure_keys(tmp_path / "keys")
    users = Users(keys, operators=["admin"])
    client_public, _ = zmq.auth.load_certificate(keys / "client.key")
    assert users.name_of(client_public.decode()) == "client"
    public, _ = zmq.auth.create_certificates(tmp_path, "alice")
    alice_public, _ = zmq.auth.load_certificate(public)
    assert users.name_of(alice_public.decode()).startswith("key:")  # not authorized (yet)
    shutil.copy(public, keys / AUTHORIZED / "alice.key")
    # a later modification time: the folder is read again
    folder = keys / AUTHORIZED
    stat = folder.stat()
    os.utime(folder, (stat.st_atime, stat.st_mtime + 1))
    assert users.name_of(alice_public.decode()) == "alice"
    assert not users.is_operator("alice") and users.is_operator("admin")


def test_without_curve_everyone_is_the_local_operator():
    users = Users(None)
    assert users.name_of("") == LOCAL_USER == users.name_of("anything")
    assert users.is_operator(LOCAL_USER)
