"""The official SDK (sutro 0.1.67) calls every route under <SUTRO_API_URL origin>/v1: sutro-local serves both."""

from __future__ import annotations

from .helpers import submit, wait_status


def test_sutro_api_is_served_under_v1_too(api):
    assert api.get("/v1/auth/check").status_code == 200
    job_id = submit(api, model="all-minilm-l6-v2", inputs=["hello"])
    assert wait_status(api, job_id)["status"] == "SUCCEEDED"
    status = api.get(f"/v1/job-status/{job_id}").json()
    assert status == {"job_status": {job_id: "SUCCEEDED"}}
    results = api.post("/v1/job-results", json={"job_id": job_id}).json()["results"]
    assert len(results["outputs"]) == 1 and len(results["outputs"][0]) == 384
    assert api.get("/v1/v1/auth/check").status_code == 404  # one prefix, not a catch-all
