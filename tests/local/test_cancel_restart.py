"""Cancellation mid-run, and crash recovery: kill -9 mid-job, restart, the job finishes complete and in order."""

from __future__ import annotations

import io
import time

import pyarrow.parquet as pq
import pytest

from sutro_local.testing import LocalServer

from .helpers import api_client, submit, wait_status


def test_cancel_mid_run_stops_between_chunks(api):
    job_id = submit(api, model="slow-embed", inputs=[f"row {i}" for i in range(40)])
    job = wait_status(api, job_id, {"RUNNING"})
    while job["rows_processed"] < 2:
        time.sleep(0.1)
        job = api.get(f"/jobs/{job_id}").json()["job"]
    r = api.get(f"/job-cancel/{job_id}")
    assert r.status_code == 200 and r.json()["status"] in ("CANCELLING", "CANCELLED")
    job = wait_status(api, job_id, timeout=10)
    assert job["status"] == "CANCELLED" and job["finished_at"]
    assert 2 <= job["rows_processed"] < 40
    time.sleep(0.8)  # no further chunks run after the cancel
    assert api.get(f"/jobs/{job_id}").json()["job"]["rows_processed"] == job["rows_processed"]
    r = api.post("/job-results", json={"job_id": job_id})
    assert r.status_code == 409 and r.json()["code"] == "job_not_succeeded"
    # cancelling a terminal job changes nothing
    assert api.get(f"/job-cancel/{job_id}").json()["status"] == "CANCELLED"


def test_cancel_queued_job_is_immediate(tmp_path):
    # a server whose worker is off keeps jobs QUEUED deterministically
    config = {"models": {"echo": {"engine": "echo"}}, "worker": {"enabled": False}}
    with LocalServer(tmp_path / "data", config) as srv, api_client(srv.url, srv.api_key) as api:
        queued = submit(api, model="echo", inputs=["q"])
        assert api.get(f"/job-status/{queued}").json()["job_status"][queued] == "QUEUED"
        assert api.get(f"/job-cancel/{queued}").json()["status"] == "CANCELLED"
        job = api.get(f"/jobs/{queued}").json()["job"]
        assert job["status"] == "CANCELLED" and job["finished_at"] and job["started_at"] is None
        with api.stream("GET", f"/stream-job-progress/{queued}") as resp:  # ends at once for a terminal job
            assert [line for line in resp.iter_lines() if line][0] == '{"update_type": "progress", "result": 0}'


SLOW_CONFIG = {
    # echo: outputs equal inputs (no model to load), so completeness and order are exact checks
    "models": {"slow-echo": {"engine": "echo", "chunk_size": 2, "min_seconds_per_chunk": 0.25}},
}


def test_kill_9_mid_job_then_restart_resumes_and_loses_nothing(tmp_path):
    rows = [f"sentence number {i}" for i in range(24)]
    with LocalServer(tmp_path / "data", SLOW_CONFIG) as srv:
        api = api_client(srv.url, srv.api_key)
        finished = submit(api, model="slow-echo", inputs=["done before the crash", "second"])
        assert wait_status(api, finished)["status"] == "SUCCEEDED"
        job_id = submit(api, model="slow-echo", inputs=rows)
        job = wait_status(api, job_id, {"RUNNING"})
        while job["rows_processed"] < 6:
            time.sleep(0.05)
            job = api.get(f"/jobs/{job_id}").json()["job"]
        srv.kill()
        assert srv.proc.returncode == -9
        chunks_dir = srv.data_dir / "jobs" / job_id / "parts"
        parts_before = sorted(p.name for p in chunks_dir.glob("part-*.parquet"))
        assert len(parts_before) >= 3

        srv.start()
        after = api.get(f"/jobs/{job_id}").json()["job"]
        assert after["rows_processed"] >= 6, "finished chunks survive the crash"
        job = wait_status(api, job_id, timeout=60)
        assert job["status"] == "SUCCEEDED" and job["rows_processed"] == 24
        table = pq.read_table(io.BytesIO(api.get(f"/jobs/{job_id}/results", params={"include_inputs": "true"}).content))
        assert table["inputs"].to_pylist() == rows
        assert table["outputs"].to_pylist() == rows  # complete, in input order, no row twice
        assert job["input_tokens"] == sum(len(r.split()) for r in rows)  # each chunk counted once
        # the job finished before the crash is intact
        assert wait_status(api, finished)["status"] == "SUCCEEDED"
        assert api.post("/job-results", json={"job_id": finished}).json()["results"]["outputs"] == [
            "done before the crash", "second"]
        api.close()


def test_second_server_on_the_same_data_dir_refuses_to_start(tmp_path):
    config = {"models": {"echo": {"engine": "echo"}}}
    with LocalServer(tmp_path / "data", config) as first:
        second = LocalServer(tmp_path / "data", config, startup_timeout=30)
        with pytest.raises(RuntimeError, match="in use by another sutro-local server"):
            second.start()
        with api_client(first.url, first.api_key) as api:  # the first one is unaffected
            assert wait_status(api, submit(api, model="echo", inputs=["x"]))["status"] == "SUCCEEDED"
        first.restart()  # graceful stop releases the lock; the same server comes back
        with api_client(first.url, first.api_key) as api:
            assert len(api.get("/list-jobs").json()["jobs"]) == 1
