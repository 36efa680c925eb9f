"""Connection parameters: what a worker needs to reconnect, never the password or a live connection.

Why a separate, frozen, picklable object: Snakemake runs every well in its own process (often on another
node), and a live omero-py connection cannot cross a process boundary. Jobs therefore carry these
parameters (in ``plate.json`` or pickled) and reconnect. The password is resolved at connect time from an
environment variable or a file, so it never lands in ``plate.json``, a pickle, a log line or the config.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from openhcs_rules.omero.errors import OmeroPasswordError

DEFAULT_PORT = 4064
DEFAULT_PASSWORD_ENV = "OMERO_PASSWORD"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class OmeroParams:
    """Where the server is and how to log in. Holds the *name* of the password source, never the password."""

    host: str = "localhost"
    port: int = DEFAULT_PORT
    user: str = "root"
    password_env: str | None = DEFAULT_PASSWORD_ENV
    password_file: str | None = None
    data_dir: str | None = None
    secure: bool = True
    group: str | None = None

    def password(self) -> str:
        """Read the password now (file first, then the environment variable); a clear error if neither has one."""
        if self.password_file:
            path = Path(self.password_file).expanduser()
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise OmeroPasswordError(f"cannot read the OMERO password file {path}: {exc.strerror}") from exc
            if not value:
                raise OmeroPasswordError(f"the OMERO password file {path} is empty")
            return value
        if self.password_env:
            value = os.environ.get(self.password_env, "")
            if value:
                return value
            raise OmeroPasswordError(
                f"no OMERO password: set the environment variable {self.password_env} (or give "
                "omero.password_file) for user "
                f"{self.user}@{self.host}:{self.port}"
            )
        raise OmeroPasswordError("no OMERO password source: set omero.password_env or omero.password_file")

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OmeroParams:
        """Build from a config block or a ``plate.json`` entry; a ``password`` key is refused, not ignored."""
        if "password" in data:
            raise OmeroPasswordError(
                "the OMERO password must not be written in the config: put it in an environment variable "
                "(omero.password_env, default OMERO_PASSWORD) or a file (omero.password_file)"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown OMERO connection keys {unknown}; known: {sorted(known)}")
        values = {k: v for k, v in data.items() if not (v is None and k in ("host", "port", "user", "secure"))}
        if "port" in values:
            values["port"] = int(values["port"])
        return cls(**values)

    # -- URL form: omero://user@host:port/plate/42?data_dir=/OMERO ---------------------------------------
    def plate_url(self, plate_id: int) -> str:
        """The plate's URL (the format handler's 'root'); carries every parameter except the password."""
        query = {
            key: value
            for key, value in (
                ("password_env", self.password_env or ""),
                ("password_file", self.password_file),
                ("data_dir", self.data_dir),
                ("secure", "1" if self.secure else "0"),
                ("group", self.group),
            )
            if value is not None
        }
        return f"omero://{quote(self.user)}@{self.host}:{self.port}/plate/{int(plate_id)}?{urlencode(query)}"


def parse_plate_url(url: str) -> tuple[OmeroParams, int]:
    """Inverse of :meth:`OmeroParams.plate_url`; also accepts the ``omero:/`` form ``pathlib`` leaves behind."""
    text = str(url)
    if text.startswith("omero:/") and not text.startswith("omero://"):
        text = "omero://" + text[len("omero:/") :]
    parts = urlsplit(text)
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme != "omero" or len(segments) != 2 or segments[0] != "plate" or not segments[1].isdigit():
        raise ValueError(f"{url!r} is not an OMERO plate URL like omero://user@host:4064/plate/42")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    if "password" in query:
        raise OmeroPasswordError("an OMERO URL must not carry a password; use password_env or password_file")
    params = OmeroParams(
        host=parts.hostname or "localhost",
        port=parts.port or DEFAULT_PORT,
        user=unquote(parts.username) if parts.username else "root",
        password_env=query.get("password_env", DEFAULT_PASSWORD_ENV) or None,
        password_file=query.get("password_file") or None,
        data_dir=query.get("data_dir") or None,
        secure=query.get("secure", "1").lower() in _TRUE,
        group=query.get("group") or None,
    )
    return params, int(segments[1])


def plate_url_from_config(omero_config: dict[str, Any] | None, plate_id: int) -> str:
    """What the workflow passes as a ``source: omero`` plate's path: the top-level ``omero`` block + plate id."""
    return OmeroParams.from_dict(dict(omero_config or {})).plate_url(plate_id)


def virtual_root(plate_id: int) -> str:
    """The virtual folder of a plate's planes: ``/omero/plate_<id>`` (never exists on disk)."""
    return f"/omero/plate_{int(plate_id)}"
