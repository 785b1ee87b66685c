"""Helpers for the sutro-local HTTP tests (plain httpx against a real server process)."""

from __future__ import annotations

import time

import httpx

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def api_client(url: str, key: str | None) -> httpx.Client:
    """An httpx client for the server, authenticated with `key` (None: no header)."""
    headers = {"Authorization": f"Key {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=60)


def submit(api: httpx.Client, **body) -> str:
    """Submit a job and return its id (asserts 200)."""
    r = api.post("/batch-inference", json=body)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def wait_status(api: httpx.Client, job_id: str, statuses=TERMINAL, timeout: float = 60) -> dict:
    """Poll jobs/{id} until its status is in `statuses`; returns the job record."""
    deadline = time.monotonic() + timeout
    while True:
        job = api.get(f"/jobs/{job_id}").json()["job"]
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout}s"
        time.sleep(0.1)
