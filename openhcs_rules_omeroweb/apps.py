"""The Django app's configuration (OMERO.web adds it to ``INSTALLED_APPS`` from ``omero.web.apps``)."""

from __future__ import annotations

from django.apps import AppConfig


class OpenHCSConfig(AppConfig):
    """``openhcs_rules_omeroweb``, served by OMERO.web under ``/openhcs/`` (its label)."""

    name = "openhcs_rules_omeroweb"
    label = "openhcs"
    verbose_name = "OpenHCS execution panel"
