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

Why it lives under ``tests/``: it is not part of the installed package, so no user configuration can reach
it; the package only honours ``OPENHCS_RULES_OMERO_GATEWAY`` (set by these tests) to pick a gateway class.
"""

from omero_standin.server import GATEWAY_SPEC, ROOT_ENV, StandInServer

__all__ = ["GATEWAY_SPEC", "ROOT_ENV", "StandInServer"]
