"""Instance manager: check -> connect -> start, the shipped compose file, and no-Docker errors."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from openhcs_rules.omero.errors import DockerUnavailableError, OmeroAuthError, OmeroUnavailableError
from openhcs_rules.omero.instance import COMPOSE_FILE, OmeroInstanceManager
from openhcs_rules.omero.params import OmeroParams
from openhcs_rules_testkit.paths import REPO

pytest_plugins = ["openhcs_rules_testkit.omero_standin.fixtures"]


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A real TCP listener, so the manager's port check sees 'something answers' (the stand-in's port)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def _fake_docker(folder: Path, engine: bool) -> Path:
    """A docker CLI that records its arguments; ``engine`` says whether ``docker info`` succeeds."""
    log = folder / "docker.log"
    script = folder / "docker"
    info = "echo 27.0.0" if engine else "echo Cannot connect to the Docker daemon >&2; exit 1"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\nif [ "$1" = info ]; then {info}; fi\nexit 0\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_check_connect_without_starting_when_the_server_runs(omero_server, listening_port: int, tmp_path) -> None:
    omero_server.require_standin("the stand-in answers on the listener's port")
    server = omero_server.server
    db = server.db()
    db.execute("UPDATE meta SET value = ? WHERE key = 'port'", (str(listening_port),))
    db.close()
    params = replace(omero_server.params, port=listening_port)
    manager = OmeroInstanceManager(params, docker=str(_fake_docker(tmp_path, engine=True)))
    state = manager.check()
    assert state.reachable and state.login, state.describe()
    with manager as session:
        assert session.connected
    assert not (tmp_path / "docker.log").exists()  # never tried to start anything


def test_reachable_but_wrong_password_is_reported_not_restarted(omero_server, listening_port, tmp_path, monkeypatch):
    omero_server.require_standin("the stand-in answers on the listener's port")
    db = omero_server.server.db()
    db.execute("UPDATE meta SET value = ? WHERE key = 'port'", (str(listening_port),))
    db.close()
    monkeypatch.setenv("OMERO_PASSWORD", "wrong")
    manager = OmeroInstanceManager(
        replace(omero_server.params, port=listening_port), docker=str(_fake_docker(tmp_path, True))
    )
    assert not manager.check().login
    with pytest.raises(OmeroAuthError):
        manager.ensure_running(timeout=1)
    assert not (tmp_path / "docker.log").exists()


def test_no_docker_at_all_is_a_clear_error(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMERO_PASSWORD", "x")
    manager = OmeroInstanceManager(OmeroParams(port=1), docker=str(tmp_path / "no-such-docker"))
    with pytest.raises(DockerUnavailableError, match="no Docker"):
        manager.ensure_running(timeout=1)


def test_docker_cli_without_engine_is_a_clear_error(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMERO_PASSWORD", "x")
    manager = OmeroInstanceManager(OmeroParams(port=1), docker=str(_fake_docker(tmp_path, engine=False)))
    with pytest.raises(DockerUnavailableError, match="no Docker engine answers"):
        manager.start()


def test_start_runs_compose_with_the_shipped_file(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMERO_PASSWORD", "x")
    docker = _fake_docker(tmp_path, engine=True)
    params = OmeroParams(port=1, data_dir=str(tmp_path / "OMERO"))
    OmeroInstanceManager(params, docker=str(docker)).start()
    calls = (tmp_path / "docker.log").read_text().splitlines()
    assert calls[-1] == f"compose -f {COMPOSE_FILE} -p openhcs-omero up -d"
    assert (tmp_path / "OMERO").is_dir()


def test_never_starts_a_server_for_a_remote_host(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMERO_PASSWORD", "x")
    manager = OmeroInstanceManager(OmeroParams(host="omero.invalid", port=1), docker=str(_fake_docker(tmp_path, True)))
    with pytest.raises(OmeroUnavailableError, match="not on this machine"):
        manager.start()


def test_real_environment_without_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """On this machine (docker CLI maybe, no daemon) start must say so rather than hang or crash."""
    monkeypatch.setenv("OMERO_PASSWORD", "x")
    if os.path.exists("/var/run/docker.sock"):
        pytest.skip("a Docker engine is present here")
    with pytest.raises(DockerUnavailableError, match="Docker"):
        OmeroInstanceManager(OmeroParams(port=1)).start()


def test_compose_file_runs_postgres_omero_server_and_web() -> None:
    spec = yaml.safe_load(COMPOSE_FILE.read_text())
    services = spec["services"]
    assert services["database"]["image"].startswith("postgres:")
    assert services["omeroserver"]["image"].startswith("openmicroscopy/omero-server:")
    assert services["omeroweb"]["image"].startswith("openmicroscopy/omero-web-standalone:")
    assert "${OMERO_PASSWORD:?" in services["omeroserver"]["environment"]["ROOTPASS"]  # never a literal password
    assert any(v.endswith(":/OMERO") for v in services["omeroserver"]["volumes"])
    deploy = REPO / "deploy" / "omero" / "docker-compose.yml"
    assert deploy.resolve() == COMPOSE_FILE.resolve()
