"""Small pieces that make SutroClient read like the official SDK (see docs/sdk-compatibility.md).

Example:
    >>> call = cancel_job_call("job-1")      # parses to a CancelResult: the docs' dict, JobStatus-like
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable

from . import protocol
from .models import CancelResult, Job, JobStatus
from .progress import announce_finished


def cancel_job_call(job_id: str) -> protocol.Call[CancelResult]:
    """``GET job-cancel/{id}`` parsed to a ``CancelResult`` (the server's JSON body, and its new status)."""
    base = protocol.cancel_job_call(job_id)
    return dataclasses.replace(base, parse=lambda r: CancelResult(job_id, protocol._json(r)))


def status_printer(job_id: str) -> Callable[[JobStatus], None]:
    """An ``on_status`` callback printing each status change to stderr, as the SDK's wait prints it.

    Example:
        >>> client.await_job_completion(job_id, on_status=status_printer(job_id))
    """

    def show(status: JobStatus) -> None:
        print(f"Job status is {status.value} for {job_id}", file=sys.stderr, flush=True)

    return show


def rows_of(data: object) -> int | None:
    """How many rows ``data`` has, when that is cheap to know (a list or a DataFrame), for traces."""
    try:
        return len(data) if not isinstance(data, str) else None  # type: ignore[arg-type]
    except TypeError:
        return None


def announce_if_finished(job: Job) -> None:
    """What ``attach`` says for a job that already ended (the docs: it notifies and exits)."""
    if job.is_terminal:
        announce_finished(job.job_id, job.status.value, job.failure_reason)
