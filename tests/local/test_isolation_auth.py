"""Auth and per-key isolation: no/wrong key 401; another key's jobs and Functions are 404."""

from __future__ import annotations

import pytest

from .helpers import api_client, submit, wait_status


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Key wrong"}, {"Authorization": "Basic abc"}])
def test_missing_or_wrong_key_is_401_json(sutro_server, headers):
    import httpx

    for method, path in [("GET", "/auth/check"), ("GET", "/list-jobs"), ("POST", "/batch-inference"),
                         ("GET", "/get-quotas"), ("POST", "/functions/ticket-triage/run")]:
        r = httpx.request(method, sutro_server.url + path, headers=headers, json={})
        assert r.status_code == 401, (path, r.text)
        assert r.json()["code"] in ("missing_api_key", "invalid_api_key", "malformed_authorization")
        assert "detail" in r.json()


def test_key_created_while_running_works_at_once(sutro_server):
    key = sutro_server.create_key("late")
    with api_client(sutro_server.url, key) as api:
        assert api.get("/auth/check").json()["key_name"] == "late"


def test_other_keys_jobs_are_invisible(api, other_api):
    job_id = submit(api, model="all-minilm-l6-v2", inputs=["mine"])
    assert wait_status(api, job_id)["status"] == "SUCCEEDED"
    assert other_api.get("/list-jobs").json()["jobs"] == []
    for method, path, body in [
        ("GET", f"/job-status/{job_id}", None), ("GET", f"/jobs/{job_id}", None),
        ("GET", f"/job-cancel/{job_id}", None), ("POST", "/job-results", {"job_id": job_id}),
        ("GET", f"/jobs/{job_id}/results", None), ("GET", f"/jobs/{job_id}/results-url", None),
        ("GET", f"/stream-job-progress/{job_id}", None),
    ]:
        r = other_api.request(method, path, json=body)
        assert r.status_code == 404 and r.json()["code"] == "job_not_found", (path, r.text)
    assert api.get(f"/job-status/{job_id}").json()["job_status"][job_id] == "SUCCEEDED"


def test_published_function_is_private_to_its_key(api, other_api):
    definition = {
        "name": "sentiment", "type": "classification", "inputs": ["text"],
        "labels": [{"name": "positive", "description": "happy, pleased, great"},
                   {"name": "negative", "description": "angry, disappointed, terrible"}],
    }
    assert api.post("/functions", json=definition).json() == {"name": "sentiment", "type": "classification", "revision": 1}
    assert api.post("/functions/sentiment/run", json={"input": {"text": "I love it"}}).json()["response"] == "positive"
    r = other_api.post("/functions/sentiment/run", json={"input": {"text": "I love it"}})
    assert r.status_code == 404 and r.json()["code"] == "function_not_found"
    r = other_api.post("/batch-inference", json={"model": "sentiment", "inputs": [{"text": "x"}]})
    assert r.status_code == 400 and r.json()["code"] == "unknown_model"
    # shared config Functions are visible to both
    assert {f["name"] for f in other_api.get("/functions").json()["functions"]} == {"ticket-triage"}
