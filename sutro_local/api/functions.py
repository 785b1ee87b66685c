"""Functions: run one input synchronously, publish and list definitions.

Example:
    >>> # POST /functions/ticket-triage/run {"input": {"text": "I was charged twice"}}
    >>> # -> {"response": "billing", "confidence": 0.93, "predictions": [...], "rationale": "...", "usage": {...}}
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Body, Depends

from ..errors import ApiError
from ..functions import FunctionDefinitionError, FunctionInputError
from ..jsonsafe import check_json
from ..state import ServerState
from ..store import KeyRecord
from .deps import get_state, require_key

router = APIRouter(tags=["functions"])


@router.post("/functions/{name}/run")
def run_function(
    name: str, body: Any = Body(default=None), key: KeyRecord = Depends(require_key),
    state: ServerState = Depends(get_state),
) -> dict[str, Any]:  # fmt: skip
    """Run a Function on one input: {"input": {...}, "confidence_scoring": true}."""
    defn = state.functions.resolve(key.owner, name)
    if defn is None:
        raise ApiError(404, "function_not_found", f"Function {name!r} not found for this API key")
    if not isinstance(body, dict) or "input" not in body:
        raise ApiError(400, "invalid_request", f"body must be {{\"input\": {{...}}}} with fields {list(defn.inputs)}")
    check_json(body)  # e.g. a lone surrogate in the input: 400, not a 500 later
    scoring = body.get("confidence_scoring", True)
    try:
        out = state.functions.runner(defn).run_one(body["input"], confidence_scoring=bool(scoring))
    except FunctionInputError as exc:
        # 422, not 400: the official SDK maps only 422 to SutroValidationError (a bare HTTPError otherwise)
        raise ApiError(422, "invalid_function_input", str(exc)) from None
    # the official SDK's FunctionRunResult also reads these two
    out.setdefault("request_id", uuid.uuid4().hex[:16])
    out.setdefault("function", {"name": defn.name, "type": defn.type, "model": defn.model, "source": "sutro-local"})
    return out


@router.post("/functions")
def publish_function(
    body: Any = Body(default=None), key: KeyRecord = Depends(require_key), state: ServerState = Depends(get_state)
) -> dict[str, Any]:
    """Publish (or republish) a Function definition in the caller's namespace."""
    try:
        defn, rev = state.functions.publish(key.owner, body)
    except FunctionDefinitionError as exc:
        raise ApiError(400, "invalid_function_definition", str(exc)) from None
    return {"name": defn.name, "type": defn.type, "revision": rev}


@router.get("/functions")
def list_functions(key: KeyRecord = Depends(require_key), state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """The Functions the caller can use (its own and the server's shared ones)."""
    return {"functions": state.functions.list(key.owner)}
