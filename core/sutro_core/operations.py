"""The wire operations (send with retries, reads, wait, download, cancel), each written once as a generator
and driven by both clients; the job lifecycle built on them is in ``lifecycle``.

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
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

import httpx

from . import protocol
from .config import redact
from .errors import JobNotSucceededError, JobTimeoutError, RateLimitError, ServerError, SutroAPIError, SutroConnectionError
from .idempotency import key_in_description
from .models import Job, JobStatus
from .protocol import Call
from .retrying import Deadline, DeadlineReached, PollPolicy, RetryPolicy

log = logging.getLogger("sutro_core")
T = TypeVar("T")


@dataclass(frozen=True)
class Sleep:
    """Effect: wait this many seconds; ``slack``: up to that much longer is fine.

    A wait's pause between polls has slack (``WAKE_SLACK`` of it): the async client ends the pauses of many
    waits on one shared tick, so 1,000 waits wake the event loop ~2 times a second instead of ~33 (each
    wake-up of an idle loop costs ~0.1 ms of CPU on a VM, more than the poll itself). The sync client
    sleeps exactly ``seconds``.
    """

    seconds: float
    slack: float = 0.0


@dataclass(frozen=True)
class Blocking:
    """Effect: run a blocking function (disk, parquet); the async client runs it in a thread."""

    fn: Callable[[], Any]


@dataclass(frozen=True)
class Started:
    """Effect: a step's job started; the driver hands ``handle`` to the orchestrator (to record it) and throws
    back in whatever the orchestrator raised meanwhile (see ``lifecycle.step_op``)."""

    handle: Any


@dataclass(frozen=True)
class Lines:
    """Effect: stream an NDJSON response, handing each parsed line to ``on_line``."""

    call: Call[None]
    on_line: Callable[[dict[str, Any]], None]


Effect = Call[Any] | Sleep | Blocking | Lines | Started
Op = Generator[Effect, Any, T]

# Transport failures where a request certainly never reached the server.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def send(policy: RetryPolicy, call: Call[T], deadline: float | None = None) -> Op[T]:
    """Send one call; retry it on transient failures when it is safe (never a submit).

    ``deadline`` (epoch seconds) bounds every attempt and every pause between attempts: past it the
    transport raises ``DeadlineReached``, and a retry that would sleep beyond it is not made.
    """
    if deadline is not None and (call.deadline is None or deadline < call.deadline):
        call = replace(call, deadline=deadline)
    attempt = 0
    while True:
        attempt += 1
        try:
            response: httpx.Response = yield call
        except httpx.TransportError as exc:
            if not call.safe or attempt > policy.max_retries:
                raise SutroConnectionError(redact(f"{call.method} {_where(exc, call)} failed: {exc!r}")) from exc
            log.warning("%s %s: %s; retry %d/%d", call.method, call.path, redact(repr(exc)), attempt, policy.max_retries)
            yield _pause(call, policy.delay(attempt), exc)
            continue
        if response.is_success:
            return call.parse(response)
        error = protocol.error_from_response(response)
        if call.safe and attempt <= policy.max_retries and protocol.is_transient(error, results=call.results):
            retry_after = error.retry_after if isinstance(error, RateLimitError) else None
            log.warning("%s %s: HTTP %d; retry %d/%d", call.method, call.path, error.status_code,
                        attempt, policy.max_retries)
            yield _pause(call, policy.delay(attempt, retry_after), error)
            continue
        raise error


def _pause(call: Call[Any], seconds: float, cause: BaseException) -> Sleep:
    """The pause before a retry, unless it would end past the call's deadline."""
    if call.deadline is not None and time.time() + seconds >= call.deadline:
        raise DeadlineReached(f"{call.method} {call.path}: no time left for a retry") from cause
    return Sleep(seconds)


def _where(exc: httpx.TransportError, call: Call[Any]) -> str:
    """The full URL that failed (a wrong SUTRO_API_URL shows at once), else the call's path."""
    try:
        return str(exc.request.url)
    except RuntimeError:  # httpx raises when the error carries no request
        return call.path


def get_job(policy: RetryPolicy, job_id: str) -> Op[Job]:
    """The job's record."""
    return (yield from send(policy, protocol.get_job_call(job_id)))


def created_order(job: Job) -> tuple[float, str]:
    # Oldest first; the job id breaks ties so racing clients all pick the same job.
    return (job.created_at.timestamp() if job.created_at else float("inf"), job.job_id)


