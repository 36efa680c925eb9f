"""OMERO errors a user sees: each names the server, the object and what to do."""

from __future__ import annotations

from openhcs_rules.errors import OpenHCSError


class OmeroError(OpenHCSError):
    """Base of every OMERO problem this package reports on purpose."""


class OmeroNotInstalledError(OmeroError):
    """omero-py (and its zeroc-ice) is not importable in this environment."""


class OmeroPasswordError(OmeroError):
    """No password could be read from the configured environment variable or file."""


class OmeroAuthError(OmeroError):
    """The server refused the user name or password."""


class OmeroUnavailableError(OmeroError):
    """The server did not answer (not started, wrong host/port, or gone mid-run)."""


class OmeroNotFoundError(OmeroError):
    """A plate, well or image id does not exist (or is not visible to this user)."""


class OmeroWriteError(OmeroError):
    """A result could not be written to OMERO; nothing half-written was left linked to the plate."""


class DockerUnavailableError(OmeroError):
    """The instance manager needs a Docker engine (with compose) to start a server and there is none."""
