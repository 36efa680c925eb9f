"""Test-only stand-in for an OMERO server, reached through a BlitzGateway-compatible class.

No OMERO server can run on the machines these tests run on, so this package implements exactly the part of
the omero-py API that ``openhcs_rules.omero.adapter`` calls, following OMERO's documented semantics:
0-based rows/columns and Z/C/T, WellSamples linking Images to Wells, FileAnnotations linked through
``<Type>AnnotationLink`` objects, big-endian pixel bytes from RawPixelsStore, sessions that expire
(``Ice.ObjectNotExistException`` afterwards), wrong passwords (``connect()`` returns False,
``getLastError()`` is ``Glacier2.PermissionDeniedException``) and a server that goes away
(``Ice.ConnectionLostException`` / ``Ice.ConnectionRefusedException``). Arguments and return values are
real ``omero.model`` / ``omero.rtypes`` objects; queries other than those in
``openhcs_rules.omero.queries`` raise ``omero.QueryException``.

State lives in a SQLite file plus a data folder laid out like OMERO's binary repository
(``ManagedRepository/`` for imported files, ``Pixels/`` for images created through the API), so several
processes (concurrent well jobs, Snakemake jobs) share one "server".

Why it lives in ``openhcs_rules_testkit`` (at the repository root, next to ``openhcs_rules/``): the tests and
``bench/omero_read.py`` both use it, and it is not part of the installed package (pyproject.toml's package
list includes only ``openhcs_rules``), so no user configuration can reach it; the package only honours
``OPENHCS_RULES_OMERO_GATEWAY`` (set by the tests, pointing at :data:`GATEWAY_SPEC`) to pick a gateway class,
and never imports this package (an import-linter contract). Separate processes (Snakemake jobs, spawned
workers) find it through the repository root on ``PYTHONPATH``.
"""

from openhcs_rules_testkit.omero_standin.server import GATEWAY_SPEC, ROOT_ENV, StandInServer

__all__ = ["GATEWAY_SPEC", "ROOT_ENV", "StandInServer"]
