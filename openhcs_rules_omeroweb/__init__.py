"""OMERO.web app: an "OpenHCS" panel on a plate that submits pipelines to the execution server and follows
its runs.

A thin app: OMERO.web checks that the logged-in user can read the plate, and signs a short-lived token
(:mod:`openhcs_rules.execution.signed_tokens`) naming that user and that plate; everything else happens in
the browser, which talks to the execution server directly (the server's event stream is held open for a
whole run, and must not hold one of OMERO.web's few workers). Installed with ``pip install
'openhcs-rules[omeroweb]'`` and enabled with ``omero config append omero.web.apps`` (see README.md here).
"""
