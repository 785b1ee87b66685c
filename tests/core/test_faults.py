"""Faults a real server cannot produce on demand: lost submit responses (524, dropped connection),
connection refusal, truncated bodies. Uses httpx.MockTransport, for both clients.

The in-memory service here only counts what reached it; every other behaviour is tested against
the real sutro-local server.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import httpx
import polars as pl
import pytest

from sutro_core import (
    AsyncSutroClient,
    AuthenticationError,
    BatchJobRequest,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
    PollPolicy,
    RetryPolicy,
    SubmitOutcomeUnknownError,
    SutroClient,
    SutroConnectionError,
    idempotency_key,
)

FAST = RetryPolicy(max_retries=3, base_delay=0.001, max_delay=0.01)
FAST_POLL = PollPolicy(initial_interval=0.001, max_interval=0.01, max_transient_errors=2)


class Service:
    """Just enough of the API to observe requests: jobs created, calls made, scripted faults."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.faults: dict[str, list[Any]] = {}  # path prefix -> queue of faults to apply in order
        self.status_sequence: list[str] = []

    def fault(self, prefix: str, *faults: Any) -> None:
        self.faults.setdefault(prefix, []).extend(faults)

    def _next_fault(self, path: str) -> Any:
        for prefix, queue in self.faults.items():
            if path.startswith(prefix) and queue:
                return queue.pop(0)
        return None

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1/")  # clients address <origin>/v1
        self.calls.append(f"{request.method} {path}")
        fault = self._next_fault(path)
        if fault == "refuse":
            raise httpx.ConnectError("refused", request=request)
        if isinstance(fault, int) and fault != 524:
            headers = {"Retry-After": "0.01"} if fault == 429 else {}
            return httpx.Response(fault, json={"detail": f"injected {fault}", "code": "injected"}, headers=headers)
        if request.headers.get("authorization") != "Key good":
            return httpx.Response(401, json={"detail": "invalid API key", "request_id": "r-1"})
        response = self._serve(request, path)
        if fault == 524:  # the service did the work, the edge timed out
            return httpx.Response(524, text="<html>timeout</html>")
        if fault == "drop":  # the service did the work, the connection died before the answer
            raise httpx.ReadError("connection reset", request=request)
        if fault == "truncate":
            return httpx.Response(200, stream=Truncated(response.content))
        return response

    def _serve(self, request: httpx.Request, path: str) -> httpx.Response:
        if path == "batch-inference":
            body = json.loads(request.content)
            job_id = f"job-{len(self.jobs) + 1}"
            self.jobs[job_id] = {"job_id": job_id, "status": "QUEUED", "description": body["description"],
                                 "model": body["model"], "num_rows": len(body["inputs"]),
                                 "created_at": f"2026-11-22T00:00:{len(self.jobs):02d}Z"}
            return httpx.Response(200, json={"results": job_id})
        if path == "list-jobs":
            return httpx.Response(200, json={"jobs": list(self.jobs.values())})
        if path.startswith("job-status/"):
            job = self.jobs.get(path.split("/", 1)[1])
            if job is None:
                return httpx.Response(404, json={"detail": "job not found"})
            if self.status_sequence:
                job["status"] = self.status_sequence.pop(0)
            return httpx.Response(200, json={"job_status": {job["job_id"]: job["status"]}})
        if path.startswith("jobs/") and path.endswith("/results"):
            buf = io.BytesIO()
            pl.DataFrame({"outputs": [f"out-{i}" for i in range(1000)]}).write_parquet(buf)
            return httpx.Response(200, content=buf.getvalue())
        if path.startswith("jobs/"):
            job = self.jobs.get(path.split("/", 1)[1])
            if job is None:
                return httpx.Response(404, json={"detail": "job not found"})
            return httpx.Response(200, json={"job": job})
        return httpx.Response(404, json={"detail": "no route"})


