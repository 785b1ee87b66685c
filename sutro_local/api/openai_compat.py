"""OpenAI-compatible ``/v1/chat/completions`` and ``/v1/models`` for the server's transformers and
llamacpp models.

Lets any OpenAI client (or another sutro-local's ``openai`` engine) use the models this server
runs locally. Non-streaming only. Honours ``max_tokens`` (or ``max_completion_tokens``),
``temperature``, ``top_p``, ``top_k``, ``min_p``, ``seed``, ``stop``, ``repetition_penalty``,
``response_format`` (``json_schema`` or ``json_object``) and ``logprobs``/``top_logprobs`` (the
chosen token's logprob only); llamacpp models also ``presence_penalty`` and ``frequency_penalty``.
Reasoning models answer with ``message.reasoning_content`` beside ``message.content``, as vLLM does.
Auth: ``Authorization: Bearer <sutro key>`` (or ``Key``).

Example:
    >>> # from openai import OpenAI
    >>> # OpenAI(base_url="http://127.0.0.1:8321/v1", api_key=SUTRO_KEY).chat.completions.create(
    >>> #     model="tiny-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=8)
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Body, Depends

from ..engines.base import EngineInputError
from ..engines.registry import UnknownModelError
from ..engines.sampling import parse_sampling_params
from ..errors import ApiError
from ..jsonsafe import check_json
from ..sampling_check import check_sampling
from ..state import ServerState
from ..store import KeyRecord
from .deps import get_state, require_key

router = APIRouter(tags=["openai"])

SERVED_ENGINES = ("transformers", "llamacpp")
_SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "stop",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
)


@router.get("/v1/models")
def list_models(
    key: KeyRecord = Depends(require_key), state: ServerState = Depends(get_state)
) -> dict[str, Any]:
    """The chat models this server can serve here (its transformers and llamacpp models)."""
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "sutro-local"}
        for name, cfg in sorted(state.config.models.items())
        if cfg.engine in SERVED_ENGINES
    ]
    return {"object": "list", "data": data}


@router.post("/v1/chat/completions")
def chat_completions(
    body: Any = Body(default=None),
    key: KeyRecord = Depends(require_key),
    state: ServerState = Depends(get_state),
) -> dict[str, Any]:  # fmt: skip
    """One chat completion (OpenAI wire shape) from a configured transformers or llamacpp model."""
    if not isinstance(body, dict):
        raise _bad("body must be a JSON object with 'model' and 'messages'")
    check_json(body)
    model = body.get("model")
    engine = _engine(state, model)
    if body.get("stream"):
        raise _bad("stream=true is not supported by sutro-local; send stream=false", "stream")
    if body.get("n") not in (None, 1):
        raise _bad("n must be 1 on sutro-local", "n")
    messages = _messages(body.get("messages"))
    # every numeric field checked as sent (NaN, 1e30, a max_tokens past the context window): 400 naming it
    named = (*_SAMPLING_FIELDS, "max_tokens", "max_completion_tokens")
    given = {k: body[k] for k in named if body.get(k) is not None}
    check_sampling(given, max_tokens_limit=max(1, int(engine.context_window) - 1), prefix="", model=model,
                   aliases={"max_completion_tokens": "max_tokens"})  # fmt: skip
    sampling = {k: body[k] for k in _SAMPLING_FIELDS if body.get(k) is not None}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        sampling["max_tokens"] = max_tokens
    for k in ("presence_penalty", "frequency_penalty"):
        if sampling.get(k) == 0:
            sampling.pop(k)
    try:
        default_max = max(1, min(engine.max_tokens, engine.context_window // 2))
        settings = parse_sampling_params(
            sampling, default_max_tokens=default_max,
            unsupported=getattr(engine, "unsupported_sampling", ("presence_penalty", "frequency_penalty")),
        )
        want_logprobs = bool(body.get("logprobs"))
        # The request's seed seeds this one row as is (same seed, same answer).
        seeds = [settings.seed] if settings.seed is not None else None
        [gen] = engine.generate(
            [messages],
            settings,
            json_schema=_schema(body.get("response_format")),
            want_logprobs=want_logprobs,
            truncate=False,
            seeds=seeds,
        )
    except EngineInputError as exc:
        raise _bad(str(exc).replace("sampling_params.", "")) from None
    message: dict[str, Any] = {"role": "assistant", "content": gen.content}
    if gen.reasoning_content is not None:
        message["reasoning_content"] = gen.reasoning_content
    logprobs = None
    if want_logprobs and gen.token_logprobs is not None:
        logprobs = {
            "content": [
                {"token": t, "logprob": lp, "bytes": list(t.encode()), "top_logprobs": []}
                for t, lp in gen.token_logprobs
            ]
        }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": gen.finish_reason}
        ],
        "usage": {
            "prompt_tokens": gen.prompt_tokens,
            "completion_tokens": gen.completion_tokens,
            "total_tokens": gen.prompt_tokens + gen.completion_tokens,
        },
    }


def _engine(state: ServerState, model: Any) -> Any:
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required; list the served models with GET /v1/models", "model")
    try:
        cfg = state.engines.model_config(model)
    except UnknownModelError as exc:
        raise ApiError(404, "model_not_found", str(exc)) from None
    if cfg.engine not in SERVED_ENGINES:
        raise _bad(
            f"model {model!r} runs on the {cfg.engine!r} engine; /v1/chat/completions serves "
            f"{'/'.join(SERVED_ENGINES)} models (see GET /v1/models)",
            "model",
        )
    try:
        return state.engines.get(model)
    except EngineInputError as exc:  # a bad model folder or option: the server's config is wrong
        raise ApiError(500, "model_load_failed", f"model {model!r} could not be loaded: {exc}") from None


def _messages(raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise _bad("'messages' must be a non-empty list of {role, content}", "messages")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
            raise _bad(f"messages[{i}] needs role system, user or assistant", "messages")
        content = m.get("content")
        if isinstance(content, list):  # content parts: only text is served here
            if any(not isinstance(p, dict) or p.get("type") != "text" for p in content):
                raise _bad(f"messages[{i}].content: only text parts are supported", "messages")
            content = "".join(str(p.get("text", "")) for p in content)
        if not isinstance(content, str):
            raise _bad(f"messages[{i}].content must be a string", "messages")
        out.append({"role": "system" if m["role"] == "developer" else m["role"], "content": content})
    return out


def _schema(fmt: Any) -> dict[str, Any] | None:
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if (
        kind == "json_schema"
        and isinstance(fmt.get("json_schema"), dict)
        and isinstance(fmt["json_schema"].get("schema"), dict)
    ):
        return fmt["json_schema"]["schema"]
    raise _bad(
        "response_format must be {type: text}, {type: json_object} or "
        "{type: json_schema, json_schema: {name, schema}}",
        "response_format",
    )


def _bad(detail: str, field: str | None = None) -> ApiError:
    return ApiError(
        400, "invalid_request", detail if field is None or field in detail else f"{field}: {detail}"
    )
