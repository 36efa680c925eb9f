"""Instance manager: check -> connect -> start, for an OMERO server the workflow needs.

- check: is the port answering, and does a login work? (no side effects)
- connect: log in when the server answers.
- start: only when nothing answers, and only for a server on this machine: ``docker compose up`` with the
  compose file shipped in ``openhcs_rules/omero/compose/`` (PostgreSQL + OMERO.server + OMERO.web), then
  wait until a login works. Without a Docker engine the error says so and what to do instead.
A port that answers but refuses logins is reported, never "fixed" by starting a second server.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from openhcs_rules.omero.adapter import OmeroSession
from openhcs_rules.omero.errors import DockerUnavailableError, OmeroAuthError, OmeroError, OmeroUnavailableError
from openhcs_rules.omero.params import OmeroParams

log = logging.getLogger(__name__)

COMPOSE_FILE = Path(__file__).with_name("compose") / "docker-compose.yml"
PROJECT = "openhcs-omero"
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", socket.gethostname()}


@dataclass(frozen=True)
class InstanceState:
    host: str
    port: int
    reachable: bool  # something accepts TCP connections on host:port
    login: bool | None  # None: not tried (unreachable)
    detail: str

    def describe(self) -> str:
        if not self.reachable:
            return f"OMERO {self.host}:{self.port}: nothing answers ({self.detail})"
        if self.login:
            return f"OMERO {self.host}:{self.port}: up, login works"
        return f"OMERO {self.host}:{self.port}: answers, but {self.detail}"


def port_open(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class OmeroInstanceManager:
    """Find, connect to, or start the configured OMERO server. As a context manager it yields a session."""

    def __init__(
        self,
        params: OmeroParams,
        compose_file: Path | None = None,
        project: str = PROJECT,
        docker: str = "docker",
    ) -> None:
        self.params = params
        self.compose_file = compose_file or COMPOSE_FILE
        self.project = project
        self.docker = docker
        self.session: OmeroSession | None = None

    # -- check -------------------------------------------------------------------------------------------
    def check(self) -> InstanceState:
        p = self.params
        if not port_open(p.host, p.port):
            return InstanceState(p.host, p.port, False, None, "connection refused or timed out")
        try:
            with OmeroSession(p):
                pass
        except OmeroAuthError as exc:
            return InstanceState(p.host, p.port, True, False, str(exc))
        except OmeroError as exc:
            return InstanceState(p.host, p.port, True, False, f"login failed: {exc}")
        return InstanceState(p.host, p.port, True, True, "")

    # -- connect -----------------------------------------------------------------------------------------
    def connect(self) -> OmeroSession:
        if self.session is None or not self.session.connected:
            session = OmeroSession(self.params)
            session.connect()
            self.session = session
        return self.session

    # -- start / stop ------------------------------------------------------------------------------------
    def _compose(self) -> list[str]:
        """The compose command, or DockerUnavailableError saying what is missing."""
        docker = shutil.which(self.docker)
        if docker is None:
            raise DockerUnavailableError(
                f"cannot start an OMERO server here: no Docker ({self.docker!r} is not on PATH). Install Docker "
                f"with the compose plugin, or start OMERO elsewhere and set omero.host/omero.port "
                f"(compose file: {self.compose_file})"
            )
        info = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
        if info.returncode != 0:
            reason = (info.stderr or info.stdout).strip().splitlines()[-1:] or ["no answer"]
            raise DockerUnavailableError(
                f"cannot start an OMERO server here: the docker CLI exists but no Docker engine answers "
                f"({reason[0]}). Start the Docker daemon, or run OMERO elsewhere and set omero.host/omero.port"
            )
        compose = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
        if compose.returncode == 0:
            return [docker, "compose"]
        legacy = shutil.which("docker-compose")
        if legacy:
            return [legacy]
        raise DockerUnavailableError("the Docker engine answers but neither `docker compose` nor docker-compose exists")

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OMERO_PASSWORD"] = self.params.password()
        env.setdefault("OMERO_PORT", str(self.params.port))
        if self.params.data_dir:
            Path(self.params.data_dir).mkdir(parents=True, exist_ok=True)
            env["OMERO_DATA_DIR"] = str(Path(self.params.data_dir).resolve())
        return env

    def start(self) -> None:
        """``docker compose up -d`` for a server on this machine (never for a remote host)."""
        if self.params.host not in _LOCAL_HOSTS:
            raise OmeroUnavailableError(
                f"OMERO {self.params.host}:{self.params.port} does not answer and is not on this machine: "
                "start it there (the compose file is openhcs_rules/omero/compose/docker-compose.yml)"
            )
        command = [*self._compose(), "-f", str(self.compose_file), "-p", self.project, "up", "-d"]
        log.info("starting OMERO: %s", " ".join(command))
        proc = subprocess.run(command, env=self._environment(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise OmeroUnavailableError(f"`{' '.join(command)}` failed:\n{(proc.stderr or proc.stdout)[-2000:]}")

    def stop(self) -> None:
        command = [*self._compose(), "-f", str(self.compose_file), "-p", self.project, "down"]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            raise OmeroError(f"`{' '.join(command)}` failed:\n{(proc.stderr or proc.stdout)[-2000:]}")

    def wait_until_ready(self, timeout: float = 600.0, interval: float = 5.0) -> OmeroSession:
        """Poll until a login works (a fresh OMERO takes minutes to initialise its database)."""
        deadline = time.monotonic() + timeout
        last = "not tried"
        while True:
            try:
                return self.connect()
            except OmeroAuthError:
                raise
            except OmeroUnavailableError as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise OmeroUnavailableError(f"OMERO did not accept logins within {timeout:.0f} s: {last}")
            time.sleep(interval)

    def ensure_running(self, timeout: float = 600.0) -> OmeroSession:
        """check -> connect -> start: use a running server, start one only when nothing answers."""
        state = self.check()
        if state.reachable and state.login:
            return self.connect()
        if state.reachable:
            try:  # raises the precise error (wrong password, not an OMERO server...) for the user
                return self.connect()
            except OmeroAuthError:
                raise
            except OmeroError as exc:
                raise OmeroUnavailableError(
                    f"{state.describe()}; something holds the port but does not accept logins: not starting a "
                    f"second server ({exc})"
                ) from exc
        self.start()
        return self.wait_until_ready(timeout)

    def __enter__(self) -> OmeroSession:
        return self.ensure_running()

    def __exit__(self, *exc: object) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
