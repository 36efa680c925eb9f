"""The ``openhcs-rules`` console script, one module per command group.

:mod:`~openhcs_rules.cli.app` assembles the parser (:func:`build_parser`) and runs it (:func:`main`);
each command module (``plates``, ``jobs``, ``demo``, ``pipelines``, ``status``, ``omero``, ``viewers``,
``execution``) registers its subcommands through its ``add_parsers(subparsers)`` and never imports the
assembly, so the package has no import cycle. A run imports only the module of the command it runs
(``app.COMMANDS``), and the command modules import the code they run lazily, inside each command: a well
job's process loads neither the other commands nor what their arguments need, and ``openhcs-rules viewer
...`` loads neither OMERO nor the image formats.
"""

from openhcs_rules.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
