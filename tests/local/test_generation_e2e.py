"""Generative models end to end over HTTP: batch jobs on `tiny-llama`, the OpenAI-compatible route,
and a second sutro-local whose `openai` engine forwards to the first (two real processes)."""

from __future__ import annotations

import json
import math

import httpx
import jsonschema
import pytest
from sutro_core import BatchJobRequest

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["positive", "negative"]}, "ok": {"type": "boolean"}},
    "required": ["label", "ok"],
    "additionalProperties": False,
}
ROWS = ["great product, fast delivery", "it broke after a day", "refund please", "ok I guess", "hello"]


def run_job(client, rows, model="tiny-llama", **kw):
    sub = client.submit_job(BatchJobRequest.for_inference(rows, model=model, **kw))
    job = client.await_job_completion(sub.job_id, timeout=120, obtain_results=False)
    return job, client.get_job_results(sub.job_id, include_cumulative_logprobs=True, unpack_json=False)


def test_batch_job_on_tiny_llama_with_schema(sutro_client):
    job, df = run_job(sutro_client, ROWS, output_schema=SCHEMA, sampling_params={"max_tokens": 40})
    assert job.status.value == "SUCCEEDED" and job.num_rows == len(ROWS)
    assert job.input_tokens > 0 and job.output_tokens > 0
    outputs = df["inference_result"].to_list()
    assert len(outputs) == len(ROWS)
    for out in outputs:
        jsonschema.validate(json.loads(out), SCHEMA)
    assert all(math.isfinite(lp) and lp < 0 for lp in df["cumulative_logprobs"].to_list())


def test_per_row_seeded_job_is_reproducible(sutro_client):
    kw = dict(sampling_params={"max_tokens": 8, "temperature": 1.0, "seed": 5}, random_seed_per_input=True)
    _, a = run_job(sutro_client, ROWS, **kw)
    _, b = run_job(sutro_client, ROWS, **kw)
    assert a["inference_result"].to_list() == b["inference_result"].to_list()


def test_overlong_row_fails_job_without_truncation(sutro_client):
    from sutro_core import JobFailedError

    long_row = "The quick brown fox jumps over the lazy dog. " * 120  # > 1024 tokens
    sub = sutro_client.submit_job(
        BatchJobRequest.for_inference(
            ["short", long_row], model="tiny-llama", truncate_rows=False, sampling_params={"max_tokens": 4}
        )
    )
    with pytest.raises(JobFailedError, match="row 1 has"):
        sutro_client.await_job_completion(sub.job_id, timeout=120, obtain_results=False)
    job, df = run_job(
        sutro_client, ["short", long_row], truncate_rows=True, sampling_params={"max_tokens": 4}
    )
    assert df.height == 2


def test_chat_completions_route(sutro_server, sutro_key):
    headers = {"Authorization": f"Bearer {sutro_key}"}
    with httpx.Client(base_url=sutro_server.url, headers=headers, timeout=60) as http:
        models = http.get("/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["tiny-llama", "tiny-llama-reasoning"]
        body = {
            "model": "tiny-llama",
            "messages": [
                {"role": "system", "content": "Answer."},
                {"role": "user", "content": "great product"},
            ],
            "max_tokens": 40,
            "temperature": 0.8,
            "seed": 3,
            "logprobs": True,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}},
        }
        first = http.post("/v1/chat/completions", json=body)
        assert first.status_code == 200, first.text
        reply = first.json()
        assert reply["object"] == "chat.completion" and reply["model"] == "tiny-llama"
        choice = reply["choices"][0]
        jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMA)
        assert choice["finish_reason"] == "stop"
        usage = reply["usage"]
        assert usage["completion_tokens"] == len(choice["logprobs"]["content"]) <= 40
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert all(t["logprob"] <= 0 for t in choice["logprobs"]["content"])
        again = http.post("/v1/chat/completions", json=body).json()  # same seed, same answer
        assert again["choices"][0]["message"]["content"] == choice["message"]["content"]
        # errors name the field
        bad = http.post("/v1/chat/completions", json={**body, "temperature": -1})
        assert bad.status_code == 400 and "temperature" in bad.json()["detail"]
        assert http.post("/v1/chat/completions", json={**body, "model": "nope"}).status_code == 404
        emb = http.post("/v1/chat/completions", json={**body, "model": "all-minilm-l6-v2"})
        assert emb.status_code == 400 and "embedding" in emb.json()["detail"]
        assert (
            http.post(
                "/v1/chat/completions", json=body, headers={"Authorization": "Bearer wrong"}
            ).status_code
            == 401
        )


