"""The wire protocol, without I/O: each API call as a request description plus a response parser.

Both clients execute these ``Call`` objects; only the transport differs. Error statuses map to
the typed errors in ``errors`` here, in one place.

Example:
    >>> call = get_job_status_call("job-123")
    >>> call.method, call.path
    ('GET', 'job-status/job-123')
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from .errors import AuthenticationError, NotFoundError, RateLimitError, ServerError, SutroAPIError
from .models import FunctionResult, Job, JobStatus, Quota, status_of
from .retrying import DeadlineReached

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP request and how to read its answer.

    ``safe`` calls (reads) are retried on transient errors; unsafe ones (submit) never are.
    ``results`` calls also retry 404/409 briefly: right after SUCCEEDED the results may still be written.
    ``stream_to`` streams the body to that local file instead of reading it into memory.
    ``deadline`` bounds the whole request; the transports raise ``DeadlineReached`` past it.
    """

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    safe: bool = True
    results: bool = False
    stream_to: str | None = None
    timeout: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Absolute wall-clock deadline (epoch seconds) for the whole request: connect, read and body.
    deadline: float | None = None
    #: Set on a wait's status poll (the job's id): the async client may answer it from one ``list-jobs``
    #: read shared by many polls (``status_batch``). Plain reads leave it None and are always sent.
    batch_job_id: str | None = None
    #: Seconds the shared read answering a batched poll may have been sent before the poll (0: only one
    #: sent after it, e.g. with other polls made at the same moment).
    batch_max_age: float = 0.0

    def seconds_left(self) -> float | None:
        """Seconds before ``deadline`` (None without one); raises ``DeadlineReached`` once it has passed.

        Example:
            >>> Call("GET", "jobs/j", lambda r: r).seconds_left() is None
            True
        """
        if self.deadline is None:
            return None
        left = self.deadline - time.time()
        if left <= 0:
            raise DeadlineReached(f"{self.method} {self.path}: the deadline has passed")
        return left


def _seg(value: str) -> str:
    """A path segment, quoted so an id can never traverse paths."""
    return quote(str(value), safe="")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise SutroAPIError(
            response.status_code, f"expected JSON, got {response.text[:200]!r}",
            method=response.request.method, path=response.request.url.path,
        ) from exc


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> SutroAPIError:
    """The typed error for an error response (detail, code and request id from the JSON body)."""
    detail: Any = response.reason_phrase or "error"
    code = request_id = None
    try:
        body = response.json()
    except ValueError:
        body = None
        if response.text:
            detail = response.text[:500]
    if isinstance(body, dict):
        detail = body.get("detail", body.get("message", detail))
        code = body.get("code")
        request_id = body.get("request_id")
    request_id = request_id or response.headers.get("x-request-id")
    if not isinstance(detail, str):
        detail = str(detail)
    status = response.status_code
    kwargs: dict[str, Any] = dict(
        code=code, request_id=request_id, method=response.request.method, path=response.request.url.path
    )
    if status in (401, 403):
        return AuthenticationError(status, detail, **kwargs)
    if status == 404:
        return NotFoundError(status, detail, **kwargs)
    if status == 429:
        return RateLimitError(status, detail, retry_after=_retry_after(response), **kwargs)
    if status >= 500:
        return ServerError(status, detail, **kwargs)
    return SutroAPIError(status, detail, **kwargs)


RESULTS_NOT_READY_CODES = frozenset({"results_not_ready"})  # sutro-local's "still being written"


def is_transient(error: SutroAPIError, *, results: bool = False) -> bool:
    """Errors worth retrying for a safe call.

    A results call also retries the "results not written yet" answer right after SUCCEEDED: a
    ``results_not_ready`` code, or a 404/409 with no ``code`` (what the hosted service may send then).
    A 404/409 with any other code (``dry_run_has_no_results``, ``job_not_found``, ...) is permanent.
    """
    if isinstance(error, (RateLimitError, ServerError)) or error.status_code in (408, 425):
        return True
    if not results:
        return False
    if error.code in RESULTS_NOT_READY_CODES:
        return True
    return error.code is None and error.status_code in (404, 409)


# ---- calls --------------------------------------------------------------------------------------


def submit_call(payload: dict[str, Any]) -> Call[tuple[str, bool]]:
    """``POST batch-inference`` -> (job id, reattached). Unsafe: never retried.

    ``reattached`` is True when the server answered with the live job that already carries the
    payload's idempotency key (sutro-local dedupes keys atomically; hosted Sutro does not say so).
    """

    def parse(r: httpx.Response) -> tuple[str, bool]:
        body = _json(r)
        job_id = body.get("results") if isinstance(body, dict) else None
        if not isinstance(job_id, str) or not job_id:
            raise SutroAPIError(r.status_code, f"submit answered without a job id: {str(body)[:200]}")
        return job_id, body.get("reattached") is True

    return Call("POST", "batch-inference", parse, json=payload, safe=False)


