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
import re
from collections.abc import Iterable
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
    return Settings(api_key=clean_api_key(api_key), api_url=normalize_api_url(api_url or DEFAULT_API_URL))


# What a key looks like where it could show up: a header value, a URL's user-info or query.
_REDACT_PATTERNS = (
    re.compile(r"\b(Key|Bearer|Basic)(\s+)[^\s'\",)]+"),           # Authorization header values
    re.compile(r"(?i)(['\"]?authorization['\"]?\s*[:=]\s*['\"]?)[^'\",})]+"),
    re.compile(r"(?i)([?&](?:api_key|key|token|access_token)=)[^&\s'\"]+"),
    re.compile(r"(://[^/\s:@]*:)[^@/\s]+(@)"),                           # user:password@host
    re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"),                                # sk-... keys anywhere
)


def clean_api_key(api_key: str | None) -> str | None:
    """The key with surrounding whitespace stripped (a trailing newline from a file or env var);
    None when empty. A key holding characters an HTTP header cannot carry raises at once, without
    showing the key.

    Example:
        >>> clean_api_key("  sk-abc\\n")
        'sk-abc'
    """
    if api_key is None:
        return None
    key = api_key.strip()
    if not key:
        return None
    if any(ord(ch) < 0x21 or ord(ch) > 0x7E for ch in key):
        raise InputValidationError(
            "api_key", f"the API key ({len(key)} characters) contains whitespace, control or non-ASCII characters; "
            "copy it again (SUTRO_API_KEY, api_key= or ~/.sutro/config.json)",
        )  # fmt: skip
    return key


def redact(text: object, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with API keys masked: the given secrets, ``Key``/``Bearer`` header values, URL
    passwords and key-like query parameters. Use it on anything that shows a request (log lines,
    error messages) so a key never reaches a log.

    Example:
        >>> redact("GET https://u:pw@api.sutro.sh/x?api_key=abc (Authorization: Key sk-live-12345678)")
        'GET https://u:***@api.sutro.sh/x?api_key=*** (Authorization: ***)'
    """
    out = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***")
    out = _REDACT_PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}***", out)
    out = _REDACT_PATTERNS[1].sub(lambda m: f"{m.group(1)}***", out)
    out = _REDACT_PATTERNS[2].sub(lambda m: f"{m.group(1)}***", out)
    out = _REDACT_PATTERNS[3].sub(lambda m: f"{m.group(1)}***{m.group(2)}", out)
    return _REDACT_PATTERNS[4].sub("***", out)
