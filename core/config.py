"""Where the client finds its API key and URL.

Order: explicit arguments, then ``SUTRO_API_KEY`` / ``SUTRO_API_URL``, then ``~/.sutro/config.json``
(the official SDK's file), then the hosted URL.

A deployment serves its API under ``/v1`` (the official SDK normalises every URL to
``<origin>/v1``), so a bare origin gets ``/v1`` appended; a URL that already has a path is kept.

Example:
    >>> resolve_settings(api_key="sk-...", api_url="https://api.sutro.sh").api_url
    'https://api.sutro.sh/v1'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import InputValidationError

DEFAULT_API_URL = "https://api.sutro.sh"
CONFIG_FILE = Path("~/.sutro/config.json")


@dataclass(frozen=True)
class Settings:
    """Resolved connection settings."""

    api_key: str | None
    api_url: str


def _config_file_values() -> dict[str, str]:
    path = CONFIG_FILE.expanduser()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def normalize_api_url(url: str) -> str:
    """The API prefix of a deployment: ``<origin>/v1`` for a bare origin, else the URL as given."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputValidationError(
            "api_url", f"{url!r} is not an http(s) URL; set SUTRO_API_URL to e.g. {DEFAULT_API_URL}"
        )
    return url + "/v1" if parts.path in ("", "/") else url


def resolve_settings(api_key: str | None = None, api_url: str | None = None) -> Settings:
    """Resolve the API key and URL from arguments, environment, config file, defaults."""
    file_values: dict[str, str] | None = None
    if not api_key:
        api_key = os.environ.get("SUTRO_API_KEY")
    if not api_url:
        api_url = os.environ.get("SUTRO_API_URL")
    if not api_key or not api_url:
        file_values = _config_file_values()
        api_key = api_key or file_values.get("api_key")
        api_url = api_url or file_values.get("base_url") or file_values.get("api_url")
    return Settings(api_key=api_key or None, api_url=normalize_api_url(api_url or DEFAULT_API_URL))
