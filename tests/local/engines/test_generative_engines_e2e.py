"""One suite for the local generative engines, run against a real sutro-local per engine.

Parametrised over ``transformers`` (the tiny random-weight test Llama: fast) and ``llamacpp`` (the
shipped SmolLM2-135M GGUF, served as is). Each engine's server has two models: ``gen`` (4 rows a
chunk) and ``gen-slow`` (2 rows a chunk, at least 0.4 s a chunk: a job that stays RUNNING long enough
to cancel or kill). Guarantees only (statuses, counts, finish reasons, schema validity, resume equality,
seeds), never what a model answers.
"""

from __future__ import annotations

import io
import json
import math
import time
from typing import Any

import httpx
import jsonschema
import pyarrow.parquet as pq
import pytest
from local.helpers import api_client, submit, wait_status
from support.tiny_llama import cached_tiny_llama
from sutro_local.testing import LocalServer

pytestmark = pytest.mark.slow  # a server and two model loads per engine

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["positive", "negative"]}, "ok": {"type": "boolean"}},
    "required": ["label", "ok"],
    "additionalProperties": False,
}
ROWS = ["great product, fast delivery", "it broke after a day", "refund please", "ok I guess", "hello",
        "the parcel arrived"]  # fmt: skip
PRICE = {"input_per_1m": 0.1, "output_per_1m": 0.2}


def engine_options(engine: str) -> dict[str, Any]:
    if engine == "transformers":
        return {"path": str(cached_tiny_llama()), "threads": 1, "batch_size": 4, "max_tokens": 16}
    return {"builtin": "smollm2", "threads": 1, "parallel": 4, "context": 1024, "max_tokens": 16}


@pytest.fixture(scope="module", params=["transformers", "llamacpp"])
def engine_server(request, tmp_path_factory):
    engine = request.param
    options = engine_options(engine)
    config = {
        "models": {
            "gen": {"engine": engine, "options": options, "chunk_size": 4, "price": PRICE},
            "gen-slow": {"engine": engine, "options": options, "chunk_size": 2, "min_seconds_per_chunk": 0.4},
        },
        "quotas": [{"job_priority": 0, "row_quota": None}, {"job_priority": 1, "row_quota": None}],
    }
    with LocalServer(tmp_path_factory.mktemp(f"engine-{engine}") / "data", config) as server:
        server.engine = engine  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def api(engine_server):
    with api_client(engine_server.url, engine_server.create_key("t")) as client:
        yield client


def results(api: httpx.Client, job_id: str) -> dict[str, list[Any]]:
    r = api.get(f"/jobs/{job_id}/results", params={"include_inputs": True, "include_cumulative_logprobs": True})
    assert r.status_code == 200, r.text
    return pq.read_table(io.BytesIO(r.content)).to_pydict()


def finished(api: httpx.Client, job_id: str, timeout: float = 180) -> dict[str, Any]:
    job = wait_status(api, job_id, timeout=timeout)
    assert job["status"] == "SUCCEEDED", job
    return job


def test_batch_job_reports_tokens_logprobs_and_a_finish_reason_per_row(api):
    job_id = submit(api, model="gen", inputs=ROWS, sampling_params={"max_tokens": 12})
    job = finished(api, job_id)
    assert job["num_rows"] == job["rows_processed"] == len(ROWS)
    assert job["input_tokens"] > 0 and 0 < job["output_tokens"] <= 12 * len(ROWS)
    res = results(api, job_id)
    assert res["inputs"] == ROWS
    assert all(isinstance(o, str) for o in res["outputs"])
    assert set(res["finish_reason"]) <= {"stop", "length"} and len(res["finish_reason"]) == len(ROWS)
    assert all(math.isfinite(lp) and lp <= 0 for lp in res["cumulative_logprobs"])


def test_schema_job_rows_are_all_valid_json(api):
    job_id = submit(api, model="gen", inputs=ROWS, json_schema=SCHEMA, system_prompt="Classify as JSON.",
                    sampling_params={"max_tokens": 64})  # fmt: skip
    finished(api, job_id)
    res = results(api, job_id)
    assert res["finish_reason"] == ["stop"] * len(ROWS)
    for text in res["outputs"]:  # 100% schema-valid
        jsonschema.validate(json.loads(text), SCHEMA)


def test_rows_cut_by_max_tokens_are_marked_and_kept_as_written(api):
    job_id = submit(api, model="gen", inputs=ROWS[:3], json_schema=SCHEMA, sampling_params={"max_tokens": 3})
    finished(api, job_id)
    res = results(api, job_id)
    assert res["finish_reason"] == ["length"] * 3
    for text in res["outputs"]:  # the incomplete text the model wrote, never a fake object
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)


