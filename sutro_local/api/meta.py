"""Health, auth check and quotas.

Example:
    >>> # GET /auth/check  -> {"authenticated": true, "key_name": "default", ...}
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from ..state import ServerState
from ..store import KeyRecord
from .deps import get_state, require_key

router = APIRouter(tags=["meta"])


@router.get("/health")
async def health(state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Liveness (no key needed): the server is up and its worker thread alive."""
    worker = state.worker
    return {"status": "ok", "worker_alive": bool(worker and worker.is_alive())}


@router.get("/auth/check")
def auth_check(key: KeyRecord = Depends(require_key)) -> dict[str, Any]:
    """200 with the key's name for a valid key (401 otherwise)."""
    return {"authenticated": True, "key_name": key.name, "server": "sutro-local"}


@router.get("/try-authentication", include_in_schema=False)
def try_authentication(key: KeyRecord = Depends(require_key)) -> dict[str, Any]:
    """The official SDK's name for auth/check."""
    return auth_check(key)


@router.get("/get-quotas")
def get_quotas(key: KeyRecord = Depends(require_key), state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """One row per priority: max rows / tokens of queued+running jobs per key."""
    return {
        "quotas": [
            {"job_priority": q.job_priority, "row_quota": q.row_quota, "token_quota": q.token_quota}
            for q in sorted(state.config.quotas, key=lambda q: q.job_priority)
        ]
    }


@router.get("/models")
def list_models(key: KeyRecord = Depends(require_key), state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """The models this server serves (name, engine, prices per 1M tokens)."""
    return {
        "models": [
            {"name": m.name, "engine": m.engine, "price_input_per_1m": m.price_input_per_1m,
             "price_output_per_1m": m.price_output_per_1m}  # fmt: skip
            for m in sorted(state.config.models.values(), key=lambda m: m.name)
        ]
    }
