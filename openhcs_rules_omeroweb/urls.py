"""The app's routes, below ``/openhcs/`` (OMERO.web includes them under the app's label)."""

from __future__ import annotations

from django.urls import path

from openhcs_rules_omeroweb import views

urlpatterns = [
    # the panel on its own page (a link from the panel; more room than the right-hand column)
    path("plate/<int:plate_id>/", views.plate_page, name="openhcs_plate_page"),
    # the right-hand panel's content, loaded into the webclient when a plate is selected
    path("plate/<int:plate_id>/panel/", views.plate_panel, name="openhcs_plate_panel"),
    # a fresh signed token for that plate (JSON), fetched by the panel's script
    path("plate/<int:plate_id>/token/", views.plate_token, name="openhcs_plate_token"),
]
