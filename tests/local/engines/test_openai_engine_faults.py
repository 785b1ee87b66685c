"""The openai engine under faults a real server cannot be made to produce on demand (MockTransport):
rate limits, persistent 5xx, refusals, dropped connections, and the concurrency bound.
The normal path is tested against a real second sutro-local in tests/local/test_generation_e2e.py."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from sutro_local.config import ModelConfig
from sutro_local.engines.base import ChunkParams, EngineInputError
from sutro_local.engines.openai_engine import OpenAIEngine, RemoteModelError, create


def reply(content: str = "ok") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        },
    )


def engine(handler, **kw) -> OpenAIEngine:
    return OpenAIEngine(
        "http://upstream.test", "m", transport=httpx.MockTransport(handler), retry_backoff=0.01, **kw
    )


def test_rate_limit_is_retried_after_retry_after():
    calls = []

    def handler(request):
        calls.append(time.monotonic())
        if len(calls) == 1:
            return httpx.Response(
                429, headers={"Retry-After": "0.2"}, json={"error": {"message": "slow down"}}
            )
        return reply("done")

    res = engine(handler).run(["a"], ChunkParams())
    assert res.outputs == ["done"] and res.input_tokens == [5] and res.output_tokens == [2]
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.2


def test_dropped_connections_and_5xx_are_retried_then_fail_clearly():
    calls = {"n": 0}

    def handler(request):
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("connection refused")
        return httpx.Response(503, json={"detail": "overloaded"})

    with pytest.raises(RemoteModelError, match=r"row 4: .*failed 3 times; last: HTTP 503: overloaded"):
        engine(handler, max_retries=2).run(["a"], ChunkParams(row_offset=4))
    assert calls["n"] == 3


def test_client_errors_are_not_retried_and_name_the_row():
    calls = {"n": 0}

    def handler(request):
        calls["n"] += 1
        return httpx.Response(400, json={"error": {"message": "context length exceeded"}})

    with pytest.raises(EngineInputError, match="row 7: .*context length exceeded"):
        engine(handler).run(["x"], ChunkParams(row_offset=7))
    assert calls["n"] == 1
    with pytest.raises(EngineInputError, match="api_key_env"):
        engine(lambda r: httpx.Response(401, json={"detail": "bad key"})).run(["x"], ChunkParams())


def test_concurrency_is_bounded_and_order_kept():
    lock, state = threading.Lock(), {"now": 0, "max": 0}

    def handler(request):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        import json

        return reply(json.loads(request.content)["messages"][-1]["content"].upper())

    rows = [f"row{i}" for i in range(12)]
    res = engine(handler, max_concurrency=3).run(rows, ChunkParams())
    assert res.outputs == [r.upper() for r in rows]
    assert 1 < state["max"] <= 3


def test_options_are_checked():
    with pytest.raises(EngineInputError, match="options.base_url"):
        create(ModelConfig("m", "openai", options={}))
    with pytest.raises(EngineInputError, match="unknown keys"):
        create(ModelConfig("m", "openai", options={"base_url": "http://x", "concurrency": 2}))
    with pytest.raises(EngineInputError, match="NOT_SET_ANYWHERE"):
        create(
            ModelConfig("m", "openai", options={"base_url": "http://x", "api_key_env": "NOT_SET_ANYWHERE"})
        )
