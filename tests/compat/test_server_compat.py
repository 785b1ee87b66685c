"""sutro-local serves what the official SDK and CLI read (issue 15, items 1-6), over plain HTTP."""

from __future__ import annotations

import io
import json
import time
import zipfile

import httpx
import polars as pl
import pytest

MODEL = "all-minilm-l6-v2"


@pytest.fixture
def api(sutro_server, sutro_key):
    with httpx.Client(base_url=sutro_server.url, headers={"Authorization": f"Key {sutro_key}"}, timeout=60) as c:
        yield c


def submit(api: httpx.Client, **body) -> str:
    r = api.post("/batch-inference", json=body)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def wait_status(api: httpx.Client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (job := api.get(f"/jobs/{job_id}").json()["job"])["status"] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.1)
    return job


def test_job_records_carry_the_sdk_datetime_names(api):
    job_id = submit(api, model=MODEL, inputs=["a", "b"])
    job = wait_status(api, job_id)
    assert job["datetime_created"] == job["datetime_added"] == job["created_at"]
    assert job["datetime_started"] == job["started_at"] and job["datetime_completed"] == job["finished_at"]
    [listed] = api.get("/list-jobs").json()["jobs"]
    assert listed["datetime_completed"] and listed["datetime_created"].endswith("Z")


def test_csv_names_outputs_after_the_job_id_json_and_parquet_keep_outputs(api):
    job_id = submit(api, model=MODEL, inputs=["a", "b"])
    wait_status(api, job_id)
    r = api.get(f"/jobs/{job_id}/results", params={"result_format": "csv"})
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert pl.read_csv(zf.read(zf.namelist()[0])).columns == [job_id]
    assert list(api.get(f"/jobs/{job_id}/results", params={"result_format": "json"}).json()) == ["outputs"]
    parquet = api.get(f"/jobs/{job_id}/results", params={"result_format": "parquet"}).content
    assert pl.read_parquet(io.BytesIO(parquet)).columns == ["outputs"]  # what sutro_core and the SDK read
    # result_format is "required" in the docs; a missing one means parquet here (documented)
    assert api.get(f"/jobs/{job_id}/results").content == parquet


def test_function_usage_system_prompt_is_text_and_bad_input_is_422(api):
    out = api.post("/functions/ticket-triage/run", json={"input": {"text": "refund please"}}).json()
    assert isinstance(out["usage"]["system_prompt"], str) and out["usage"]["system_prompt"]
    bad = api.post("/functions/ticket-triage/run", json={"input": {"body": "x"}})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_function_input"
    assert "missing field 'text'" in bad.json()["detail"]


def test_progress_stream_of_a_finished_job_still_gives_the_final_progress(api):
    job_id = submit(api, model=MODEL, inputs=["a", "b", "c"])
    wait_status(api, job_id)
    with api.stream("GET", f"/stream-job-progress/{job_id}") as resp:
        lines = [json.loads(line) for line in resp.iter_lines() if line]
    assert [line["update_type"] for line in lines] == ["progress", "tokens"] and lines[0]["result"] == 3


def test_model_list_says_one_job_takes_one_model(api):
    r = api.post("/batch-inference", json={"model": [MODEL, "slow-embed"], "inputs": ["x"]})
    assert r.status_code == 400
    assert "one job takes one model" in r.json()["detail"] and "infer_per_model" in r.json()["detail"]
