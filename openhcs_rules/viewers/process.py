"""What every viewer process does at start: the same arguments, logging, and SIGTERM as a clean shutdown.

A viewer is started as ``python -m openhcs_rules.viewers.<kind>_viewer --port N`` by the instance
manager (or by hand); its output goes to a log file, so log lines carry time and level.
"""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Any

from openhcs_rules.messaging.addresses import DEFAULT_HOST


def viewer_arguments(
    kind: str,
    default_port: int,
    argv: Sequence[str] | None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """Parse the options every viewer takes (plus ``extra`` ones) and configure logging."""
    parser = argparse.ArgumentParser(prog=f"openhcs-rules {kind} viewer", description=f"the {kind} viewer process")
    parser.add_argument("--port", type=int, default=default_port, help="control port (data: port+1000)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind; beyond loopback needs --keys-dir")
    parser.add_argument("--keys-dir", help="CURVE keys folder (see `openhcs-rules viewer keys`)")
    parser.add_argument("--name", help="name reported in pong (default <kind>-<port>)")
    parser.add_argument("--xvfb", action="store_true", help="open a private Xvfb display (machines without one)")
    parser.add_argument("--max-frame-mib", type=_positive_mib, default=None, help="largest frame accepted (128)")
    parser.add_argument(
        "--max-queue-mib", type=_positive_mib, default=None, help="frames received but not yet shown (512)"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args


def _positive_mib(text: str) -> int:
    """A size option in MiB, as bytes."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be a positive number of MiB")
    return int(value * (1 << 20))


def memory_limits(args: argparse.Namespace) -> dict[str, int]:
    """The ViewerServer keyword arguments the size options ask for (defaults where none was given)."""
    limits = {"max_frame_bytes": args.max_frame_mib, "max_queued_bytes": args.max_queue_mib}
    return {name: value for name, value in limits.items() if value is not None}


def max_layers_option(default: int, what: str) -> Callable[[argparse.ArgumentParser], None]:
    """The ``--max-layers`` option of a GUI viewer (``extra`` for :func:`viewer_arguments`)."""

    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--max-layers", type=int, default=default, help=f"most {what} held at once ({default})")

    return add


def shutdown_on_sigterm(server: Any) -> None:
    """SIGTERM/SIGINT ask the viewer to stop like a ``shutdown`` request (sockets closed, Xvfb stopped)."""

    def handler(signum: int, frame: Any) -> None:
        server.shutdown_requested.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
