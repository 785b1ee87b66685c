"""Every multi-step client operation, written once as a generator and driven by both clients.

An operation yields *effects* (``Call``: send one HTTP request; ``Sleep``; ``Blocking``: run a
function that touches disk; ``Lines``: read an NDJSON stream) and receives their results. The sync
client performs effects with ``httpx.Client`` and ``time.sleep``; the async client with
``httpx.AsyncClient``, ``asyncio.sleep`` and ``asyncio.to_thread``. So retry, polling, reattach and
results logic exist exactly once (the pattern httpx itself uses for its two clients).

Example:
    >>> gen = get_job(RetryPolicy(), "job-1")   # driven by SutroClient._run / AsyncSutroClient._run
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx

from . import protocol
from .errors import (
    CostLimitExceededError,
    InputValidationError,
    JobCancelledError,
    JobFailedError,
    JobNotSucceededError,
    JobTimeoutError,
    RateLimitError,
    ServerError,
    SubmitOutcomeUnknownError,
    SutroAPIError,
    SutroConnectionError,
)
from .idempotency import key_in_description
from .models import Job, JobStatus, Submission
from .protocol import Call
from .request import BatchJobRequest
from .retrying import Deadline, PollPolicy, RetryPolicy

log = logging.getLogger("sutro_core")
T = TypeVar("T")


@dataclass(frozen=True)
class Sleep:
    """Effect: wait this many seconds."""

    seconds: float


@dataclass(frozen=True)
class Blocking:
    """Effect: run a blocking function (disk, parquet); the async client runs it in a thread."""

    fn: Callable[[], Any]


@dataclass(frozen=True)
class Lines:
    """Effect: stream an NDJSON response, handing each parsed line to ``on_line``."""

    call: Call[None]
    on_line: Callable[[dict[str, Any]], None]


Effect = Call[Any] | Sleep | Blocking | Lines
Op = Generator[Effect, Any, T]

# Transport failures where a request certainly never reached the server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def send(policy: RetryPolicy, call: Call[T]) -> Op[T]:
    """Send one call; retry it on transient failures when it is safe (never a submit)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            response: httpx.Response = yield call
        except httpx.TransportError as exc:
            if not call.safe or attempt > policy.max_retries:
                raise SutroConnectionError(f"{call.method} {_where(exc, call)} failed: {exc!r}") from exc
            log.warning("%s %s: %r; retry %d/%d", call.method, call.path, exc, attempt, policy.max_retries)
            yield Sleep(policy.delay(attempt))
            continue
        if response.is_success:
            return call.parse(response)
        error = protocol.error_from_response(response)
        if call.safe and attempt <= policy.max_retries and protocol.is_transient(error, results=call.results):
            retry_after = error.retry_after if isinstance(error, RateLimitError) else None
            log.warning("%s %s: HTTP %d; retry %d/%d", call.method, call.path, error.status_code,
                        attempt, policy.max_retries)
            yield Sleep(policy.delay(attempt, retry_after))
            continue
        raise error


def _where(exc: httpx.TransportError, call: Call[Any]) -> str:
    """The full URL that failed (a wrong SUTRO_API_URL shows at once), else the call's path."""
    try:
        return str(exc.request.url)
    except RuntimeError:  # httpx raises when the error carries no request
        return call.path


def get_job(policy: RetryPolicy, job_id: str) -> Op[Job]:
    """The job's record."""
    return (yield from send(policy, protocol.get_job_call(job_id)))


def jobs_with_key(policy: RetryPolicy, key: str) -> Op[list[Job]]:
    """Jobs whose description carries idempotency ``key``, newest first."""
    jobs = yield from send(policy, protocol.list_jobs_call())
    matches = [j for j in jobs if key_in_description(j.description) == key]
    return sorted(matches, key=lambda j: (j.created_at is not None, j.created_at or 0), reverse=True)


def find_job(policy: RetryPolicy, key: str) -> Op[Job | None]:
    """The newest job carrying idempotency ``key``, or None."""
    matches = yield from jobs_with_key(policy, key)
    return matches[0] if matches else None


