"""A private X display (Xvfb) for viewers on machines without one: CI, cluster login nodes, containers.

Qt's offscreen platform has no OpenGL here, so napari needs a real X server; Xvfb with Mesa's llvmpipe
gives it one. Xvfb picks a free display number itself (``-displayfd``), so several viewers can start at
once without racing for ``:99``, and it is tied to its parent: it exits when the viewer does, even on
SIGKILL (Linux parent-death signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import signal
import subprocess
import sys

DEFAULT_SCREEN = "1280x1024x24"


def has_display() -> bool:
    """Whether this process can open windows (an X or Wayland display is set)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class VirtualDisplay:
    """An Xvfb server owned by this process; use as a context manager or start()/stop()."""

    def __init__(self, screen: str = DEFAULT_SCREEN, timeout_s: float = 10.0) -> None:
        self.screen = screen
        self.timeout_s = timeout_s
        self.display: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._read_fd = -1

    def start(self) -> str:
        """Start Xvfb and return its display name (``":N"``)."""
        binary = shutil.which("Xvfb")
        if binary is None:
            raise RuntimeError("Xvfb is not installed: `apt-get install xvfb` (or run the viewer on a desktop)")
        read_fd, write_fd = os.pipe()
        try:
            self.process = subprocess.Popen(
                [binary, "-displayfd", str(write_fd), "-screen", "0", self.screen, "-nolisten", "tcp", "-noreset"],
                pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,  # the viewer is still single-threaded here
            )
            os.close(write_fd)
            write_fd = -1
            ready, _, _ = select.select([read_fd], [], [], self.timeout_s)
            number = os.read(read_fd, 32).decode().strip() if ready else ""
        finally:
            # the read end stays open while Xvfb runs: closing it lets a later write kill Xvfb (SIGPIPE)
            self._read_fd = read_fd
            if write_fd >= 0:
                os.close(write_fd)
        if not number.isdigit():
            self.stop()
            raise RuntimeError(f"Xvfb did not report a display within {self.timeout_s:.0f} s")
        self.display = f":{number}"
        return self.display

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
        if self._read_fd >= 0:
            os.close(self._read_fd)
            self._read_fd = -1

    def __enter__(self) -> VirtualDisplay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ensure_display(use_xvfb: bool) -> VirtualDisplay | None:
    """Start a private Xvfb and export DISPLAY when asked to; None when the existing display is used."""
    if not use_xvfb:
        return None
    display = VirtualDisplay()
    os.environ["DISPLAY"] = display.start()
    os.environ.pop("WAYLAND_DISPLAY", None)
    return display
