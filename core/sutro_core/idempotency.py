"""Idempotency keys: how a retried pipeline step finds the job its earlier try submitted.

The hosted API has no idempotency header, so the key travels in the job ``description`` as
``[sutro-idempotency-key:<key>]``; ``find_job`` lists jobs and matches the marker.

Example:
    >>> key = idempotency_key("airflow", "my_dag", "classify", "manual__2026-01-01", -1, fingerprint="ab12")
    >>> len(key)
    32
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

MARKER_PREFIX = "[sutro-idempotency-key:"
_MARKER_RE = re.compile(r"\[sutro-idempotency-key:([0-9a-zA-Z_-]{8,64})\]")
# The step's scope (without the fingerprint): finds the live job of an earlier try whose inputs changed.
SCOPE_PREFIX = "[sutro-scope:"
_SCOPE_RE = re.compile(r"\[sutro-scope:([0-9a-f]{16})\]")
MAX_DESCRIPTION_LENGTH = 512


def idempotency_key(*scope: Any, fingerprint: str) -> str:
    """A 32-hex-char key from what stays the same across retries of one step, plus what the job computes.

    ``scope`` is orchestrator identity (never a try number); ``fingerprint`` is
    ``BatchJobRequest.fingerprint``, so changing the inputs or model makes a new job.
    """
    payload = json.dumps([list(map(str, scope)), fingerprint], separators=(",", ":"))
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def scope_id(*scope: Any) -> str:
    """A 16-hex-char id of a step's scope (the orchestrator identity, never a try number).

    Example:
        >>> len(scope_id("airflow", "my_dag", "classify", "manual__2026-01-01", -1))
        16
    """
    payload = json.dumps(list(map(str, scope)), separators=(",", ":"))
    return hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()


def scope_marker(scope: str) -> str:
    """The text appended to a job description to carry a step's scope id."""
    return f"{SCOPE_PREFIX}{scope}]"


def scope_in_description(description: str | None) -> str | None:
    """The scope id carried in a description, if any."""
    match = _SCOPE_RE.search(description or "")
    return match.group(1) if match else None


def marker(key: str) -> str:
    """The text appended to a job description to carry ``key``."""
    return f"{MARKER_PREFIX}{key}]"


def key_in_description(description: str | None) -> str | None:
    """The idempotency key carried in a description, if any."""
    if not description:
        return None
    match = _MARKER_RE.search(description)
    return match.group(1) if match else None


def with_marker(description: str | None, key: str, scope: str | None = None) -> str:
    """``description`` with the key's (and the scope's) marker appended, replacing older markers."""
    base = _SCOPE_RE.sub("", _MARKER_RE.sub("", description or "")).rstrip()
    tail = marker(key) + (f" {scope_marker(scope)}" if scope else "")
    return f"{base} {tail}" if base else tail
