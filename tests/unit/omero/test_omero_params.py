"""Connection parameters: picklable, never holding the password; URL round trip; password sources."""

from __future__ import annotations

import pickle

import pytest

from openhcs_rules.omero.errors import OmeroPasswordError
from openhcs_rules.omero.params import OmeroParams, parse_plate_url, plate_url_from_config, virtual_root


def test_password_from_env_is_read_at_use_and_never_pickled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_OMERO_PW", "hunter2-secret")
    params = OmeroParams(host="omero.example.org", password_env="MY_OMERO_PW", data_dir="/OMERO")
    assert params.password() == "hunter2-secret"
    blob = pickle.dumps(params)
    assert b"hunter2-secret" not in blob
    assert pickle.loads(blob) == params
    assert "hunter2-secret" not in params.plate_url(7)


def test_password_file_wins_over_env(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    monkeypatch.setenv("OMERO_PASSWORD", "from-env")
    assert OmeroParams(password_file=str(secret)).password() == "from-file"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"password_env": "OPENHCS_TEST_UNSET_PW"}, "OPENHCS_TEST_UNSET_PW"),
        ({"password_env": None, "password_file": "/nonexistent/pw"}, "cannot read"),
        ({"password_env": None}, "no OMERO password source"),
    ],
)
def test_missing_password_is_a_clear_error(kwargs, message, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENHCS_TEST_UNSET_PW", raising=False)
    with pytest.raises(OmeroPasswordError, match=message):
        OmeroParams(**kwargs).password()


def test_empty_password_file_is_refused(tmp_path) -> None:
    (tmp_path / "pw").write_text("  \n")
    with pytest.raises(OmeroPasswordError, match="empty"):
        OmeroParams(password_env=None, password_file=str(tmp_path / "pw")).password()


def test_config_with_a_password_is_refused() -> None:
    with pytest.raises(OmeroPasswordError, match="must not be written in the config"):
        OmeroParams.from_dict({"host": "h", "password": "oops"})


def test_url_round_trip_including_the_form_pathlib_leaves() -> None:
    params = OmeroParams(
        host="omero.lab", port=4064, user="ana", password_env="PW", data_dir="/data/OMERO", secure=False
    )
    url = params.plate_url(42)
    assert url.startswith("omero://ana@omero.lab:4064/plate/42?")
    assert parse_plate_url(url) == (params, 42)
    mangled = url.replace("omero://", "omero:/")  # what str(Path(url)) gives
    assert parse_plate_url(mangled) == (params, 42)


@pytest.mark.parametrize(
    "bad", ["omero://h/plate/x", "omero://h/image/3", "http://h/plate/3", "omero://h/plate/3?password=x"]
)
def test_bad_urls_are_refused(bad: str) -> None:
    with pytest.raises((ValueError, OmeroPasswordError)):
        parse_plate_url(bad)


def test_from_config_block_with_schema_defaults() -> None:
    url = plate_url_from_config({"host": "srv", "port": None, "user": None, "password_env": "X", "data_dir": None}, 5)
    params, plate_id = parse_plate_url(url)
    assert (params.host, params.port, params.user, params.password_env, plate_id) == ("srv", 4064, "root", "X", 5)
    assert virtual_root(5) == "/omero/plate_5"
    with pytest.raises(ValueError, match="unknown OMERO connection keys"):
        OmeroParams.from_dict({"hots": "typo"})
