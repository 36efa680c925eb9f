"""The panel and its token: the only requests that go through OMERO.web.

OMERO.web answers two short questions per plate: "show the panel" (an HTML fragment with the execution
server's address) and "give me a token" (JSON). Both first ask OMERO, through the logged-in user's own
connection, whether this user can read the plate (``conn.getObject``; 404 otherwise, whether the plate does
not exist or belongs to a group the user cannot see). The token names that user and only that plate, so the
execution server accepts submissions for plates OMERO said the user may read, and for nothing else.

Everything long-lived (listing runs every few seconds, a run's event stream) goes from the browser straight
to the execution server: OMERO.web's workers are few and synchronous, and one held by an open stream for a
whole run is one user fewer served.

OMERO.web's public user (``omero.web.public.*``) is never served (``allowPublic=False``): running screens
is for users who logged in.

A missing or wrong setting is answered with a message naming the setting (the panel: 200 with the message;
the token: 503 JSON), never a server error.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from omeroweb.decorators import login_required

from openhcs_rules.errors import ConfigError
from openhcs_rules.execution.signed_tokens import MAX_TTL_S, load_secret, omero_user, sign_token
from openhcs_rules_omeroweb import settings as app_settings

log = logging.getLogger(__name__)

#: the page's templates
PANEL_TEMPLATE = "openhcs_rules_omeroweb/plate_panel.html"
PAGE_TEMPLATE = "openhcs_rules_omeroweb/plate_page.html"


class NotConfigured(Exception):
    """A setting the panel needs is missing or unusable; ``setting`` is its ``omero config`` key."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting
        self.message = message


@dataclass(frozen=True)
class PanelSettings:
    """The app's settings, checked: the server's address (no trailing slash), the secret, the token lifetime."""

    server_url: str
    secret: bytes
    ttl_s: float


def plate_key(plate_id: int) -> str:
    """The name a plate has in a screen config the panel submits (and in a run's ``plates``)."""
    return f"omero_{int(plate_id)}"


def screen_config(plate_id: int) -> str:
    """The YAML screen config the panel starts from: this plate, read from the execution server's OMERO."""
    return f"plates:\n  {plate_key(plate_id)}:\n    source: omero\n    plate_id: {int(plate_id)}\n"


def check_server_url(value: str) -> str:
    """The execution server's address as given (``http(s)://host[:port][/prefix]``), without a trailing
    slash; NotConfigured for anything else (the page builds its API calls by appending ``/api/...``)."""
    setting = app_settings.SERVER_URL_KEY
    if not value:
        raise NotConfigured(
            setting,
            f"no execution server is configured: `omero config set {setting} https://HOST:7780` (its address as "
            "the browser reaches it)",
        )
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if (
        parts is None
        or not port_ok
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
        or any(char.isspace() or char in "\"'<>\\" for char in value)
    ):
        raise NotConfigured(
            setting, f"{setting} is {value!r}, not an http(s) address such as https://hcs.example.org:7780"
        )
    return value.rstrip("/")


def check_ttl(value: str) -> float:
    """The token lifetime in seconds: a number in (0, MAX_TTL_S]; NotConfigured otherwise."""
    setting = app_settings.TOKEN_TTL_KEY
    try:
        ttl = float(value)
    except (TypeError, ValueError):
        ttl = math.nan
    if not (0 < ttl <= MAX_TTL_S):
        raise NotConfigured(
            setting, f"{setting} is {value!r}: give a number of seconds above 0, at most {MAX_TTL_S:.0f}"
        )
    return ttl


def panel_settings() -> PanelSettings:
    """The checked settings; NotConfigured naming the first setting to set or fix."""
    server_url = check_server_url(str(getattr(app_settings, "OPENHCS_SERVER_URL", "") or "").strip())
    secret_file = str(getattr(app_settings, "OPENHCS_SECRET_FILE", "") or "").strip()
    setting = app_settings.SECRET_FILE_KEY
    if not secret_file:
        raise NotConfigured(
            setting,
            f"no signing secret is configured: `omero config set {setting} FILE`, the file the execution server "
            "reads with `openhcs-rules serve --signing-secret FILE`",
        )
    try:
        secret = load_secret(secret_file)
    except ConfigError as exc:
        raise NotConfigured(setting, f"{setting}: {exc}") from None
    ttl = check_ttl(str(getattr(app_settings, "OPENHCS_TOKEN_TTL_S", "600") or "").strip())
    return PanelSettings(server_url, secret, ttl)


