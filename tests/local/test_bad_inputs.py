"""Bad requests get a clear 4xx naming the field and the fix, never a 500; quotas give 429 + Retry-After."""

from __future__ import annotations

import pytest

from sutro_local.testing import LocalServer

from .helpers import api_client, submit

MODEL = "all-minilm-l6-v2"


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"model": MODEL, "inputs": []}, "'inputs' is empty"),
        ({"model": MODEL, "inputs": ["ok", 3]}, "inputs[1] is int"),
        ({"model": MODEL, "inputs": ["ok", None]}, "inputs[1] is NoneType"),
        ({"model": MODEL, "inputs": "not a url"}, "http(s) URL"),
        ({"model": MODEL, "inputs": {"a": 1}}, "must be a list"),
        ({"model": MODEL}, "must be a list"),
        ({"model": "gpt-17", "inputs": ["x"]}, "available models: all-minilm-l6-v2, echo, slow-embed"),
        ({"inputs": ["x"]}, "'model' is required"),
        ({"model": MODEL, "inputs": ["x"], "name": "n" * 46}, "'name' is 46 characters; the limit is 45"),
        ({"model": MODEL, "inputs": ["x"], "description": "d" * 513}, "the limit is 512"),
        ({"model": MODEL, "inputs": ["x"], "json_schema": {"type": "nope"}}, "not a valid JSON Schema"),
        ({"model": MODEL, "inputs": ["x"], "json_schema": "object"}, "'json_schema' must be a JSON Schema"),
        ({"model": MODEL, "inputs": ["x"], "json_schema": {"type": "object"}}, "does not apply to embedding"),
        ({"model": MODEL, "inputs": ["x"], "job_priority": 7}, "'job_priority' must be 0"),
        ({"model": MODEL, "inputs": ["x"], "sampling_params": [1]}, "'sampling_params' must be an object"),
        ({"model": MODEL, "inputs": ["x"], "truncate_rows": "yes"}, "'truncate_rows' must be true or false"),
        ({"model": MODEL, "inputs": ["x"], "colour": "blue"}, "unknown field(s) ['colour']"),
        ({"model": "ticket-triage", "inputs": [{"body": "x"}]}, "missing field 'text'"),
        ({"model": "ticket-triage", "inputs": [3]}, "must be an object with the fields ['text']"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_submit_is_400_naming_the_field(api, body, needle):
    r = api.post("/batch-inference", json=body)
    assert r.status_code == 400, r.text
    err = r.json()
    assert needle in err["detail"] and err["code"] and err["request_id"]
    assert api.get("/list-jobs").json()["jobs"] == []  # nothing was created


def test_malformed_json_body_is_400(api):
    r = api.post("/batch-inference", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_request"


def test_unknown_route_and_job_are_json_404(api):
    assert api.get("/no-such-route").json()["code"] == "not_found"
    r = api.get("/jobs/job-doesnotexist")
    assert r.status_code == 404 and r.json()["code"] == "job_not_found"
    assert api.post("/job-results", json={}).status_code == 400


def test_quota_exceeded_is_429_with_retry_after(tmp_path):
    config = {
        "models": {"slow-embed": {"engine": "echo", "chunk_size": 1, "min_seconds_per_chunk": 0.3}},
        "quotas": [{"job_priority": 0, "row_quota": 5, "token_quota": None},
                   {"job_priority": 1, "row_quota": 100, "token_quota": 20}],
    }
    with LocalServer(tmp_path / "data", config) as srv:
        api = api_client(srv.url, srv.api_key)
        assert api.get("/get-quotas").json()["quotas"][1] == {"job_priority": 1, "row_quota": 100, "token_quota": 20}
        job_id = submit(api, model="slow-embed", inputs=["a", "b", "c", "d"])
        r = api.post("/batch-inference", json={"model": "slow-embed", "inputs": ["e", "f"]})
        assert r.status_code == 429 and r.headers["Retry-After"].isdigit()
        assert r.json()["code"] == "quota_exceeded" and "row_quota for job_priority 0 is 5" in r.json()["detail"]
        # other keys have their own quota; dry runs never count
        other = api_client(srv.url, srv.create_key("other"))
        assert other.post("/batch-inference", json={"model": "slow-embed", "inputs": ["e", "f"]}).status_code == 200
        assert api.post("/batch-inference", json={"model": "slow-embed", "inputs": ["e", "f"], "cost_estimate": True}).status_code == 200
        r = api.post("/batch-inference", json={"model": "slow-embed", "inputs": ["x" * 200], "job_priority": 1})
        assert r.status_code == 429 and "token_quota" in r.json()["detail"]
        api.get(f"/job-cancel/{job_id}")
        api.close()
        other.close()
