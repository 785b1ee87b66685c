"""Where the client finds its API key and URL.

Order: explicit arguments, then ``SUTRO_API_KEY`` / ``SUTRO_API_URL``, then ``~/.sutro/config.json``
(the official SDK's file), then the hosted URL.

Example:
    >>> settings = resolve_settings(api_key="sk-...", api_url=None)
    >>> settings.api_url
    'https://api.sutro.sh'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

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
    return Settings(api_key=api_key or None, api_url=(api_url or DEFAULT_API_URL).rstrip("/"))
