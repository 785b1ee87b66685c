"""The core client through the fault proxy against the real sutro-local server.

Waiting and downloading survive every injected fault; a submit whose answer is lost after the
server accepted it is recovered through the idempotency key with exactly one job on the server, and
a submit is never sent twice.
"""

from __future__ import annotations

import time
import uuid

import polars as pl
import pyarrow.parquet as pq
import pytest

from sutro_core import (
    AsyncSutroClient,
    BatchJobRequest,
    JobStatus,
    RateLimitError,
    RetryPolicy,
    SubmitOutcomeUnknownError,
    SutroClient,
    SutroConnectionError,
    idempotency_key,
)

from .conftest import FAST_POLL, FAST_RETRY
from .proxy import Rule

EMBED = "all-minilm-l6-v2"
ROWS = [f"reliability row {i}: the quick brown fox {i}" for i in range(12)]
SUBMIT = r"^/batch-inference"


def _request(rows=ROWS, model=EMBED) -> BatchJobRequest:
    return BatchJobRequest.for_inference(rows, model=model, description="reliability")


def _key(req: BatchJobRequest) -> str:
    return idempotency_key("reliability", uuid.uuid4().hex, fingerprint=req.fingerprint)


# ---- waiting ----------------------------------------------------------------------------------------

WAIT_FAULTS = {
    "5xx before": [Rule("status_before", path=r"^/job-status", status=s) for s in (500, 502, 503, 524)],
    "5xx after": [Rule("status_after", path=r"^/job-status", status=s) for s in (500, 502, 503, 524)],
    "429 Retry-After": [Rule("rate_limit", path=r"^/job-status", times=2, retry_after=0.2)],
    "drops": [Rule("drop_before", path=r"^/job-status"), Rule("drop_after", path=r"^/job-status", times=2)],
    "slow": [Rule("delay", path=r"^/job-status", seconds=0.6, times=2)],
    "truncated bodies": [Rule("truncate", path=r"^/job-status", keep=5, times=2),
                         Rule("truncate", path=r"^/jobs/", keep=10)],
    "everything": [Rule("status_before", path=r"^/job-status", status=503), Rule("drop_after", path=r"^/jobs/"),
                   Rule("rate_limit", path=r"^/job-status"), Rule("truncate", path=r"^/job-status", keep=3),
                   Rule("status_after", path=r"^/jobs/", status=524)],
}


@pytest.mark.parametrize("faults", list(WAIT_FAULTS), ids=list(WAIT_FAULTS))
def test_await_job_completion_survives(faults, proxy, via_proxy, direct):
    # slow-embed (>= 0.3 s a row): the job runs for seconds, so every rule meets a poll
    job_id = direct.submit_job(_request(ROWS[:6], model="slow-embed")).job_id
    proxy.add(*WAIT_FAULTS[faults])
    job = via_proxy.await_job_completion(job_id, timeout=60, obtain_results=False)
    assert job.status is JobStatus.SUCCEEDED and job.num_rows == 6
    assert all(rule.applied == rule.times for rule in proxy.rules), [(r.action, r.applied) for r in proxy.rules]


def test_client_timeout_on_a_slow_poll_is_retried(proxy, sutro_key, direct):
    job_id = direct.submit_job(_request()).job_id
    proxy.add(Rule("delay", path=r"^/job-status", seconds=1.5))
    with SutroClient(api_key=sutro_key, api_url=proxy.url, retry=FAST_RETRY, poll=FAST_POLL, timeout=0.5) as c:
        assert c.await_job_completion(job_id, timeout=60, obtain_results=False).status is JobStatus.SUCCEEDED
    assert proxy.rules[0].applied == 1


def test_429_retry_after_is_honoured(proxy, reader, finished):
    job_id, via_proxy = finished[1], reader
    proxy.add(Rule("rate_limit", path=r"^/jobs/", retry_after=1))
    started = time.monotonic()
    assert via_proxy.get_job(job_id).status is JobStatus.SUCCEEDED
    assert time.monotonic() - started >= 0.95, "the client waited less than the server's Retry-After"


def test_a_wait_that_never_gets_through_gives_up_with_a_typed_error(proxy, finished):
    sutro_key, job_id = finished
    proxy.add(Rule("status_before", path=r"^/job-status", status=503, times=10_000))
    retry = RetryPolicy(max_retries=1, base_delay=0.01, max_delay=0.01)
    from sutro_core import PollPolicy, ServerError

    poll = PollPolicy(initial_interval=0.01, max_interval=0.02, max_transient_errors=3)
    with SutroClient(api_key=sutro_key, api_url=proxy.url, retry=retry, poll=poll) as c:
        with pytest.raises(ServerError) as err:
            c.await_job_completion(job_id, timeout=60, obtain_results=False)
    assert err.value.status_code == 503


# ---- downloading ------------------------------------------------------------------------------------