class Truncated(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that stops half way with a dropped connection."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def __iter__(self):
        yield self.content[: len(self.content) // 2]
        raise httpx.ReadError("connection reset mid-body")

    async def __aiter__(self):
        yield self.content[: len(self.content) // 2]
        raise httpx.ReadError("connection reset mid-body")


@pytest.fixture(params=["sync", "async"])
def make(request):
    """Build a client of either kind over the Service; returns (service, call) where call runs a method."""

    def build(key: str = "good"):
        service = Service()
        if request.param == "sync":
            client = SutroClient(key, "http://sutro.test", retry=FAST, poll=FAST_POLL,
                                 transport=httpx.MockTransport(service.handler))
            return service, lambda name, *a, **kw: getattr(client, name)(*a, **kw)
        client = AsyncSutroClient(key, "http://sutro.test", retry=FAST, poll=FAST_POLL,
                                  transport=httpx.MockTransport(service.handler))
        return service, lambda name, *a, **kw: asyncio.run(getattr(client, name)(*a, **kw))

    return build


def request_and_key():
    req = BatchJobRequest.for_inference(["a", "b"], "m")
    return req, idempotency_key("test", "step-1", fingerprint=req.fingerprint)


@pytest.mark.parametrize("fault", [524, "drop"])
def test_lost_submit_response_is_recovered_by_key(make, fault):
    service, call = make()
    service.fault("batch-inference", fault)
    req, key = request_and_key()
    sub = call("submit_job", req, key)
    assert sub.job_id == "job-1" and sub.reattached
    assert len(service.jobs) == 1
    assert service.calls.count("POST batch-inference") == 1  # never resubmitted


def test_submit_error_without_a_job_raises_outcome_unknown_and_does_not_resubmit(make):
    service, call = make()
    service.fault("batch-inference", 502)  # the gateway failed before the service created anything
    req, key = request_and_key()
    with pytest.raises(SubmitOutcomeUnknownError, match="nothing was resubmitted"):
        call("submit_job", req, key)
    assert service.calls.count("POST batch-inference") == 1 and not service.jobs


def test_lost_submit_without_key_is_never_retried(make):
    service, call = make()
    service.fault("batch-inference", 524)
    req, _ = request_and_key()
    with pytest.raises(SubmitOutcomeUnknownError, match="may have been created"):
        call("submit_job", req, None)
    assert service.calls.count("POST batch-inference") == 1


def test_refused_submit_is_not_retried_and_says_so(make):
    service, call = make()
    service.fault("batch-inference", "refuse")
    req, key = request_and_key()
    with pytest.raises(SutroConnectionError):
        call("submit_job", req, key)
    assert service.calls.count("POST batch-inference") == 1 and not service.jobs


def test_retry_of_a_step_reattaches_instead_of_submitting(make):
    service, call = make()
    req, key = request_and_key()
    first = call("submit_job", req, key)
    second = call("submit_job", req, key)
    assert (first.reattached, second.reattached) == (False, True)
    assert second.job_id == first.job_id and len(service.jobs) == 1
    service.jobs[first.job_id]["status"] = "FAILED"
    third = call("submit_job", req, key)  # a failed job is not reused
    assert not third.reattached and third.job_id != first.job_id and len(service.jobs) == 2


def test_reads_retry_transient_errors_and_honour_retry_after(make):
    service, call = make()
    service.jobs["job-1"] = {"job_id": "job-1", "status": "RUNNING"}
    service.fault("job-status/", 503, 429, "drop")
    assert call("get_job_status", "job-1").value == "RUNNING"
    assert service.calls.count("GET job-status/job-1") == 4


def test_reads_give_up_after_the_retry_budget(make):
    service, call = make()
    service.fault("job-status/", 503, 503, 503, 503)
    with pytest.raises(Exception, match="503"):
        call("get_job_status", "job-1")
    assert service.calls.count("GET job-status/job-1") == 4


def test_client_errors_fail_fast_with_details(make):
    service, call = make()
    with pytest.raises(NotFoundError, match="job not found"):
        call("get_job_status", "nope")
    assert service.calls == ["GET job-status/nope"]
    _, bad = make(key="bad")
    with pytest.raises(AuthenticationError) as info:
        bad("list_jobs")
    assert info.value.status_code == 401 and info.value.request_id == "r-1"


def test_wait_survives_a_budget_of_transient_errors_then_fails_with_reason(make):
    service, call = make()
    service.jobs["job-1"] = {"job_id": "job-1", "status": "RUNNING", "failure_reason": {"message": "row 3 too long"}}
    service.status_sequence = ["RUNNING", "RUNNING", "FAILED"]
    service.fault("job-status/", 503, 503, 503, 503)  # one poll's worth of retries exhausted: within budget
    with pytest.raises(JobFailedError, match="row 3 too long"):
        call("await_job_completion", "job-1", obtain_results=False)


def test_wait_times_out_against_the_deadline(make):
    service, call = make()
    service.jobs["job-1"] = {"job_id": "job-1", "status": "RUNNING"}
    with pytest.raises(JobTimeoutError, match="still RUNNING"):
        call("await_job_completion", "job-1", timeout=0.05, obtain_results=False)


def test_download_survives_a_dropped_body_and_leaves_no_partial_file(make, tmp_path):
    service, call = make()
    service.jobs["job-1"] = {"job_id": "job-1", "status": "SUCCEEDED", "model": "m", "num_rows": 1000}
    service.fault("jobs/job-1/results", "truncate")
    manifest = call("download_results", "job-1", tmp_path / "out" / "r.parquet")
    assert manifest.rows == 1000 and pl.read_parquet(manifest.uri)["outputs"][999] == "out-999"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["r.parquet"]


def test_download_that_keeps_failing_leaves_nothing(make, tmp_path):
    service, call = make()
    service.jobs["job-1"] = {"job_id": "job-1", "status": "SUCCEEDED"}
    service.fault("jobs/job-1/results", *["truncate"] * 4)
    with pytest.raises(SutroConnectionError):
        call("download_results", "job-1", tmp_path / "r.parquet")
    assert list(tmp_path.iterdir()) == []
