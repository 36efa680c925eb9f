"""The app's settings, read from OMERO.web's configuration (``omero config set omero.web.openhcs...``).

OMERO.web imports this module while it builds its own settings and processes ``CUSTOM_SETTINGS_MAPPINGS``:
each ``omero.web.*`` key becomes an attribute of this module (``OPENHCS_SERVER_URL``...). Values are kept as
text here and checked when the panel is served, so a wrong value is a message in the panel naming the
setting, not an OMERO.web that does not start.
"""

from __future__ import annotations

import sys

from omeroweb.settings import process_custom_settings, report_settings

#: the execution server's HTTP address as the *browser* reaches it (the page calls it directly)
SERVER_URL_KEY = "omero.web.openhcs.server_url"
#: the file holding the secret shared with ``openhcs-rules serve --signing-secret``
SECRET_FILE_KEY = "omero.web.openhcs.secret_file"
#: lifetime of the tokens the panel is given, in seconds (the page asks for a new one before it ends)
TOKEN_TTL_KEY = "omero.web.openhcs.token_ttl_s"


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


# key: [module attribute, default, mapping, description] (OMERO.web's format)
CUSTOM_SETTINGS_MAPPINGS = {
    SERVER_URL_KEY: [
        "OPENHCS_SERVER_URL",
        "",
        _text,
        "The execution server's HTTP API as the browser reaches it, e.g. https://hcs.example.org:7780 "
        "(the server must allow this OMERO.web's origin: openhcs-rules serve --http-cors-origin).",
    ],
    SECRET_FILE_KEY: [
        "OPENHCS_SECRET_FILE",
        "",
        _text,
        "The signing secret shared with `openhcs-rules serve --signing-secret FILE` (created by "
        "`openhcs-rules serve-secret FILE`), readable by OMERO.web's user and not by every user.",
    ],
    TOKEN_TTL_KEY: [
        "OPENHCS_TOKEN_TTL_S",
        "600",
        _text,
        "Lifetime in seconds of the tokens OMERO.web signs for the panel (at most 3600).",
    ],
}

process_custom_settings(sys.modules[__name__])
report_settings(sys.modules[__name__])