DOWNLOAD_FAULTS = {
    "truncated body": [Rule("truncate", path=r"/results\?", keep=200, times=2)],
    "dropped": [Rule("drop_after", path=r"/results\?"), Rule("drop_before", path=r"/results\?")],
    "5xx": [Rule("status_before", path=r"/results\?", status=502), Rule("status_after", path=r"/results\?", status=524)],
    "429": [Rule("rate_limit", path=r"/results\?")],
    "job record faults": [Rule("truncate", path=r"^/jobs/[^/?]+$", keep=20), Rule("status_before", path=r"^/jobs/[^/?]+$")],
}


@pytest.fixture(scope="module")
def finished(sutro_server):
    """(key, job id) of one SUCCEEDED job shared by the read-only tests of this module."""
    key = sutro_server.create_key("reliability-finished")
    with SutroClient(api_key=key, api_url=sutro_server.url, retry=FAST_RETRY, poll=FAST_POLL) as c:
        job_id = c.submit_job(_request()).job_id
        c.await_job_completion(job_id, timeout=120, obtain_results=False)
    return key, job_id


@pytest.fixture
def reader(finished, proxy):
    """A client through the proxy holding the key of the shared finished job."""
    with SutroClient(api_key=finished[0], api_url=proxy.url, retry=FAST_RETRY, poll=FAST_POLL, timeout=10) as c:
        yield c


DOWNLOAD_CASES = [(f, "parquet") for f in DOWNLOAD_FAULTS] + [("truncated body", "csv"), ("dropped", "csv")]


@pytest.mark.parametrize("faults, fmt", DOWNLOAD_CASES, ids=[f"{f}-{m}" for f, m in DOWNLOAD_CASES])
def test_download_results_is_complete_and_atomic(faults, fmt, proxy, reader, finished, tmp_path):
    job_id = finished[1]
    via_proxy = reader
    proxy.add(*DOWNLOAD_FAULTS[faults])
    dest = tmp_path / f"out.{fmt}"
    manifest = via_proxy.download_results(job_id, dest, format=fmt, include_inputs=True)
    assert all(rule.applied == rule.times for rule in proxy.rules)
    df = pl.read_parquet(dest) if fmt == "parquet" else pl.read_csv(dest)
    assert manifest.rows == df.height == len(ROWS)
    assert df["inputs"].to_list() == ROWS, "rows complete and in input order"
    assert sorted(p.name for p in tmp_path.iterdir()) == [dest.name], "no temp or partial files left"
    if fmt == "parquet":
        assert pq.read_metadata(dest).metadata[b"sutro.job_id"].decode() == job_id


def test_download_that_keeps_failing_leaves_no_file(proxy, reader, finished, tmp_path):
    job_id, via_proxy = finished[1], reader
    proxy.add(Rule("truncate", path=r"/results\?", keep=100, times=10_000))
    with pytest.raises(SutroConnectionError):
        via_proxy.download_results(job_id, tmp_path / "out.parquet")
    assert list(tmp_path.iterdir()) == [], "a failed download leaves neither the file nor a temp file"


def test_inline_results_through_faults_are_complete(proxy, reader, finished):
    job_id, via_proxy = finished[1], reader
    proxy.add(Rule("truncate", path=r"/results\?", keep=50), Rule("status_after", path=r"/results\?", status=502))
    df = via_proxy.await_job_completion(job_id, timeout=60, include_inputs=True)
    assert df["inputs"].to_list() == ROWS and len(df["inference_result"][0]) == 384


# ---- submitting -------------------------------------------------------------------------------------

LOST_SUBMIT = {
    "524 after the server accepted": Rule("status_after", path=SUBMIT, status=524),
    "502 after the server accepted": Rule("status_after", path=SUBMIT, status=502),
    "connection dropped after the server accepted": Rule("drop_after", path=SUBMIT),
    "truncated answer": Rule("truncate", path=SUBMIT, keep=0),
}


@pytest.mark.parametrize("fault", list(LOST_SUBMIT), ids=list(LOST_SUBMIT))
def test_lost_submit_is_recovered_with_exactly_one_job(fault, proxy, via_proxy, direct, tally):
    req = _request()
    key = _key(req)
    proxy.add(LOST_SUBMIT[fault])
    sub = via_proxy.submit_job(req, idempotency_key=key)
    assert sub.reattached, "the job id came from the key lookup, not the lost answer"
    assert len(proxy.hits("POST", SUBMIT)) == 1, "the submit was sent exactly once"
    jobs = direct.list_jobs()
    assert [j.job_id for j in jobs] == [sub.job_id], "exactly one job on the server"
    tally["duplicates found"] += len(jobs) - 1
    df = via_proxy.await_job_completion(sub.job_id, timeout=60, include_inputs=True)
    assert df["inputs"].to_list() == ROWS
    # a retry of the whole step reattaches, still one job
    assert via_proxy.submit_job(req, idempotency_key=key).job_id == sub.job_id
    assert len(direct.list_jobs()) == 1 and len(proxy.hits("POST", SUBMIT)) == 1


