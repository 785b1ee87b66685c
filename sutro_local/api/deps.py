"""Request dependencies: the server state and the caller's API key.

Example:
    >>> # @router.get("/x")
    >>> # def x(key: KeyRecord = Depends(require_key), state: ServerState = Depends(get_state)): ...
"""

from __future__ import annotations

from fastapi import Header, Request

from ..errors import ApiError
from ..state import ServerState
from ..store import KeyRecord, hash_key

AUTH_HINT = "send the header 'Authorization: Key <api key>' (sutro-local prints a key on start)"


async def get_state(request: Request) -> ServerState:
    """The ServerState of the app handling the request (async: no thread-pool hop)."""
    return request.app.state.sutro


def presented_key(authorization: str | None) -> str:
    """The API key of an Authorization header ("Key <key>" or "Bearer <key>"), stripped; 401 when
    missing or malformed. Whether the key exists is the caller's read (see require_key)."""
    if not authorization:
        raise ApiError(401, "missing_api_key", f"missing API key; {AUTH_HINT}")
    scheme, _, key = authorization.strip().partition(" ")
    if scheme.lower() not in ("key", "bearer") or not key.strip():
        raise ApiError(401, "malformed_authorization", f"malformed Authorization header; {AUTH_HINT}")
    return key.strip()


def invalid_key() -> ApiError:
    """401 for a well-formed key that the store does not hold."""
    return ApiError(401, "invalid_api_key", "invalid API key; create one with `sutro-local keys create NAME`")


def caller_owner(request: Request) -> str:
    """The owner (key hash) the request's Authorization header names, NOT yet checked against the
    store: for reads that check it in the same statement as the data (e.g. `Store.key_and_status`).
    Plain function, not a FastAPI dependency: dependency solving cost more than the read itself."""
    return hash_key(presented_key(request.headers.get("authorization")))


async def require_key(request: Request, authorization: str | None = Header(default=None)) -> KeyRecord:
    """The caller's key record; 401 when missing, malformed or unknown. Keys are read from the
    store on every request, so keys created by `sutro-local keys create` work without a restart.
    Async on purpose: one indexed SQLite read in the event loop, so auth never waits for a free
    worker thread when slow routes hold them all."""
    record = request.app.state.sutro.store.resolve_key(presented_key(authorization))
    if record is None:
        raise invalid_key()
    return record
