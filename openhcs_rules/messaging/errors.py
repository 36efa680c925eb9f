"""Errors of the ZMQ layer and the viewer services built on it.

They derive from :class:`~openhcs_rules.errors.OpenHCSError` so the CLI prints them as one clear line:
each says which address was involved and what to do next.
"""

from __future__ import annotations

from openhcs_rules.errors import OpenHCSError


class MessageError(OpenHCSError):
    """A message is not valid JSON of this schema version, or a field has the wrong name, type or value."""

    #: the ``code`` of the error reply, when it should say more than the channel's generic one
    code: str | None = None


class LimitError(MessageError):
    """A valid message asks for more than a server's bound (frame size, layers): refused, with the limit."""

    code = "too_large"


class QueueFullError(LimitError):
    """A viewer already holds its limit of frames it has not shown yet: the sender should slow down."""

    code = "queue_full"


class TooManyLayersError(LimitError):
    """A frame would open a layer (or hyperstack) past the viewer's limit; ``clear`` frees them."""

    code = "too_many_layers"


class ServerError(OpenHCSError):
    """A server answered a request with an error reply (the message carries the server's reason)."""


class ServerNotResponding(OpenHCSError):
    """Nothing answered a ping in time: no server on that port, or the host is unreachable."""


class AuthenticationError(OpenHCSError):
    """The server refused this client's CURVE handshake (wrong or missing keys)."""


class PortInUseError(OpenHCSError):
    """A port is held by something that does not answer as our server; it is reported, never killed."""


class ServerStartError(OpenHCSError):
    """A server process was started but exited or never answered ping before the timeout."""


class InsecureBindError(OpenHCSError):
    """A server was asked to listen beyond loopback without CURVE keys."""