async def test_lost_submit_is_recovered_by_the_async_client_too(proxy, sutro_key, direct):
    req = _request()
    key = _key(req)
    proxy.add(Rule("status_after", path=SUBMIT, status=524), Rule("status_before", path=r"^/list-jobs", skip=1))
    async with AsyncSutroClient(api_key=sutro_key, api_url=proxy.url, retry=FAST_RETRY, poll=FAST_POLL) as c:
        sub = await c.submit_job(req, idempotency_key=key)
        job = await c.await_job_completion(sub.job_id, timeout=60, obtain_results=False)
    assert job.status is JobStatus.SUCCEEDED
    assert [j.job_id for j in direct.list_jobs()] == [sub.job_id]
    assert len(proxy.hits("POST", SUBMIT)) == 1


def test_recovery_lookup_itself_failing_still_recovers(proxy, via_proxy, direct):
    req = _request()
    proxy.add(Rule("drop_after", path=SUBMIT),
              # the pre-submit lookup passes, then the first recovery lookups fail too
              Rule("status_before", path=r"^/list-jobs", skip=1, times=3, status=503))
    sub = via_proxy.submit_job(req, idempotency_key=_key(req))
    assert [j.job_id for j in direct.list_jobs()] == [sub.job_id]
    assert len(proxy.hits("POST", SUBMIT)) == 1


def test_slow_submit_answer_after_client_timeout_is_recovered(proxy, sutro_key, direct):
    req = _request()
    proxy.add(Rule("delay", path=SUBMIT, seconds=1.0))
    # the recovery window (0.2+0.4+0.8+1.6+3.2 s) outlasts the slow server
    retry = RetryPolicy(max_retries=3, base_delay=0.2, max_delay=5)
    with SutroClient(api_key=sutro_key, api_url=proxy.url, retry=retry, poll=FAST_POLL, timeout=0.4) as c:
        sub = c.submit_job(req, idempotency_key=_key(req))
    assert [j.job_id for j in direct.list_jobs()] == [sub.job_id]
    # The proxy logs the submit once the server's (delayed) answer reaches it, which can come well
    # after the client recovered the job through its key: on a loaded box the server's worker may be
    # importing the embedding model, holding the GIL, while the answer waits (once seen at > 10 s).
    deadline = time.monotonic() + 60
    while not proxy.hits("POST", SUBMIT) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(proxy.hits("POST", SUBMIT)) == 1


@pytest.mark.parametrize("fault", [Rule("status_before", path=SUBMIT, status=503), Rule("drop_before", path=SUBMIT)],
                         ids=["503 before the server", "dropped before the server"])
def test_submit_that_never_arrived_is_not_resubmitted_and_the_step_retry_submits_once(fault, proxy, via_proxy, direct):
    req = _request()
    key = _key(req)
    proxy.add(fault)
    with pytest.raises(SubmitOutcomeUnknownError) as err:
        via_proxy.submit_job(req, idempotency_key=key)
    assert err.value.idempotency_key == key and "nothing was resubmitted" in str(err.value)
    assert direct.list_jobs() == [] and len(proxy.hits("POST", SUBMIT)) == 1
    sub = via_proxy.submit_job(req, idempotency_key=key)  # the orchestrator's retry of the step
    assert not sub.reattached and [j.job_id for j in direct.list_jobs()] == [sub.job_id]


def test_lost_submit_without_a_key_raises_and_never_resubmits(proxy, via_proxy, direct):
    proxy.add(Rule("status_after", path=SUBMIT, status=524))
    with pytest.raises(SubmitOutcomeUnknownError) as err:
        via_proxy.submit_job(_request())
    assert "list_jobs()" in str(err.value)
    assert len(direct.list_jobs()) == 1 and len(proxy.hits("POST", SUBMIT)) == 1


def test_429_on_submit_is_raised_not_retried(proxy, via_proxy, direct):
    req = _request()
    proxy.add(Rule("rate_limit", path=SUBMIT, retry_after=3))
    with pytest.raises(RateLimitError) as err:
        via_proxy.submit_job(req, idempotency_key=_key(req))
    assert err.value.retry_after == 3
    assert direct.list_jobs() == [] and len(proxy.hits("POST", SUBMIT)) == 1


@pytest.mark.parametrize("fault", [Rule("truncate", path=r"^/stream-job-progress", keep=30),
                                   Rule("drop_before", path=r"^/stream-job-progress"),
                                   Rule("status_before", path=r"^/stream-job-progress", status=502)],
                         ids=["truncated stream", "dropped stream", "502 stream"])
def test_attach_falls_back_to_polling_when_the_progress_stream_breaks(fault, proxy, via_proxy, direct):
    job_id = direct.submit_job(_request(ROWS[:6], model="slow-embed")).job_id
    proxy.add(fault)
    job = via_proxy.attach(job_id, show_progress=False)
    assert job.status is JobStatus.SUCCEEDED and fault.applied == 1
    assert proxy.hits("GET", r"^/job-status"), "it fell back to polling"
