"""The ``openhcs-rules`` console script, one module per command group.

:mod:`~openhcs_rules.cli.app` assembles the parser (:func:`build_parser`) and runs it (:func:`main`);
each command module (``plates``, ``jobs``, ``demo``, ``pipelines``, ``omero``, ``viewers``) registers its
subcommands through its ``add_parsers(subparsers)`` and never imports the assembly, so the package has no
import cycle. The command modules import the code they run lazily, inside each command, so that
``openhcs-rules viewer ...`` loads neither OMERO nor the image formats.
"""

from openhcs_rules.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
