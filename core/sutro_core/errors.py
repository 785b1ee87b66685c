"""One error hierarchy for everything the client can raise.

Every failure raises; nothing returns ``None`` or prints. Catch ``SutroError`` for all of them.

Example:
    >>> try:
    ...     client.await_job_completion(job_id)
    ... except JobFailedError as exc:
    ...     print(exc.job_id, exc.reason)
"""

from __future__ import annotations

from typing import Any


class SutroError(Exception):
    """Base class of every error raised by sutro_core."""


class InputValidationError(SutroError, ValueError):
    """Bad local input, raised before any request is sent. The message names the field and the fix.

    Example:
        >>> raise InputValidationError("column", "column 'text' is not in the DataFrame; pass one of ['body']")
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class SutroConnectionError(SutroError):
    """The service could not be reached (connection refused, dropped, timed out) after retries."""


class SutroAPIError(SutroError):
    """The service answered with an error status.

    Attributes:
        status_code: HTTP status.
        detail: the server's ``detail`` text.
        code: the server's machine-readable ``code``, when given.
        request_id: the server's request id, when given (quote it to support).
    """

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        code: str | None = None,
        request_id: str | None = None,
        method: str = "",
        path: str = "",
    ) -> None:
        where = f" ({method} {path})" if method else ""
        extra = f" [code={code}]" if code else ""
        rid = f" [request_id={request_id}]" if request_id else ""
        super().__init__(f"HTTP {status_code}{where}: {detail}{extra}{rid}")
        self.status_code = status_code
        self.detail = detail
        self.code = code
        self.request_id = request_id


class AuthenticationError(SutroAPIError):
    """401/403: missing or invalid API key. Set SUTRO_API_KEY or pass api_key=."""


class NotFoundError(SutroAPIError):
    """404: the job or Function does not exist, or belongs to another API key."""


class RateLimitError(SutroAPIError):
    """429: too many requests or over quota. ``retry_after`` is the server's hint in seconds."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class ServerError(SutroAPIError):
    """5xx (including 524, an edge timeout where the request may or may not have reached the service)."""


class SubmitOutcomeUnknownError(SutroError):
    """A submit's response was lost (524, dropped connection, timeout) and no job carrying its
    idempotency key could be found. The job may or may not exist: it is never resubmitted
    automatically. Retry the step: the retry looks the key up again before submitting.
    """

    def __init__(self, message: str, *, idempotency_key: str | None) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key


class CostLimitExceededError(SutroError):
    """The dry-run cost estimate is above ``max_cost_usd``; nothing billed was submitted."""

    def __init__(self, estimate: float, limit: float) -> None:
        super().__init__(
            f"estimated cost ${estimate:.6g} exceeds max_cost_usd=${limit:.6g}; "
            "raise max_cost_usd, reduce the rows, or pick a cheaper model/priority"
        )
        self.estimate = estimate
        self.limit = limit


class JobError(SutroError):
    """A job did not succeed. ``job_id`` and ``status`` say which and how."""

    def __init__(self, message: str, *, job_id: str, status: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status


class JobFailedError(JobError):
    """The job ended FAILED; ``reason`` is the server's failure reason."""

    def __init__(self, job_id: str, reason: str | None) -> None:
        super().__init__(f"job {job_id} FAILED: {reason or 'no reason given'}", job_id=job_id, status="FAILED")
        self.reason = reason


class JobCancelledError(JobError):
    """The job was cancelled (a cancelled job never counts as success)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} was CANCELLED", job_id=job_id, status="CANCELLED")


def ended_error(job_id: str, status: str, reason: str | None = None) -> JobError | None:
    """The one place a job that ended without success becomes an error: ``JobFailedError`` (with the server's
    ``reason``) for FAILED, ``JobCancelledError`` for CANCELLED (never a success); None for any other status.

    Example:
        >>> ended_error("job-1", "CANCELLED")
        JobCancelledError('job job-1 was CANCELLED')
    """
    if status == "FAILED":
        return JobFailedError(job_id, reason)
    if status == "CANCELLED":
        return JobCancelledError(job_id)
    return None


class JobTimeoutError(JobError):
    """The job did not finish before the deadline. It is still running unless the caller cancels it."""

    def __init__(self, job_id: str, status: str, waited: float, *, cancelled: bool | None = None,
                 what: str = "waiting") -> None:
        if cancelled:
            tail = "it was cancelled"
        elif cancelled is False:
            tail = "cancelling it failed, so it may still be running (cancel it with cancel_job)"
        else:
            tail = "it keeps running (cancel it with cancel_job, or wait longer with a larger timeout)"
        if what == "waiting":
            message = f"job {job_id} still {status} after waiting {waited:.0f}s, past the deadline; {tail}"
        else:
            message = f"{what} job {job_id} did not finish within {waited:.0f}s (the deadline); nothing was written"
        super().__init__(message, job_id=job_id, status=status)
        self.waited = waited
        #: True: the job was cancelled at the deadline; False: the cancel failed; None: not attempted.
        self.cancelled = cancelled


class JobNotSucceededError(JobError):
    """Results were asked for a job that is not SUCCEEDED (yet)."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(
            f"job {job_id} is {status}; results exist only for SUCCEEDED jobs "
            "(wait with await_job_completion first)",
            job_id=job_id,
            status=status,
        )


