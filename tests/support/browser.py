"""Debian's Chromium, headless, through Playwright (never `playwright install`), for the tests that look at
a page: the console's and the Dagster UI's.

A missing browser skips those tests, unless SUTRO_REQUIRE_BROWSER=1 (CI), where it fails them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("SUTRO_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def no_browser(reason: str) -> None:
    """Skip (or, under SUTRO_REQUIRE_BROWSER=1, fail) a test that needs the browser."""
    if os.environ.get("SUTRO_REQUIRE_BROWSER") == "1":
        pytest.fail(f"SUTRO_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(f"{reason} (install it: apt-get install -y chromium; CI sets SUTRO_REQUIRE_BROWSER=1)")


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium browser; closed (with its driver) on exit.

    Not for a whole session: while the sync Playwright driver runs, its event loop counts as running in
    this thread, and later tests that call asyncio.run() would fail."""
    if not CHROMIUM.exists():
        no_browser(f"{CHROMIUM} is missing")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        no_browser("the playwright package is not installed (it is in the `test` extra)")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
    except Exception:
        pw.stop()
        raise
    try:
        yield browser
    finally:
        browser.close()
        pw.stop()