def submit_job(
    policy: RetryPolicy,
    request: BatchJobRequest,
    idempotency_key: str | None,
    reattach: bool = True,
    *,
    poll: PollPolicy | None = None,
    max_cost_usd: float | None = None,
    estimate_cost: bool = False,
) -> Op[Submission]:
    """Submit once, or reattach to the job an earlier try submitted under the same key.

    A QUEUED/STARTING/RUNNING/SUCCEEDED job with the key is reattached to; none, or only FAILED or
    CANCELLED ones, means submit. Only a job about to be submitted is dry-run first, when
    ``max_cost_usd`` is set (``CostLimitExceededError`` above it, before anything billed) or
    ``estimate_cost`` asks for the estimate: a reattaching retry was gated when its job was submitted.
    The submit itself is never retried: when its response is lost (5xx/524 or a dropped connection
    after sending), the key is looked up again; if no new job shows up, ``SubmitOutcomeUnknownError``
    is raised and nothing is resubmitted.
    """
    if max_cost_usd is not None and (isinstance(max_cost_usd, bool) or not max_cost_usd >= 0):
        raise InputValidationError("max_cost_usd", f"must be a dollar amount >= 0 (e.g. 5.0), got {max_cost_usd!r}; None disables the gate")
    payload = request.payload(idempotency_key)  # validates before any request
    known: set[str] = set()
    if idempotency_key and reattach:
        for job in (yield from jobs_with_key(policy, idempotency_key)):
            if job.status.is_reattachable:
                log.info("reattaching to job %s (%s) for key %s", job.job_id, job.status.value, idempotency_key)
                return Submission(job_id=job.job_id, reattached=True, status=job.status,
                                  idempotency_key=idempotency_key)
            known.add(job.job_id)
    estimate: float | None = None
    if max_cost_usd is not None or estimate_cost:
        estimate = yield from estimate_cost_op(policy, poll or PollPolicy(), request)
        if max_cost_usd is not None and estimate > max_cost_usd:
            raise CostLimitExceededError(estimate, max_cost_usd)
        log.info("cost estimate $%.6g%s", estimate, f" (limit ${max_cost_usd:.6g})" if max_cost_usd is not None else "")
    try:
        job_id = yield from send(policy, protocol.submit_call(payload))
    except SutroConnectionError as exc:
        if isinstance(exc.__cause__, _NOT_SENT):
            raise
        lost: Exception = exc
    except ServerError as exc:
        lost = exc
    else:
        log.info("submitted job %s (%s, %s rows)", job_id, request.model, request.num_rows)
        return Submission(job_id=job_id, reattached=False, status=JobStatus.QUEUED, idempotency_key=idempotency_key,
                          cost_estimate=estimate)
    if not idempotency_key:
        raise SubmitOutcomeUnknownError(
            f"the submit's response was lost ({lost}); a job may have been created. "
            "Check list_jobs() before submitting again (pass idempotency_key= to recover automatically)",
            idempotency_key=None,
        ) from lost
    log.warning("submit response lost (%s); looking the job up by idempotency key %s", lost, idempotency_key)
    for attempt in range(1, 6):  # about 15 s with the default policy
        yield Sleep(policy.delay(attempt, jitter=False))
        try:
            matches = yield from jobs_with_key(policy, idempotency_key)
        except (SutroConnectionError, ServerError):
            continue
        fresh = [j for j in matches if j.job_id not in known]
        if fresh:
            log.info("recovered job %s from a lost submit response", fresh[0].job_id)
            return Submission(job_id=fresh[0].job_id, reattached=True, status=fresh[0].status,
                              idempotency_key=idempotency_key, cost_estimate=estimate)
    raise SubmitOutcomeUnknownError(
        f"the submit's response was lost ({lost}) and no job with idempotency key {idempotency_key} appeared; "
        "nothing was resubmitted. Retry the step: it looks the key up again before submitting",
        idempotency_key=idempotency_key,
    ) from lost


def raise_for_terminal(job: Job) -> None:
    """Raise the matching error for a FAILED or CANCELLED job."""
    if job.status is JobStatus.FAILED:
        raise JobFailedError(job.job_id, job.failure_reason)
    if job.status is JobStatus.CANCELLED:
        raise JobCancelledError(job.job_id)


def wait_for_job(
    policy: RetryPolicy,
    poll: PollPolicy,
    job_id: str,
    *,
    timeout: float | None = 7200,
    deadline: float | datetime | None = None,
    on_status: Callable[[JobStatus], None] | None = None,
) -> Op[Job]:
    """Poll until the job is terminal; return it only when SUCCEEDED.

    Backoff with jitter between polls; polls that still fail after their own retries count against
    ``poll.max_transient_errors``; 4xx errors (bad key, unknown job) fail at once.
    """
    limit = Deadline.of(deadline, timeout)
    intervals = poll.intervals()
    errors = 0
    status = JobStatus.UNKNOWN
    last: JobStatus | None = None
    while True:
        try:
            status = yield from send(policy, protocol.get_job_status_call(job_id))
            errors = 0
        except (SutroConnectionError, ServerError, RateLimitError) as exc:
            errors += 1
            if errors > poll.max_transient_errors:
                raise
            log.warning("polling job %s failed (%s); %d/%d transient errors", job_id, exc, errors,
                        poll.max_transient_errors)
        if status != last:
            log.info("job %s is %s", job_id, status.value)
            if on_status is not None:
                on_status(status)
            last = status
        if status.is_terminal:
            job = yield from get_job(policy, job_id)
            raise_for_terminal(job)
            return job
        remaining = limit.remaining()
        if remaining <= 0:
            raise JobTimeoutError(job_id, status.value, limit.elapsed())
        yield Sleep(min(next(intervals), remaining))


def succeeded_job(policy: RetryPolicy, job_id: str) -> Op[Job]:
    """The job, checked to be SUCCEEDED before results are asked for."""
    job = yield from get_job(policy, job_id)
    raise_for_terminal(job)
    if job.status is not JobStatus.SUCCEEDED:
        raise JobNotSucceededError(job_id, job.status.value)
    return job


def estimate_cost_op(policy: RetryPolicy, poll: PollPolicy, request: BatchJobRequest, timeout: float = 600) -> Op[float]:
    """Run the request as a dry run and return its cost estimate in dollars."""
    submission = yield from submit_job(policy, request.as_dry_run(), None)
    job = yield from wait_for_job(policy, poll, submission.job_id, timeout=timeout)
    if job.cost_estimate is None:
        raise SutroAPIError(200, f"dry run {job.job_id} finished without a cost_estimate")
    return float(job.cost_estimate)
