"""Handles for jobs a step watches but did not start (a job id from elsewhere), and their poll policies.

Example:
    >>> handle = watch_handle("job-1", "http://127.0.0.1:8484/v1", "http://127.0.0.1:8484/console/jobs/job-1",
    ...                       timeout=60, poll=poll_policy(2.0))
    >>> handle.poll["initial_interval"], handle.cancel_on_timeout
    (2.0, True)
"""

from __future__ import annotations

import time
from typing import Any

from .errors import InputValidationError
from .lifecycle import JobHandle
from .models import Job, Submission
from .retrying import PollPolicy


def poll_policy(initial: float | None = None, maximum: float | None = None,
                transient_errors: int | None = None) -> PollPolicy:
    """The core's ``PollPolicy`` with an adapter's overrides; ``None`` keeps the core's default.

    Example:
        >>> poll_policy(maximum=5.0).max_interval
        5.0
    """
    default = PollPolicy()
    return PollPolicy(
        initial_interval=default.initial_interval if initial is None else initial,
        max_interval=default.max_interval if maximum is None else maximum,
        max_transient_errors=default.max_transient_errors if transient_errors is None else transient_errors)


def job_id_of(ref: Any, field: str = "job") -> str:
    """The job id of a handle (or its dict), a ``Submission``, a ``Job`` or a job id string.

    Example:
        >>> job_id_of(" job-1 ")
        'job-1'
    """
    if isinstance(ref, (JobHandle, Submission, Job)):
        return ref.job_id
    if isinstance(ref, dict) and isinstance(ref.get("job_id"), str):
        return ref["job_id"]
    if isinstance(ref, str) and ref.strip():
        return ref.strip()
    raise InputValidationError(
        field, f"give the handle a submit returned, a job id string, or a Job; got {type(ref).__name__}")


def watch_handle(job_id: str, api_url: str, url: str, *, timeout: float | None = None,
                 poll: PollPolicy | None = None, **fields: Any) -> JobHandle:
    """A handle for waiting on ``job_id`` from now, ``timeout`` seconds at most; ``fields`` are other
    ``JobHandle`` fields (``model``, ``cancel_on_timeout``, ``cancel_on_interrupt``, ...).

    Example:
        >>> watch_handle("job-1", "http://h/v1", "http://h/jobs/job-1").deadline is None
        True
    """
    now = time.time()
    return JobHandle(job_id=job_id, api_url=api_url, url=url, started_at=now,
                     deadline=None if timeout is None else now + timeout,
                     poll=None if poll is None else poll.to_dict(), **fields)