@pytest.fixture(scope="module")
def forwarding_server(sutro_server, tmp_path_factory):
    """A second sutro-local whose `remote-tiny` model forwards to the session server's tiny-llama."""
    from sutro_local.testing import LocalServer

    upstream_key = sutro_server.create_key("forwarder")
    options = {
        "base_url": sutro_server.url + "/v1",
        "api_key_env": "UPSTREAM_SUTRO_KEY",
        "max_concurrency": 3,
        "max_tokens": 16,
    }
    config = {
        "models": {
            "remote-tiny": {
                "engine": "openai",
                "chunk_size": 4,
                "options": {**options, "model": "tiny-llama"},
            },
            "remote-reasoning": {"engine": "openai", "options": {**options, "model": "tiny-llama-reasoning"}},
        }
    }
    server = LocalServer(
        tmp_path_factory.mktemp("forwarder") / "data", config, env={"UPSTREAM_SUTRO_KEY": upstream_key}
    )
    server.start()
    yield server
    server.stop()


def test_openai_engine_forwards_to_another_sutro_local(sutro_client, forwarding_server):
    from sutro_core import SutroClient

    params = {"sampling_params": {"max_tokens": 8}, "system_prompt": "Be brief."}
    _, direct = run_job(sutro_client, ROWS, **params)
    with SutroClient(api_key=forwarding_server.api_key, api_url=forwarding_server.url) as remote:
        job, forwarded = run_job(remote, ROWS, model="remote-tiny", **params)
        # greedy decoding on the same model: the forwarded job gives the same rows, in order
        assert forwarded["inference_result"].to_list() == direct["inference_result"].to_list()
        for a, b in zip(forwarded["cumulative_logprobs"].to_list(), direct["cumulative_logprobs"].to_list()):
            assert a == pytest.approx(b, abs=1e-3)
        assert job.input_tokens > 0 and job.output_tokens > 0
        _, schema_df = run_job(
            remote, ROWS[:2], model="remote-tiny", output_schema=SCHEMA, sampling_params={"max_tokens": 40}
        )
        for out in schema_df["inference_result"].to_list():
            jsonschema.validate(json.loads(out), SCHEMA)


def test_reasoning_model_direct_route_and_forwarded(sutro_server, sutro_key, sutro_client, forwarding_server):
    from sutro_core import SutroClient

    params = {
        "sampling_params": {"max_tokens": 8, "temperature": 1.0, "seed": 9},
        "random_seed_per_input": True,
    }
    _, direct = run_job(sutro_client, ROWS, model="tiny-llama-reasoning", **params)
    outputs = [json.loads(o) for o in direct["inference_result"].to_list()]
    assert all(set(o) == {"content", "reasoning_content"} for o in outputs)
    assert any(o["reasoning_content"] for o in outputs)  # the template opened <think>: text is thinking
    with SutroClient(api_key=forwarding_server.api_key, api_url=forwarding_server.url) as remote:
        _, forwarded = run_job(remote, ROWS, model="remote-reasoning", **params)
    # per-row seeds travel as the request seed: the forwarded rows are the same samples
    assert [json.loads(o) for o in forwarded["inference_result"].to_list()] == outputs
    reply = httpx.post(
        f"{sutro_server.url}/v1/chat/completions",
        timeout=60,
        headers={"Authorization": f"Bearer {sutro_key}"},
        json={
            "model": "tiny-llama-reasoning",
            "max_tokens": 8,
            "temperature": 1.0,
            "seed": 4,
            "messages": [{"role": "user", "content": "why?"}],
        },
    ).json()
    message = reply["choices"][0]["message"]
    assert "reasoning_content" in message and isinstance(message["content"], str)


def test_dry_run_on_tiny_llama_counts_prompt_tokens(sutro_client):
    req = BatchJobRequest.for_inference(ROWS, model="tiny-llama", system_prompt="Be brief.")
    estimate = sutro_client.check_cost(req, max_cost_usd=1.0)
    # price: $0.1 / 1M input tokens, $0.2 / 1M output tokens, 256 assumed output tokens a row
    assert estimate > len(ROWS) * 256 * 0.2 / 1e6


def test_extraction_function_on_the_openai_engine(forwarding_server):
    from sutro_core import SutroClient

    schema = {
        "type": "object",
        "properties": {"refund": {"type": "boolean"}},
        "required": ["refund"],
        "additionalProperties": False,
    }
    fn = {
        "name": "wants-refund",
        "type": "extraction",
        "model": "remote-tiny",
        "inputs": ["text"],
        "output_schema": schema,
        "rationale_max_chars": 8,
        "sampling_params": {"max_tokens": 48},
    }
    resp = httpx.post(
        f"{forwarding_server.url}/functions",
        json=fn,
        timeout=30,
        headers={"Authorization": f"Key {forwarding_server.api_key}"},
    )
    assert resp.status_code == 200, resp.text
    with SutroClient(api_key=forwarding_server.api_key, api_url=forwarding_server.url) as remote:
        res = remote.run_function("wants-refund", {"text": "give me my money back"})
    jsonschema.validate(res.output, schema)
    assert 0.0 < res.confidence <= 1.0 and len(res.rationale) <= 8