def test_cancel_mid_job_stops_between_chunks(api):
    rows = [f"row {i}: the parcel arrived" for i in range(16)]
    job_id = submit(api, model="gen-slow", inputs=rows, sampling_params={"max_tokens": 4})
    job = wait_status(api, job_id, {"RUNNING", "SUCCEEDED"}, timeout=120)
    while job["rows_processed"] < 2:
        time.sleep(0.05)
        job = api.get(f"/jobs/{job_id}").json()["job"]
    assert api.get(f"/job-cancel/{job_id}").status_code == 200
    job = wait_status(api, job_id, timeout=60)
    assert job["status"] == "CANCELLED" and 2 <= job["rows_processed"] < len(rows)
    time.sleep(0.6)
    assert api.get(f"/jobs/{job_id}").json()["job"]["rows_processed"] == job["rows_processed"]


def test_kill_9_mid_job_resumes_with_the_same_samples(engine_server):
    job = {
        "inputs": [f"review {i}: the parcel arrived" for i in range(10)],
        "random_seed_per_input": True,
        "sampling_params": {"temperature": 1.0, "top_p": 0.95, "max_tokens": 8, "seed": 77},
    }
    with api_client(engine_server.url, engine_server.api_key) as api:
        reference_id = submit(api, model="gen", **job)  # uninterrupted, 4 rows a chunk
        finished(api, reference_id)
        reference = results(api, reference_id)["outputs"]
        assert len(set(reference)) > 1  # per-row seeds: rows have their own samples
        job_id = submit(api, model="gen-slow", **job)  # 2 rows a chunk, killed after 2 chunks
        state = wait_status(api, job_id, {"RUNNING", "SUCCEEDED"}, timeout=120)
        while state["rows_processed"] < 4:
            time.sleep(0.05)
            state = api.get(f"/jobs/{job_id}").json()["job"]
        assert state["status"] == "RUNNING", "the throttle keeps the job running long enough to crash it"
        engine_server.kill()
        engine_server.start()
        done = finished(api, job_id)
        assert done["rows_processed"] == len(job["inputs"])
        res = results(api, job_id)
        assert res["outputs"] == reference  # resumed rows equal the uninterrupted job's
        assert len(res["finish_reason"]) == len(job["inputs"])


def test_chat_completions_route(engine_server):
    headers = {"Authorization": f"Bearer {engine_server.api_key}"}
    with httpx.Client(base_url=engine_server.url, headers=headers, timeout=120) as http:
        assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["gen", "gen-slow"]
        body = {
            "model": "gen",
            "messages": [{"role": "system", "content": "Answer as JSON."}, {"role": "user", "content": "great product"}],
            "max_tokens": 64,
            "temperature": 0.8,
            "seed": 3,
            "logprobs": True,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}},
        }
        first = http.post("/v1/chat/completions", json=body)
        assert first.status_code == 200, first.text
        reply = first.json()
        choice = reply["choices"][0]
        jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMA)
        assert choice["finish_reason"] == "stop"
        usage = reply["usage"]
        assert usage["completion_tokens"] == len(choice["logprobs"]["content"]) <= 64
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        again = http.post("/v1/chat/completions", json=body).json()  # same seed, same answer
        assert again["choices"][0]["message"]["content"] == choice["message"]["content"]
        cut = http.post("/v1/chat/completions", json={**body, "max_tokens": 2, "logprobs": False}).json()
        assert cut["choices"][0]["finish_reason"] == "length" and cut["usage"]["completion_tokens"] == 2
        bad = http.post("/v1/chat/completions", json={**body, "temperature": -1})
        assert bad.status_code == 400 and "temperature" in bad.json()["detail"]
        penalised = http.post("/v1/chat/completions", json={**body, "presence_penalty": 0.5})
        if engine_server.engine == "llamacpp":  # llama.cpp has the penalty
            assert penalised.status_code == 200, penalised.text
        else:  # transformers refuses it by name
            assert penalised.status_code == 400 and "presence_penalty" in penalised.json()["detail"]


def test_dry_run_counts_prompt_tokens(api):
    job_id = submit(api, model="gen", inputs=ROWS, system_prompt="Be brief.", cost_estimate=True)
    job = finished(api, job_id)
    # $0.1 / 1M input tokens and $0.2 / 1M output tokens, 256 assumed output tokens a row
    assert job["cost_estimate"] > len(ROWS) * 256 * 0.2 / 1e6


def test_extraction_function_runs_on_the_engine(api):
    definition = {"name": "sentiment", "type": "extraction", "model": "gen", "inputs": ["text"],
                  "output_schema": SCHEMA, "rationale": False, "sampling_params": {"max_tokens": 64}}  # fmt: skip
    r = api.post("/functions", json=definition)
    assert r.status_code == 200, r.text
    one = api.post("/functions/sentiment/run", json={"input": {"text": "great product"}})
    assert one.status_code == 200, one.text
    jsonschema.validate(one.json()["output"], SCHEMA)
    assert 0 < one.json()["confidence"] <= 1