def get_job_status_call(job_id: str, *, batchable: bool = False, max_age: float = 0.0) -> Call[JobStatus]:
    """``GET job-status/{id}`` -> status. ``batchable``: a wait's poll, which a client may answer from a
    shared ``list-jobs`` read sent at most ``max_age`` seconds before it; ``get_job_status`` never is."""

    def parse(r: httpx.Response) -> JobStatus:
        body = _json(r).get("job_status", {})
        value = body.get(job_id) if isinstance(body, dict) else body
        if value is None and isinstance(body, dict) and len(body) == 1:
            value = next(iter(body.values()))
        return JobStatus.parse(value)

    return Call("GET", f"job-status/{_seg(job_id)}", parse, batch_job_id=job_id if batchable else None,
                batch_max_age=max_age)


def job_status_polls(job_id: str) -> Callable[[float, float | None], Call[JobStatus]]:
    """A wait's status polls: ``poll(max_age, deadline)`` is one batchable ``job-status`` call. The path and
    parser are built once per wait (a thousand waits poll for hours; each poll's own cost counts)."""
    base = get_job_status_call(job_id)

    def poll(max_age: float, deadline: float | None) -> Call[JobStatus]:
        return Call("GET", base.path, base.parse, deadline=deadline, batch_job_id=job_id, batch_max_age=max_age)

    return poll


def get_job_call(job_id: str) -> Call[Job]:
    """``GET jobs/{id}`` -> Job."""
    return Call("GET", f"jobs/{_seg(job_id)}", lambda r: Job.model_validate(_json(r)["job"]))


def list_jobs_call(idempotency_key: str | None = None) -> Call[list[Job]]:
    """``GET list-jobs`` -> jobs. ``idempotency_key`` asks the server to filter (sutro-local does: one
    indexed read); a server that ignores it returns every job and the caller filters."""
    params = {"idempotency_key": idempotency_key} if idempotency_key else None
    return Call("GET", "list-jobs", lambda r: [Job.model_validate(j) for j in _json(r).get("jobs", [])],
                params=params)


def cancel_job_call(job_id: str) -> Call[JobStatus]:
    """``GET job-cancel/{id}`` -> the job's new status. Cancelling twice is harmless, so it is safe."""

    return Call("GET", f"job-cancel/{_seg(job_id)}", lambda r: status_of(job_id, _json(r)))


def get_quotas_call() -> Call[list[Quota]]:
    """``GET get-quotas`` -> quotas per priority."""
    return Call("GET", "get-quotas", lambda r: [Quota.model_validate(q) for q in _json(r).get("quotas", [])])


def check_auth_call() -> Call[dict[str, Any]]:
    """``GET auth/check`` -> the server's JSON body."""
    return Call("GET", "auth/check", lambda r: _json(r))


def results_file_call(
    job_id: str,
    *,
    result_format: str = "parquet",
    include_inputs: bool = False,
    include_cumulative_logprobs: bool = False,
    stream_to: str | None = None,
) -> Call[bytes]:
    """``GET jobs/{id}/results`` -> the file's bytes (or streamed to ``stream_to``)."""
    params = {
        "result_format": result_format,
        "include_inputs": str(include_inputs).lower(),
        "include_cumulative_logprobs": str(include_cumulative_logprobs).lower(),
    }
    return Call(
        "GET", f"jobs/{_seg(job_id)}/results", lambda r: b"" if stream_to else r.content,
        params=params, results=True, stream_to=stream_to, timeout=600.0,
    )


def run_function_call(name: str, input_data: dict[str, Any], confidence_scoring: bool | None) -> Call[FunctionResult]:
    """``POST functions/{name}/run`` -> FunctionResult. One synchronous call with no job behind it."""
    body: dict[str, Any] = {"input": input_data}
    if confidence_scoring is not None:
        body["confidence_scoring"] = confidence_scoring
    return Call(
        "POST", f"functions/{_seg(name)}/run", lambda r: FunctionResult.model_validate(_json(r)),
        json=body, safe=False,
    )


def progress_call(job_id: str) -> Call[None]:
    """``GET stream-job-progress/{id}``: NDJSON; read line by line by the transports."""
    return Call("GET", f"stream-job-progress/{_seg(job_id)}", lambda r: None, timeout=None)
