"""Connecting: wrong password, no server, expired sessions, never pickling a live connection."""

from __future__ import annotations

import pickle
import time
from dataclasses import replace

import pytest

from openhcs_rules.omero.adapter import OmeroSession
from openhcs_rules.omero.errors import OmeroAuthError, OmeroPasswordError, OmeroUnavailableError
from openhcs_rules_testkit.omero_standin.data import random_fields

pytest_plugins = ["openhcs_rules_testkit.omero_standin.fixtures"]


def test_wrong_password_is_refused_clearly(omero_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRONG_PW", "not-the-password")
    params = replace(omero_server.params, password_env="WRONG_PW")
    with pytest.raises(OmeroAuthError, match=r"refused user 'root'.*\$WRONG_PW"):
        OmeroSession(params).connect()


def test_missing_password_fails_before_any_server_call(omero_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMERO_PASSWORD")
    with pytest.raises(OmeroPasswordError, match="OMERO_PASSWORD"):
        OmeroSession(omero_server.params).connect()


def test_no_server_answers(omero_server) -> None:
    params = replace(omero_server.params, port=1)  # nothing listens there
    start = time.monotonic()
    with pytest.raises(OmeroUnavailableError, match="does not answer"):
        OmeroSession(params).connect()
    assert time.monotonic() - start < 10


def test_expired_session_is_renewed(omero_server) -> None:
    server = omero_server.server
    imported = omero_server.import_plate("s", 8, 12, random_fields(["A01"], 1, (1, 1, 1, 4, 4)))
    with OmeroSession(omero_server.params) as session:
        session.load_plate(imported.plate_id)
        server.expire_sessions()
        assert session.load_plate(imported.plate_id).plate_id == imported.plate_id
        assert session.renewals == 1


def test_writes_are_not_retried_after_a_lost_connection(omero_server) -> None:
    server = omero_server.server
    with OmeroSession(omero_server.params) as session:
        server.stop_after(0)
        with pytest.raises(OmeroUnavailableError, match="nothing half-written"):
            session.create_tagged_plate("x", "", 8, 12, [(0, 0)], "ns", "k")
    server.start()
    assert server.query("SELECT COUNT(*) FROM plate") == [(0,)]


def test_sessions_do_not_pickle(omero_server) -> None:
    with OmeroSession(omero_server.params) as session, pytest.raises(TypeError, match="pickle its params"):
        pickle.dumps(session)
