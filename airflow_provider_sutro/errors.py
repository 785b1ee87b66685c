"""Errors the provider raises beyond ``sutro_core``'s own, and the mapping of the core's "do not retry".

Example::

    with fail_fast():
        client.start(spec, scope=scope)   # CostLimitExceededError -> AirflowFailException (no retry)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.exceptions import AirflowFailException
from sutro_core import JobTimeoutError, SutroError, is_retryable
from .outcomes import OutcomeError


#: The resumed task received an event it cannot trust (missing, malformed, or for another job).
SutroTriggerEventError = OutcomeError


class SutroJobError(SutroError):
    """The trigger gave up waiting (transient-error budget spent, or a 4xx); the job may still be running.

    A retry of the task reattaches to it through the idempotency key instead of submitting again.
    """


class SutroTaskTimeoutError(JobTimeoutError):
    """The job did not finish within the task's ``timeout``; it was cancelled (``cancelled`` says whether)."""

    def __init__(self, job_id: str, status: str, waited: float, cancelled: bool | None) -> None:
        super().__init__(job_id, status, waited, cancelled=cancelled)
        self.args = (f"{self.args[0]}. Raise the task's timeout= if the job needs longer",)


@contextmanager
def fail_fast() -> Iterator[None]:
    """Turn errors a retry cannot fix (``sutro_core.is_retryable`` False: bad input, the cost gate, a FAILED or
    CANCELLED job, a bad key) into ``AirflowFailException``, so Airflow spends no retry on them.

    Example::

        with fail_fast():
            raise JobFailedError("job-1", "row 3 too long")     # -> AirflowFailException
    """
    try:
        yield
    except SutroError as exc:
        if is_retryable(exc):
            raise
        raise AirflowFailException(f"{type(exc).__name__}: {exc} (not retried: a retry cannot fix this)") from exc
