"""The sutro-local web console: the page every adapter's "Sutro job" link opens.

Served by sutro-local itself under /console (jobs list, job page with live progress, results
preview, downloads and cancel; Functions; models), fully offline: its CSS and JS are files of
this package. Sign-in is by API key once, then a signed session cookie.

Example:
    >>> # app = create_app(settings); mount_console(app)   # create_app already does this
    >>> console_url("http://127.0.0.1:8484")
    'http://127.0.0.1:8484/console/jobs'
"""

from __future__ import annotations

from typing import Any

from .layout import PREFIX


def console_url(server_url: str) -> str:
    """The console's start page for a server base URL."""
    return f"{server_url.rstrip('/')}{PREFIX}/jobs"


def mount_console(app: Any) -> None:
    """Add the console's routes to a sutro-local FastAPI app (at the root only, not under /v1)."""
    from .routes import router

    app.include_router(router)


__all__ = ["PREFIX", "console_url", "mount_console"]
