"""Console sessions: a signed cookie naming the API key's owner, and the CSRF checks of its forms.

The cookie holds the key's *hash* (its owner id), never the key. It is HMAC-signed with a key
derived from the server's secret, HttpOnly, SameSite=Strict and scoped to the console's path.
A valid signature is not enough: the session must also still be recorded server-side
(`Store.session_valid`, keyed by `session_id`), so signing out and revoking the key end it at once.
Every secret is compared as bytes (`hmac.compare_digest` raises on non-ASCII str).

Example:
    >>> s = Session(owner="ab12", name="ci", expires=4_102_444_800, nonce="n")
    >>> verify(b"secret", sign(b"secret", s)) == s
    True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

COOKIE = "sutro_console"
TTL_S = 12 * 3600
MAX_COOKIE_CHARS = 4096  # a real cookie is ~250 characters; anything longer is not decoded


@dataclass(frozen=True)
class Session:
    """A signed-in console user: the key's owner id and name, expiry (unix s), CSRF nonce."""

    owner: str
    name: str
    expires: int
    nonce: str

    @classmethod
    def new(cls, owner: str, name: str) -> Session:
        """A fresh session for a key record, valid for TTL_S."""
        return cls(owner, name, int(time.time()) + TTL_S, secrets.token_urlsafe(32))


def session_id(session: Session) -> str:
    """The server-side id of a session (what the store keeps: a hash of its random nonce).

    Example:
        >>> len(session_id(Session("o", "n", 0, "nonce")))
        64
    """
    return hashlib.sha256(b"sutro-console-session:" + session.nonce.encode()).hexdigest()


def _key(secret: bytes, purpose: bytes) -> bytes:
    # separate keys per purpose: a session cookie can never verify as a results-URL token or CSRF token
    return hmac.new(secret, b"sutro-console:" + purpose, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: bytes, session: Session) -> str:
    """The cookie value of a session."""
    body = _b64(json.dumps([session.owner, session.name, session.expires, session.nonce]).encode())
    mac = _b64(hmac.new(_key(secret, b"session"), body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def verify(secret: bytes, value: str | None) -> Session | None:
    """The session of a cookie value, or None when missing, tampered with or expired."""
    if not value or value.count(".") != 1 or len(value) > MAX_COOKIE_CHARS:
        return None
    body, mac = value.split(".")
    want = _b64(hmac.new(_key(secret, b"session"), _bytes(body), hashlib.sha256).digest())
    # bytes: compare_digest raises TypeError on non-ASCII str (a crafted cookie gave a 500)
    if not hmac.compare_digest(_bytes(mac), want.encode()):
        return None
    try:  # signed by us, so well-formed; checked anyway: a malformed session is no session, never a 500
        owner, name, expires, nonce = json.loads(_unb64(body))
        if not all(isinstance(v, str) for v in (owner, name, nonce)) or not isinstance(expires, int):
            return None
    except (ValueError, TypeError):
        return None
    if expires < time.time():
        return None
    return Session(owner, name, expires, nonce)


def csrf_token(secret: bytes, session: Session) -> str:
    """The CSRF token the console's forms carry for this session."""
    return _b64(hmac.new(_key(secret, b"csrf"), session.nonce.encode(), hashlib.sha256).digest())


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site (Origin / Sec-Fetch-Site)."""
    site = request.headers.get("sec-fetch-site")
    if site and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        return urlsplit(origin).netloc == host
    return origin != "null"


def csrf_ok(secret: bytes, session: Session, request: Request, token: str | None) -> bool:
    """A state-changing form is accepted only same-origin and with the session's CSRF token."""
    if not same_origin(request) or not isinstance(token, str) or not token:
        return False
    # bytes: a token like "é" (csrf=%C3%A9) made compare_digest raise on str
    return hmac.compare_digest(_bytes(token), csrf_token(secret, session).encode())


def _bytes(text: str) -> bytes:
    # any str a client can send, lone surrogates included, as bytes to MAC or compare
    return text.encode("utf-8", "surrogatepass")