class RowsFailedError(SutroError):
    """More rows than ``max_failed_rows`` are not ``ok`` after the repair rounds. The artifact, every paid
    row with its ``sutro_row_status``, was written first: ``manifest`` describes it.

    Example:
        >>> try:
        ...     client.run(spec.with_(max_failed_rows=0.01), scope=scope)
        ... except RowsFailedError as exc:
        ...     print(exc.manifest.row_status_counts)
    """

    def __init__(self, manifest: Any, limit: float) -> None:
        counts = manifest.row_status_counts or {}
        bad = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "ok" and n)
        super().__init__(
            f"{manifest.failed_rows} of {manifest.rows} rows are not ok ({bad}), more than max_failed_rows="
            f"{limit!r}; every row, with its sutro_row_status, is in {manifest.uri}")
        self.manifest = manifest
        self.limit = limit


class ResultsFormatError(SutroError):
    """A downloaded results body is not the format asked for (HTML, truncated, corrupt); nothing was written."""


# Errors that a retry of the same step cannot fix: adapters map them to their "do not retry".
_PERMANENT = (InputValidationError, CostLimitExceededError, JobFailedError, JobCancelledError, AuthenticationError,
              RowsFailedError)


def is_retryable(exc: BaseException) -> bool:
    """Whether retrying the step could help. False for bad input, the cost gate, a FAILED or CANCELLED job
    and a bad API key; True otherwise (timeouts and transient errors: a retry reattaches to the job).

    Example:
        >>> is_retryable(JobFailedError("job-1", "bad prompt"))
        False
    """
    return not isinstance(exc, _PERMANENT)


class DryRunResultsError(JobError):
    """Results were asked for a dry-run (cost estimate) job: it has none, and never will.

    Example:
        >>> try:
        ...     client.get_job_results(estimate_job_id)
        ... except DryRunResultsError as exc:
        ...     print(client.get_job(exc.job_id).cost_estimate)
    """

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"job {job_id} was a cost estimate (dry run): it has no results; read its estimate with "
            f"get_job({job_id!r}).cost_estimate, or submit without dry_run to get results",
            job_id=job_id,
            status="SUCCEEDED",
        )


def describe(exc: SutroError) -> str:
    """One sentence for a UI about why a step's job did not produce results.

    Example:
        >>> describe(JobCancelledError("job-1"))
        'Sutro job job-1 was CANCELLED outside this run; a cancelled job is never a success'
    """
    if isinstance(exc, CostLimitExceededError):
        return f"Sutro cost gate: {exc}. No billed job was submitted."
    if isinstance(exc, JobFailedError):
        return f"Sutro job {exc.job_id} FAILED: {exc.reason or 'no reason given'}"
    if isinstance(exc, JobCancelledError):
        return f"Sutro job {exc.job_id} was CANCELLED outside this run; a cancelled job is never a success"
    if isinstance(exc, JobTimeoutError):
        return f"Sutro job {exc.job_id} did not finish in time: {exc}"
    return f"Sutro: {exc}"
