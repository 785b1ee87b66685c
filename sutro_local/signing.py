"""Signed, expiring tokens for result-file URLs (HMAC-SHA256 with the server's secret).

The file route needs no API key: the token names the job and file and carries its expiry, and
the signature makes it unguessable and tamper-proof.

Example:
    >>> tok = sign(b"k" * 32, "job-1", "results.parquet", expires_at=2_000_000_000)
    >>> verify(b"k" * 32, tok, now=1_900_000_000)
    ('job-1', 'results.parquet')
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time

_FILENAME_RE = re.compile(r"^results[A-Za-z0-9_.-]*\.(parquet|csv\.zip)$")


class TokenError(ValueError):
    """A missing, tampered or expired token."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: bytes, job_id: str, filename: str, expires_at: int) -> str:
    """A URL-safe token for one file of one job until `expires_at` (epoch seconds)."""
    payload = _b64(json.dumps({"j": job_id, "f": filename, "e": int(expires_at)}, separators=(",", ":")).encode())
    mac = _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{mac}"


def verify(secret: bytes, token: str, now: float | None = None) -> tuple[str, str]:
    """(job_id, filename) of a valid token; raises TokenError otherwise."""
    try:
        payload, mac = token.split(".")
    except ValueError:
        raise TokenError("malformed token") from None
    expected = _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())
    # bytes: compare_digest raises TypeError on non-ASCII str (a crafted URL gave a 500)
    if not hmac.compare_digest(mac.encode(), expected.encode()):
        raise TokenError("bad signature")
    try:
        data = json.loads(_unb64(payload))
        job_id, filename, expires = str(data["j"]), str(data["f"]), int(data["e"])
    except (ValueError, KeyError, TypeError):
        raise TokenError("malformed token") from None
    if (now if now is not None else time.time()) > expires:
        raise TokenError("expired")
    # defence in depth: even a validly signed token may only name a results file of a job folder
    if not _FILENAME_RE.match(filename) or not re.match(r"^job-[0-9a-f]{32}$", job_id):
        raise TokenError("token names a file outside the results area")
    return job_id, filename
