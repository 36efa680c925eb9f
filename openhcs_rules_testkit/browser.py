"""Headless Chromium for the tests that look at pages: Debian's browser, driven by playwright.

No browser can be downloaded on the machines these tests run on, so playwright drives Debian's
``/usr/bin/chromium`` (``scripts/install_system_packages.sh`` installs it). Without it, or without the
playwright package, or when the browser does not start, the test is skipped with the reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
#: no sandbox (tests run as root), no GPU, nothing fetched in the background
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A started headless Chromium (a playwright ``Browser``), closed afterwards; skips the test without one."""
    if not CHROMIUM.exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="needs the playwright package (pip install playwright)"
    )
    playwright = sync_api.sync_playwright().start()
    try:
        try:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        except Exception as exc:  # noqa: BLE001 - a browser that cannot start is a reason to skip, said why
            pytest.skip(f"chromium at {CHROMIUM} does not start under playwright: {exc}")
        yield browser
        browser.close()
    finally:
        playwright.stop()
