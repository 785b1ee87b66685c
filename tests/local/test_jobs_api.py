"""Jobs over HTTP against the real sutro-local process: submit, status, record, list, dry run,
run-time failure, and the embedding engine's outputs."""

from __future__ import annotations

import math
from datetime import datetime

import pyarrow.parquet as pq
import io

from .helpers import submit, wait_status

MODEL = "all-minilm-l6-v2"


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_embedding_job_lifecycle_record_and_results(api):
    rows = ["The cat sat on the mat", "A kitten rests on a rug", "Quarterly revenue grew by 8%"]
    job_id = submit(api, model=MODEL, inputs=rows, name="embed-three", description="lifecycle test")
    assert api.get(f"/job-status/{job_id}").json()["job_status"][job_id] in ("QUEUED", "STARTING", "RUNNING", "SUCCEEDED")
    job = wait_status(api, job_id)
    assert job["status"] == "SUCCEEDED"
    # Once terminal, the two endpoints must agree (earlier they may race a transition).
    assert api.get(f"/job-status/{job_id}").json() == {"job_status": {job_id: "SUCCEEDED"}}
    for field in ("job_id", "status", "num_rows", "model", "name", "description", "job_priority", "created_at",
                  "started_at", "finished_at", "input_tokens", "output_tokens", "job_cost", "cost_estimate",
                  "failure_reason", "rows_processed"):
        assert field in job
    assert (job["num_rows"], job["rows_processed"], job["model"], job["name"]) == (3, 3, MODEL, "embed-three")
    assert job["input_tokens"] > 0 and job["output_tokens"] == 0 and job["failure_reason"] is None
    created, started, finished = (datetime.fromisoformat(job[k].replace("Z", "+00:00"))
                                  for k in ("created_at", "started_at", "finished_at"))
    assert created <= started <= finished and created.utcoffset().total_seconds() == 0
    assert job["job_cost"] == round(job["input_tokens"] * 0.02 / 1e6, 8)

    results = api.post("/job-results", json={"job_id": job_id, "include_inputs": True}).json()["results"]
    assert results["inputs"] == rows
    vecs = results["outputs"]
    assert len(vecs) == 3 and all(len(v) == 384 for v in vecs)
    assert abs(math.sqrt(sum(x * x for x in vecs[0])) - 1) < 1e-3  # normalised
    assert _cos(vecs[0], vecs[1]) > _cos(vecs[0], vecs[2])  # cat~kitten closer than cat~revenue

    table = pq.read_table(io.BytesIO(api.get(f"/jobs/{job_id}/results").content))
    assert table.column_names == ["outputs"]
    import pyarrow as pa

    assert pa.types.is_list(table.schema.field("outputs").type)
    assert table.schema.field("outputs").type.value_type == pa.float32()


def test_list_jobs_shows_own_jobs_newest_first(api):
    first = submit(api, model=MODEL, inputs=["a"])
    second = submit(api, model=MODEL, inputs=["b"], job_priority=1)
    jobs = api.get("/list-jobs").json()["jobs"]
    assert [j["job_id"] for j in jobs] == [second, first]
    assert jobs[0]["job_priority"] == 1


def test_dry_run_succeeds_with_cost_estimate_and_no_results(api):
    job_id = submit(api, model=MODEL, inputs=["hello world"] * 10, cost_estimate=True)
    job = wait_status(api, job_id)
    assert job["status"] == "SUCCEEDED"
    assert job["cost_estimate"] is not None and job["cost_estimate"] > 0
    # 10 rows of "hello world" = 4 tokens each with [CLS]/[SEP], at $0.02 per 1M input tokens
    assert job["cost_estimate"] == round(40 * 0.02 / 1e6, 8)
    r = api.post("/job-results", json={"job_id": job_id})
    assert r.status_code == 409 and r.json()["code"] == "dry_run_has_no_results"


def test_overlong_row_without_truncation_fails_with_a_useful_reason(api):
    long_row = "token " * 400
    job_id = submit(api, model=MODEL, inputs=["short", long_row], truncate_rows=False)
    job = wait_status(api, job_id)
    assert job["status"] == "FAILED"
    msg = job["failure_reason"]["message"]
    assert "row 1 has" in msg and "context window of 256" in msg and "truncate_rows=True" in msg
    r = api.get(f"/jobs/{job_id}/results")
    assert r.status_code == 409 and r.json()["code"] == "job_not_succeeded" and "FAILED" in r.json()["detail"]
    # the same rows with truncation succeed
    ok = wait_status(api, submit(api, model=MODEL, inputs=["short", long_row], truncate_rows=True))
    assert ok["status"] == "SUCCEEDED"


def test_meta_endpoints(api, sutro_server):
    assert api.get("/auth/check").json()["authenticated"] is True
    quotas = api.get("/get-quotas").json()["quotas"]
    assert [q["job_priority"] for q in quotas] == [0, 1] and quotas[0]["row_quota"] == 1_000_000
    schema = api.get("/openapi.json").json()
    for path in ("/batch-inference", "/job-status/{job_id}", "/jobs/{job_id}", "/list-jobs", "/job-cancel/{job_id}",
                 "/job-results", "/jobs/{job_id}/results", "/jobs/{job_id}/results-url",
                 "/stream-job-progress/{job_id}", "/get-quotas", "/auth/check", "/functions/{name}/run"):
        assert path in schema["paths"], path


def test_progress_stream_reports_rows_tokens_heartbeats_and_ends(api):
    # 8 rows at >= 0.3 s each: long enough for heartbeats (every 1 s) between progress lines
    job_id = submit(api, model="slow-embed", inputs=["one", "two", "three", "four", "5", "6", "7", "8"])
    lines = []
    with api.stream("GET", f"/stream-job-progress/{job_id}") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/x-ndjson")
        import json

        lines = [json.loads(line) for line in resp.iter_lines() if line]
    kinds = {line["update_type"] for line in lines}
    assert kinds == {"progress", "tokens", "heartbeat"}
    progress = [line["result"] for line in lines if line["update_type"] == "progress"]
    assert progress == sorted(progress) and progress[-1] == 8 and len(progress) >= 3
    # the official SDK polls status on a heartbeat and stops once terminal: progress must come
    # first, and the stream must end on the final progress + tokens lines
    assert lines[0]["update_type"] == "progress"
    assert [line["update_type"] for line in lines[-2:]] == ["progress", "tokens"] and lines[-2]["result"] == 8
    tokens = [line["result"] for line in lines if line["update_type"] == "tokens"][-1]
    assert tokens["input_tokens"] > 0 and set(tokens) == {"input_tokens", "output_tokens", "total_tokens_processed_per_second"}
    assert api.get(f"/job-status/{job_id}").json()["job_status"][job_id] == "SUCCEEDED"


def test_interactive_job_overtakes_a_running_batch_job(api):
    batch = submit(api, model="slow-embed", inputs=[f"batch {i}" for i in range(10)], job_priority=1)
    wait_status(api, batch, {"RUNNING"})
    interactive = submit(api, model="slow-embed", inputs=["urgent 1", "urgent 2"], job_priority=0)
    assert wait_status(api, interactive, timeout=30)["status"] == "SUCCEEDED"
    assert api.get(f"/jobs/{batch}").json()["job"]["status"] == "RUNNING"
    assert wait_status(api, batch, timeout=30)["status"] == "SUCCEEDED"