def jobs_with_key(policy: RetryPolicy, key: str, deadline: float | None = None) -> Op[list[Job]]:
    """Jobs whose description carries idempotency ``key``, newest first."""
    jobs = yield from send(policy, protocol.list_jobs_call(idempotency_key=key), deadline)
    matches = [j for j in jobs if key_in_description(j.description) == key]
    return sorted(matches, key=created_order, reverse=True)


def cancel_quietly(policy: RetryPolicy, job_id: str, why: str, deadline: float | None = None) -> Op[bool]:
    """Cancel a job, best effort: True when the service accepted it; logs instead of raising."""
    try:
        status = yield from send(policy, protocol.cancel_job_call(job_id), deadline)
    except (SutroAPIError, SutroConnectionError, DeadlineReached) as exc:
        log.warning("could not cancel job %s (%s); it may still be running: %s", job_id, why, exc)
        return False
    log.warning("cancelled job %s because %s (now %s)", job_id, why, status.value)
    return True


def find_job(policy: RetryPolicy, key: str) -> Op[Job | None]:
    """The newest job carrying idempotency ``key``, or None."""
    matches = yield from jobs_with_key(policy, key)
    return matches[0] if matches else None


#: How old, as a fraction of the pause before it, a wait's batched status may be: 0.2 of a 30 s pause is 6 s,
#: as much as PollPolicy's own jitter (x0.8-1.2) moves a poll anyway.
BATCHED_STATUS_AGE = 0.2
#: How much later than its pause says a wait's next poll may start, as a fraction of the pause (0.6 s of a
#: 30 s pause, 20 ms of a 1 s one): a tenth of PollPolicy's own jitter, enough for waits to share wake-ups.
WAKE_SLACK = 0.02


def poll_until_done(
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
    ``poll.max_transient_errors``; 4xx errors (bad key, unknown job) fail at once. The polls are
    ``batchable``: the async client may answer many waits' polls from one ``list-jobs`` read
    (``status_batch``) sent at most ``BATCHED_STATUS_AGE`` of the last pause before the poll, each still
    bounded by its own deadline. A pause may end up to ``WAKE_SLACK`` of it late (never past the deadline),
    so that the async client wakes many waits together.
    """
    limit = Deadline.of(deadline, timeout)
    intervals = poll.intervals()
    errors = 0
    status = JobStatus.UNKNOWN
    last: JobStatus | None = None
    slept = 0.0
    polls = protocol.job_status_polls(job_id)
    while True:
        # A batched answer may be up to a fifth of the last pause old: within the policy's own jitter.
        poll_call = polls(BATCHED_STATUS_AGE * slept, limit.at)
        try:
            status = yield from send(policy, poll_call, limit.at)
            errors = 0
        except DeadlineReached as exc:
            raise JobTimeoutError(job_id, status.value, limit.elapsed()) from exc
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
            try:
                job = yield from send(policy, protocol.get_job_call(job_id), limit.at)
            except DeadlineReached as exc:
                raise JobTimeoutError(job_id, status.value, limit.elapsed()) from exc
            job.raise_if_ended()
            return job
        remaining = limit.remaining()
        if remaining <= 0:
            raise JobTimeoutError(job_id, status.value, limit.elapsed())
        slept = min(next(intervals), remaining)
        # Slack only where it cannot carry the next poll past the deadline.
        yield Sleep(slept, min(WAKE_SLACK * slept, remaining - slept))


def succeeded_job(policy: RetryPolicy, job_id: str, deadline: float | None = None) -> Op[Job]:
    """The job, checked to be SUCCEEDED before results are asked for."""
    job = yield from send(policy, protocol.get_job_call(job_id), deadline)
    job.raise_if_ended()
    if job.status is not JobStatus.SUCCEEDED:
        raise JobNotSucceededError(job_id, job.status.value)
    return job


def download(policy: RetryPolicy, job_id: str, target: Any, timeout: float | None, **file_args: Any) -> Op[Job]:
    """Stream a SUCCEEDED job's results file to ``target``'s temp file within ``timeout``; returns the job.

    ``file_args`` go to ``results_file_call`` (format, inputs, logprobs). On any failure the temp file is
    removed; past the deadline ``JobTimeoutError`` is raised.
    """
    from .results.targets import discard

    limit = Deadline.after(timeout)
    try:
        job = yield from succeeded_job(policy, job_id, limit.at)
        yield from send(policy, protocol.results_file_call(job_id, stream_to=str(target.tmp_path), **file_args),
                        limit.at)
    except DeadlineReached as exc:
        discard(target)
        raise JobTimeoutError(job_id, JobStatus.SUCCEEDED.value, limit.elapsed(),
                              what="downloading the results of") from exc
    except BaseException:
        discard(target)
        raise
    return job
