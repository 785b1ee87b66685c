"""Many waits on one ``AsyncSutroClient`` share ``list-jobs`` reads (core/sutro_core/status_batch.py, issue 17 goal 1).

Outcomes and request counts against the real sutro-local; the faults a real server cannot produce (a listing
that omits a job, answers 404/503, or hangs) through httpx.MockTransport.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest
from sutro_core import (
    AsyncSutroClient,
    InputValidationError,
    JobCancelledError,
    JobFailedError,
    JobStatus,
    JobTimeoutError,
    PollPolicy,
    RetryPolicy,
    ServerError,
)

EMBED = "all-minilm-l6-v2"
LONG_ROW = "word " * 2000  # over MiniLM's 256-token window: the job FAILS with truncate_rows=False
FAST = PollPolicy(initial_interval=0.2, max_interval=0.4, factor=1.5)


class Counted:
    """Counts the HTTP requests a client sends (by route) and the status polls its waits make."""

    def __init__(self, client: AsyncSutroClient) -> None:
        self.requests: Counter[str] = Counter()
        self.polls = 0
        client._http.event_hooks = {"request": [self._request], "response": []}
        perform = client._perform

        async def counted(effect):
            if getattr(effect, "batch_job_id", None) is not None:
                self.polls += 1
            return await perform(effect)

        client._perform = counted  # type: ignore[method-assign]

    async def _request(self, request: httpx.Request) -> None:
        self.requests[_route(request)[0]] += 1

    @property
    def status_requests(self) -> int:
        return self.requests["job-status"] + self.requests["list-jobs"]


def _route(request: httpx.Request) -> tuple[str, str]:
    """("job-status", "job-1") for ``/v1/job-status/job-1``."""
    path = request.url.path.strip("/")
    route, _, rest = (path.removeprefix("v1/")).partition("/")
    return route, rest


async def _outcome(client: AsyncSutroClient, job_id: str) -> str:
    try:
        job = await client.await_job_completion(job_id, timeout=120, obtain_results=False, show_progress=False)
    except JobFailedError:
        return "FAILED"
    except JobCancelledError:
        return "CANCELLED"
    return job.status.value


async def test_many_waits_end_correctly_with_far_fewer_requests_than_polls(sutro_server, sutro_client, sutro_key):
    ok = [sutro_client.infer([f"ok {i}", "two"], model=EMBED, stay_attached=False) for i in range(10)]
    failing = [sutro_client.infer(["short", LONG_ROW], model=EMBED, truncate_rows=False, stay_attached=False)
               for _ in range(5)]  # fmt: skip
    held = [sutro_client.infer([f"row {i}" for i in range(200)], model="slow-embed", stay_attached=False)
            for _ in range(10)]  # fmt: skip
    expected = {**{j: "SUCCEEDED" for j in ok}, **{j: "FAILED" for j in failing}, **{j: "CANCELLED" for j in held}}
    async with AsyncSutroClient(api_key=sutro_key, api_url=sutro_server.url, poll=FAST) as client:
        counted = Counted(client)

        async def cancel_later() -> None:
            await asyncio.sleep(2.0)  # several rounds of polls first
            for job_id in held:
                await client.cancel_job(job_id)

        ids = list(expected)
        outcomes, _ = await asyncio.gather(asyncio.gather(*(_outcome(client, j) for j in ids)), cancel_later())
    assert dict(zip(ids, outcomes)) == expected
    # Every wait polled several times, yet a fraction of that many status requests went out.
    assert counted.polls >= 3 * len(ids)
    assert counted.requests["list-jobs"] >= 1
    assert counted.status_requests * 3 <= counted.polls, (counted.requests, counted.polls)


async def test_a_lone_wait_reads_its_own_status(sutro_server, sutro_client, sutro_key):
    job_id = sutro_client.infer(["a", "b"], model=EMBED, stay_attached=False)
    async with AsyncSutroClient(api_key=sutro_key, api_url=sutro_server.url, poll=FAST) as client:
        counted = Counted(client)
        assert await _outcome(client, job_id) == "SUCCEEDED"
    assert counted.requests["list-jobs"] == 0 and counted.requests["job-status"] == counted.polls >= 1


async def test_get_job_status_is_never_batched(sutro_server, sutro_client, sutro_key):
    ids = [sutro_client.infer([f"x {i}"], model=EMBED, stay_attached=False) for i in range(6)]
    async with AsyncSutroClient(api_key=sutro_key, api_url=sutro_server.url) as client:
        counted = Counted(client)
        statuses = await asyncio.gather(*(client.get_job_status(j) for j in ids))
    assert all(isinstance(s, JobStatus) for s in statuses)
    assert counted.requests == Counter({"job-status": 6})


def test_status_batch_window_is_validated():
    with pytest.raises(InputValidationError, match="status_batch_window"):
        AsyncSutroClient(api_key="k", api_url="http://127.0.0.1:9", status_batch_window=-1)


# ---- faults a real server cannot produce -----------------------------------------------------------


class FakeSutro:
    """Jobs that turn SUCCEEDED after ``polls_to_finish`` status answers each; ``listed``: the jobs
    list-jobs shows (a capped listing); ``listing``: "ok", a status code to answer with, or "hang"."""

    def __init__(self, job_ids: list[str], listed: set[str], *, listing: object = "ok", polls_to_finish: int = 3):
        self.answers = Counter[str]()
        self.requests: Counter[str] = Counter()
        self.job_ids, self.listed, self.listing, self.polls_to_finish = job_ids, listed, listing, polls_to_finish

    def _status(self, job_id: str) -> str:
        self.answers[job_id] += 1
        return "SUCCEEDED" if self.answers[job_id] > self.polls_to_finish else "RUNNING"

    async def handle(self, request: httpx.Request) -> httpx.Response:
        route, rest = _route(request)
        self.requests[route] += 1
        if route == "list-jobs":
            if self.listing == "hang":
                await asyncio.sleep(60)
            if isinstance(self.listing, int):
                return httpx.Response(self.listing, json={"detail": "listing unavailable"})
            return httpx.Response(200, json={"jobs": [{"job_id": j, "status": self._status(j)}
                                                      for j in self.job_ids if j in self.listed]})
        if route == "job-status":
            return httpx.Response(200, json={"job_status": {rest: self._status(rest)}})
        if route == "jobs":
            return httpx.Response(200, json={"job": {"job_id": rest, "status": "SUCCEEDED"}})
        return httpx.Response(404, json={"detail": "no such route"})


def _client(fake: FakeSutro, **kwargs: object) -> AsyncSutroClient:
    return AsyncSutroClient(api_key="k", api_url="http://sutro.test", transport=httpx.MockTransport(fake.handle),
                            **kwargs)  # type: ignore[arg-type]


async def test_a_job_missing_from_list_jobs_falls_back_to_its_own_status_read():
    ids = [f"job-{i}" for i in range(8)]
    listed = set(ids[:6])
    fake = FakeSutro(ids, listed)
    async with _client(fake, poll=FAST) as client:
        jobs = await asyncio.gather(*(client.await_job_completion(j, timeout=30, obtain_results=False,
                                                                  show_progress=False) for j in ids))
    assert [j.job_id for j in jobs] == ids and all(j.status is JobStatus.SUCCEEDED for j in jobs)
    assert fake.requests["list-jobs"] >= 1
    # The two unlisted jobs were read one by one; the listed ones (almost) never needed to be.
    assert fake.requests["job-status"] >= 2 * fake.polls_to_finish
    assert fake.requests["job-status"] < len(ids) * fake.polls_to_finish


async def test_a_server_without_list_jobs_turns_batching_off(caplog):
    ids = [f"job-{i}" for i in range(6)]
    fake = FakeSutro(ids, set(ids), listing=404)
    async with _client(fake, poll=FAST) as client:
        jobs = await asyncio.gather(*(client.await_job_completion(j, timeout=30, obtain_results=False,
                                                                  show_progress=False) for j in ids))
    assert all(j.status is JobStatus.SUCCEEDED for j in jobs)
    assert fake.requests["list-jobs"] == 1  # tried once, then every poll read its own status
    assert "polling each job on its own" in caplog.text


async def test_a_failed_listing_counts_as_one_failed_poll_for_each_wait():
    ids = [f"job-{i}" for i in range(6)]
    fake = FakeSutro(ids, set(ids), listing=503)
    no_budget = PollPolicy(initial_interval=0.2, max_transient_errors=0)
    async with _client(fake, poll=no_budget, retry=RetryPolicy(max_retries=0)) as client:
        results = await asyncio.gather(*(client.await_job_completion(j, timeout=30, obtain_results=False,
                                                                     show_progress=False) for j in ids),
                                       return_exceptions=True)
    assert all(isinstance(r, ServerError) and r.status_code == 503 for r in results), results
    assert fake.requests["list-jobs"] == 1 and fake.requests["job-status"] == 0


async def test_a_hung_listing_holds_no_wait_past_its_deadline():
    ids = [f"job-{i}" for i in range(6)]
    fake = FakeSutro(ids, set(ids), listing="hang", polls_to_finish=10**6)
    timeouts = [1.0, 1.0, 1.0, 2.0, 2.0, 3.0]  # the nearer deadlines must not wait for the batch
    async with _client(fake, poll=FAST) as client:

        async def timed(job_id: str, timeout: float) -> float:
            began = time.monotonic()
            with pytest.raises(JobTimeoutError):
                await client.await_job_completion(job_id, timeout=timeout, obtain_results=False, show_progress=False)
            return time.monotonic() - began

        waited = await asyncio.gather(*(timed(j, t) for j, t in zip(ids, timeouts)))
    for took, timeout in zip(waited, timeouts):
        assert took < timeout * 1.1 + 0.5, (took, timeout)
    assert fake.requests["list-jobs"] == 1


async def test_statuses_from_a_listing_are_what_the_server_listed():
    # A batched answer parses exactly as a job-status answer would (the wait logs each change once).
    fake = FakeSutro(["job-a", "job-b", "job-c", "job-d"], {"job-a", "job-b", "job-c", "job-d"}, polls_to_finish=1)
    seen: dict[str, list[str]] = {}
    async with _client(fake, poll=FAST) as client:
        await asyncio.gather(*(client.await_job_completion(
            j, timeout=30, obtain_results=False, show_progress=False,
            on_status=lambda s, j=j: seen.setdefault(j, []).append(s.value)) for j in fake.job_ids))
    assert seen == {j: ["RUNNING", "SUCCEEDED"] for j in fake.job_ids}
