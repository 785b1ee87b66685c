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
MAX_DESCRIPTION_LENGTH = 512


def idempotency_key(*scope: Any, fingerprint: str) -> str:
    """A 32-hex-char key from what stays the same across retries of one step, plus what the job computes.

    ``scope`` is orchestrator identity (never a try number); ``fingerprint`` is
    ``BatchJobRequest.fingerprint``, so changing the inputs or model makes a new job.
    """
    payload = json.dumps([list(map(str, scope)), fingerprint], separators=(",", ":"))
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def marker(key: str) -> str:
    """The text appended to a job description to carry ``key``."""
    return f"{MARKER_PREFIX}{key}]"


def key_in_description(description: str | None) -> str | None:
    """The idempotency key carried in a description, if any."""
    if not description:
        return None
    match = _MARKER_RE.search(description)
    return match.group(1) if match else None


def with_marker(description: str | None, key: str) -> str:
    """``description`` with the key's marker appended (replacing an older marker)."""
    base = _MARKER_RE.sub("", description or "").rstrip()
    return f"{base} {marker(key)}" if base else marker(key)
