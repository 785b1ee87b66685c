"""The one event shape ``SutroJobTrigger`` yields, and its validation when a deferred task resumes.

The event crosses the triggerer/worker boundary through the metadata database, so a resuming task may get
``None``, a foreign payload, or a status it does not know (version skew). All of those fail loudly: only an
explicit ``success`` for the expected job lets a task go on.

Example::

    event = make_event("failed", "job-1", "job job-1 FAILED: row 3 too long", reason="row 3 too long")
    validate_event(event, expected_job_id="job-1")["status"]     # 'failed'
"""

from __future__ import annotations

from typing import Any

from airflow_provider_sutro.errors import SutroTriggerEventError

#: Every status the trigger can emit.
EVENT_STATUSES = frozenset({"success", "failed", "cancelled", "timeout", "error"})


def make_event(status: str, job_id: str, message: str, **details: Any) -> dict[str, Any]:
    """Build a JSON-serialisable event payload.

    Example::

        make_event("success", "job-1", "job job-1 SUCCEEDED", num_rows=3)
    """
    if status not in EVENT_STATUSES:
        raise ValueError(f"status {status!r} is not one of {sorted(EVENT_STATUSES)}")
    return {"status": status, "job_id": job_id, "message": message, **details}


def validate_event(event: Any, expected_job_id: str | None = None) -> dict[str, Any]:
    """Return ``event`` if it is a well-formed trigger event (for ``expected_job_id`` when given); else raise.

    Example::

        validate_event({"status": "success", "job_id": "j", "message": "ok"}, expected_job_id="j")
    """
    if event is None:
        raise SutroTriggerEventError("the trigger returned no event; the job's outcome is unknown")
    if not isinstance(event, dict):
        raise SutroTriggerEventError(
            f"the trigger event must be a dict, got {type(event).__name__}: {event!r}"
        )
    status = event.get("status")
    if status not in EVENT_STATUSES:
        raise SutroTriggerEventError(f"unknown trigger event status {status!r} in {event!r}")
    if not event.get("job_id"):
        raise SutroTriggerEventError(f"the trigger event names no job_id: {event!r}")
    if expected_job_id is not None and event["job_id"] != expected_job_id:
        raise SutroTriggerEventError(
            f"the trigger event is for job {event['job_id']!r}, but this task waits for {expected_job_id!r}"
        )
    return event
