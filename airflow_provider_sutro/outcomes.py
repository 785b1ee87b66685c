"""A wait's outcome as one small JSON dict, and back: the triggerer (where ``SutroJobTrigger`` waits) hands
it to the worker that resumes the task through Airflow's database.

Example:
    >>> outcome_of("job-1", JobCancelledError("job-1"))["status"]
    'cancelled'
"""

from __future__ import annotations

from typing import Any

from sutro_core import Job, JobCancelledError, JobFailedError, JobTimeoutError, SutroAPIError, SutroError
from sutro_core.errors import ended_error

#: Every status an outcome can have.
OUTCOME_STATUSES = frozenset({"success", "failed", "cancelled", "timeout", "error"})


def outcome_of(job_id: str, exc: SutroError | None = None, job: Job | None = None) -> dict[str, Any]:
    """The outcome of waiting on ``job_id``: ``success`` (with the SUCCEEDED ``job``), or the error's status.

    ``failed`` carries the server's ``reason``; ``timeout`` the job's status and whether the deadline's cancel
    was accepted (``cancelled``); ``error`` (the transient-error budget ran out, or a 4xx) the HTTP status.

    Example:
        >>> outcome_of("job-1", JobFailedError("job-1", "row 3 too long"))["reason"]
        'row 3 too long'
    """
    base = {"job_id": job_id, "message": str(exc) if exc is not None else f"job {job_id} SUCCEEDED"}
    if exc is None:
        return {"status": "success", **base, "job_status": job.status.value if job else None,
                "num_rows": job.num_rows if job else None}
    if isinstance(exc, JobFailedError):
        return {"status": "failed", **base, "reason": exc.reason}
    if isinstance(exc, JobCancelledError):
        return {"status": "cancelled", **base}
    if isinstance(exc, JobTimeoutError):
        return {"status": "timeout", **base, "job_status": exc.status, "cancelled": exc.cancelled}
    if isinstance(exc, SutroAPIError):
        return {"status": "error", **base, "http_status": exc.status_code}
    return {"status": "error", **base, "message": f"{type(exc).__name__}: {exc}"}


def raise_for_ended(outcome: dict[str, Any]) -> None:
    """Raise the core error of a job that ended without success (``failed`` / ``cancelled``); else return.

    Example:
        >>> raise_for_ended({"status": "success", "job_id": "job-1"})
    """
    status = {"failed": "FAILED", "cancelled": "CANCELLED"}.get(outcome["status"])
    error = None if status is None else ended_error(outcome["job_id"], status,
                                                    outcome.get("reason") or outcome.get("message"))
    if error is not None:
        raise error


class OutcomeError(SutroError):
    """An outcome that cannot be trusted (missing, malformed, or for another job): the job's fate is unknown."""


def checked_outcome(outcome: Any, expected_job_id: str | None = None) -> dict[str, Any]:
    """``outcome`` if it is a well-formed outcome (for ``expected_job_id`` when given); else ``OutcomeError``.

    It crossed a process boundary (version skew, a foreign payload), so only an explicit, well-formed
    ``success`` for the expected job may let a step go on.

    Example:
        >>> checked_outcome({"status": "success", "job_id": "j", "message": "ok"}, expected_job_id="j")["status"]
        'success'
    """
    if outcome is None:
        raise OutcomeError("the wait returned no outcome; the job's fate is unknown")
    if not isinstance(outcome, dict):
        raise OutcomeError(f"the outcome must be a dict, got {type(outcome).__name__}: {outcome!r}")
    if outcome.get("status") not in OUTCOME_STATUSES:
        raise OutcomeError(f"unknown outcome status {outcome.get('status')!r} in {outcome!r}")
    if not outcome.get("job_id"):
        raise OutcomeError(f"the outcome names no job_id: {outcome!r}")
    if expected_job_id is not None and outcome["job_id"] != expected_job_id:
        raise OutcomeError(f"the outcome is for job {outcome['job_id']!r}, but this step waits for {expected_job_id!r}")
    return outcome
