"""Errors the provider raises beyond ``sutro_core``'s own (which it raises as they are).

Example::

    try:
        operator.execute_complete(context, event)
    except SutroJobError:
        ...  # the trigger gave up; the job may still be running and a retry reattaches
"""

from __future__ import annotations

from sutro_core import JobTimeoutError, SutroError


class SutroTriggerEventError(SutroError):
    """The resumed task received an event it cannot trust (missing, malformed, or for another job)."""


class SutroJobError(SutroError):
    """The trigger gave up waiting (transient-error budget spent, or a 4xx); the job may still be running.

    A retry of the task reattaches to it through the idempotency key instead of submitting again.
    """


class SutroTaskTimeoutError(JobTimeoutError):
    """The job did not finish within the task's ``timeout``; the task cancelled it (or says it could not)."""

    def __init__(self, job_id: str, status: str, waited: float, cancelled: bool) -> None:
        super().__init__(job_id, status, waited)
        self.cancelled = cancelled
        outcome = "it was cancelled" if cancelled else "cancelling it failed, so it may still be running"
        message = (
            f"job {job_id} was still {status} when the task's timeout of {waited:.0f}s ran out; {outcome}. "
            "Raise timeout= if the job needs longer"
        )
        self.args = (message,)
