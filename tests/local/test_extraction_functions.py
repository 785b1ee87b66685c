"""Extraction Functions on a generative model (tiny-llama), over HTTP: one input and batch jobs."""

from __future__ import annotations

import httpx
import jsonschema
import pytest

OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "negative"]},
        "refund": {"type": "boolean"},
    },
    "required": ["sentiment", "refund"],
    "additionalProperties": False,
}


def definition(name: str, **extra) -> dict:
    return {
        "name": name,
        "type": "extraction",
        "model": "tiny-llama",
        "inputs": ["text"],
        "prompt_template": "Review: {text}",
        "instructions": "Extract the sentiment and refund wish.",
        "output_schema": OUTPUT_SCHEMA,
        "rationale_max_chars": 12,
        "sampling_params": {"max_tokens": 72},
        **extra,
    }


def publish(server, key, body) -> httpx.Response:
    return httpx.post(
        f"{server.url}/functions", json=body, headers={"Authorization": f"Key {key}"}, timeout=30
    )


def test_extraction_function_runs_one_input(sutro_server, sutro_key, sutro_client):
    assert publish(sutro_server, sutro_key, definition("review-fields")).status_code == 200
    res = sutro_client.run_function("review-fields", {"text": "great, but I want my money back"})
    jsonschema.validate(res.output, OUTPUT_SCHEMA)
    assert isinstance(res.rationale, str) and len(res.rationale) <= 12
    assert 0.0 < res.confidence <= 1.0
    assert res.usage["input_tokens"] > 0 and res.usage["output_tokens"] > 0
    assert "schema" in res.usage["system_prompt"]  # the prompt's text, as the docs show


def test_extraction_function_batch_job(sutro_server, sutro_key, sutro_client):
    assert (
        publish(sutro_server, sutro_key, definition("review-fields-batch", rationale=False)).status_code
        == 200
    )
    rows = [{"text": t} for t in ("love it", "broken on arrival", "meh", "refund now", "five stars")]
    job_id = sutro_client.batch_run_function("review-fields-batch", rows)
    sutro_client.await_job_completion(job_id, timeout=120, obtain_results=False)
    df = sutro_client.get_job_results(job_id)
    assert df.height == len(rows)
    for rec in df.select("sentiment", "refund").to_dicts():
        jsonschema.validate(rec, OUTPUT_SCHEMA)
    assert all(0.0 < c <= 1.0 for c in df["confidence_score"].to_list())
    assert df["finish_reason"].to_list() == ["stop"] * len(rows)


def test_extraction_batch_rows_cut_by_max_tokens_say_so(sutro_server, sutro_key, sutro_client):
    body = definition("review-fields-cut", rationale=False, sampling_params={"max_tokens": 3})
    assert publish(sutro_server, sutro_key, body).status_code == 200
    job_id = sutro_client.batch_run_function("review-fields-cut", [{"text": "love it"}, {"text": "meh"}])
    sutro_client.await_job_completion(job_id, timeout=120, obtain_results=False)
    df = sutro_client.get_job_results(job_id)
    # Three tokens cannot close the JSON object: no fields, and the row says why.
    assert df["finish_reason"].to_list() == ["length", "length"]
    # No object to unpack, so the raw JSON column holds JSON null.
    assert df.drop("confidence_score", "finish_reason").to_dicts() == [{"inference_result": "null"}] * 2


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": "all-minilm-l6-v2"}, "generative model"),
        ({"model": "nope"}, "unknown model"),
        ({"output_schema": None}, "output_schema"),
        ({"rationale_max_chars": 0}, "rationale_max_chars"),
    ],
)
def test_bad_extraction_definitions_name_the_field(sutro_server, sutro_key, change, message):
    resp = publish(sutro_server, sutro_key, definition("bad-fn", **change))
    assert resp.status_code == 400 and message in resp.json()["detail"]