def readable_plate(conn: Any, plate_id: int) -> Any:
    """The plate (a PlateWrapper) if this user's connection can read it; Http404 otherwise, the same for a
    plate that does not exist and one in a group the user cannot see (``login_required`` has set the
    connection's group to -1: every group the user belongs to)."""
    plate = conn.getObject("Plate", int(plate_id)) if plate_id > 0 else None
    if plate is None:
        raise Http404(f"no plate {plate_id} that you can read")
    return plate


def _user_name(conn: Any) -> str:
    return str(conn.getUser().getName())


def _panel_context(request: HttpRequest, conn: Any, plate_id: int) -> dict[str, Any]:
    plate = readable_plate(conn, plate_id)
    context: dict[str, Any] = {
        "plate_id": int(plate_id),
        "plate_name": plate.getName() or f"Plate {plate_id}",
        "plate_key": plate_key(plate_id),
        "config_text": screen_config(plate_id),
        "omero_user": _user_name(conn),
        "token_url": reverse("openhcs_plate_token", args=[int(plate_id)]),
        "page_url": reverse("openhcs_plate_page", args=[int(plate_id)]),
        "problem": None,
    }
    try:
        checked = panel_settings()
        omero_user(context["omero_user"])  # a name the server cannot take: say so here, not on every token
    except NotConfigured as exc:
        log.warning("OpenHCS panel not configured: %s", exc.message)
        context["problem"] = {"setting": exc.setting, "message": exc.message}
    except ConfigError as exc:
        context["problem"] = {"setting": None, "message": str(exc)}
    else:
        context["server_url"] = checked.server_url
        context["ttl_s"] = checked.ttl_s
    return context


@never_cache
@require_GET
@login_required(allowPublic=False)
def plate_panel(request: HttpRequest, plate_id: int, conn: Any = None, **kwargs: Any) -> HttpResponse:
    """The right-hand panel of a plate (an HTML fragment the webclient loads into its tab); 404 unless the
    user can read the plate."""
    return render(request, PANEL_TEMPLATE, _panel_context(request, conn, plate_id))


@never_cache
@require_GET
@login_required(allowPublic=False)
def plate_page(request: HttpRequest, plate_id: int, conn: Any = None, **kwargs: Any) -> HttpResponse:
    """The same panel as a page of its own."""
    return render(request, PAGE_TEMPLATE, _panel_context(request, conn, plate_id))


@never_cache
@require_GET
@login_required(allowPublic=False)
def plate_token(request: HttpRequest, plate_id: int, conn: Any = None, **kwargs: Any) -> JsonResponse:
    """A fresh token for this user and this plate: ``{token, expires, ttl_s, user, plates}`` (``expires`` in
    unix seconds); 404 unless the user can read the plate, 503 ``not_configured`` naming the setting, 403
    ``bad_user`` for an OMERO name the execution server cannot take.

    Sent only in this JSON body, never in an address: addresses end up in logs and histories. Not cached
    (``never_cache``). A GET is enough: another site can make a browser send it but cannot read the answer.
    """
    readable_plate(conn, plate_id)
    try:
        checked = panel_settings()
    except NotConfigured as exc:
        log.warning("OpenHCS panel not configured: %s", exc.message)
        return JsonResponse({"code": "not_configured", "setting": exc.setting, "error": exc.message}, status=503)
    try:
        user = omero_user(_user_name(conn))
    except ConfigError as exc:
        return JsonResponse({"code": "bad_user", "error": str(exc)}, status=403)
    now = time.time()
    token = sign_token(checked.secret, user, [int(plate_id)], checked.ttl_s, now=now)
    expires = int(now + checked.ttl_s)  # what sign_token wrote into the token
    return JsonResponse(
        {"token": token, "expires": expires, "ttl_s": checked.ttl_s, "user": user, "plates": [int(plate_id)]}
    )
