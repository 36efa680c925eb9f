"""``openhcs-rules status [--watch]``: per plate, the wells done, failed and left of a running or finished screen.

Run it where Snakemake runs (or give ``--directory``), with the screen's config (``--config``, default the
demo's ``config/config.yaml``, as Snakemake's): it reads the results folder the jobs write, never the
Snakemake process, so it also answers for a run on a cluster or one that ended (see
:mod:`openhcs_rules.jobs.screen_status`). Exit code: 0 when every well is done, 1 when some failed, 2 while
wells are left (and for a config that is not valid), so scripts can wait on it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

EXIT_DONE, EXIT_FAILED, EXIT_UNFINISHED = 0, 1, 2


def _statuses(args: argparse.Namespace) -> list[Any]:
    from openhcs_rules.config.validate import read_screen_yaml, validate_screen_config
    from openhcs_rules.jobs.screen_status import screen_status

    workdir = Path(args.directory).expanduser().resolve()
    config = Path(args.config).expanduser()
    screen = validate_screen_config(read_screen_yaml(config if config.is_absolute() else workdir / config))
    return screen_status(screen, workdir)


def _table(statuses: list[Any]) -> Any:
    from rich.table import Table

    from openhcs_rules.jobs.screen_status import format_eta

    table = Table(title="screen status", title_justify="left")
    for column in ("plate", "wells", "done", "failed", "running", "left", "time left"):
        table.add_column(column, justify="left" if column == "plate" else "right")
    for status in statuses:
        if not status.discovered:
            table.add_row(status.plate, "not discovered yet", "", "", "", "", "")
            continue
        failed = f"[red]{status.failed}[/red]" if status.failed else "0"
        eta = "done" if status.left == status.running == 0 else format_eta(status.eta_s)
        row = [status.plate, str(status.wells), str(status.done), failed, str(status.running), str(status.left), eta]
        table.add_row(*row)
    return table


def _outcome(statuses: list[Any]) -> int:
    from openhcs_rules.jobs.screen_status import finished

    if not finished(statuses):
        return EXIT_UNFINISHED
    return EXIT_FAILED if any(status.failed for status in statuses) else EXIT_DONE


def _cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    statuses = _statuses(args)
    if args.json:
        print(json.dumps([status.to_dict() for status in statuses], indent=1, sort_keys=True))
        return _outcome(statuses)
    if args.watch:
        with Live(_table(statuses), console=console, refresh_per_second=2) as live:
            try:
                while _outcome(statuses) == EXIT_UNFINISHED:
                    time.sleep(args.every)
                    statuses = _statuses(args)
                    live.update(_table(statuses))
            except KeyboardInterrupt:
                pass
    else:
        console.print(_table(statuses))
    for status in statuses:
        for well, reason in sorted(status.failures.items()):
            console.print(f"[red]{status.plate} {well} failed[/red]: {reason}", highlight=False)
    return _outcome(statuses)


def add_parsers(sub: Any) -> None:
    """Register ``status``."""
    p = sub.add_parser("status", help="per plate: wells done, failed and left, and the time left, of a screen")
    p.add_argument("--config", default="config/config.yaml", help="the screen's config (as given to Snakemake)")
    p.add_argument("--directory", default=".", help="where Snakemake runs (its --directory)")
    p.add_argument("--watch", action="store_true", help="refresh until no well is left (Ctrl-C stops)")
    p.add_argument("--every", type=float, default=2.0, help="--watch: seconds between refreshes")
    p.add_argument("--json", action="store_true", help="print JSON (one object per plate) instead of a table")
    p.set_defaults(func=_cmd_status)
