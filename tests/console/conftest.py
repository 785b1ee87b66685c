"""Fixtures of the console tests: a real Chromium (Debian's, driven by Playwright), the artifacts
folder for screenshots, and sign-in helpers.

The browser tests skip when /usr/bin/chromium is missing, unless SUTRO_REQUIRE_BROWSER=1 (CI),
where a missing browser fails them. Nothing here ever downloads a browser build.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.browser import chromium

ARTIFACTS = Path(__file__).resolve().parents[1] / ".artifacts" / "console"
@pytest.fixture(scope="session")
def artifacts() -> Path:
    """tests/.artifacts/console/: the screenshots of this run (ignored by git)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {ARTIFACTS}")
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium (tests/support/browser.py); module scope, see there why not session."""
    with chromium() as b:
        yield b


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser profile (no cookies) per test, failing any request that leaves the server."""
    ctx = browser.new_context(viewport={"width": 1360, "height": 860}, device_scale_factor=1)
    external: list[str] = []

    def _route(route: Any) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1", "http://localhost")):
            route.continue_()
        else:  # the console must work offline: no CDN, no font service
            external.append(url)
            route.abort()

    ctx.route("**/*", _route)
    # CSP violations and script errors show up as console errors: the pages must have none
    # (deliberate 4xx answers, e.g. a wrong key, log "Failed to load resource": those are fine)
    errors: list[str] = []
    ctx.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    ctx.on("weberror", lambda err: errors.append(str(err.error)))
    yield ctx
    ctx.close()
    assert not external, f"the console requested external URLs: {external}"
    assert not errors, f"browser console errors: {errors}"


def sign_in(page: Any, api_key: str) -> None:
    """Fill in and send the sign-in form the page shows."""
    page.fill("#api_key", api_key)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def submit(server_url: str, key: str, **body: Any) -> str:
    """Submit a job through the API and return its id."""
    r = httpx.post(
        f"{server_url}/batch-inference", json=body, headers={"Authorization": f"Key {key}"}, timeout=60
    )
    assert r.status_code == 200, r.text
    return r.json()["results"]


def wait_status(
    server_url: str, key: str, job_id: str, statuses: tuple[str, ...], timeout: float = 60
) -> str:
    """Poll the API until the job is in one of `statuses`."""
    import time

    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        r = httpx.get(f"{server_url}/jobs/{job_id}", headers={"Authorization": f"Key {key}"}, timeout=30)
        status = r.json()["job"]["status"]
        if status in statuses:
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {status} after {timeout}s (wanted {statuses})")
