"""Submit, inspect, list and cancel jobs.

Example:
    >>> # POST /batch-inference {"model": "all-minilm-l6-v2", "inputs": ["hi"]} -> {"results": "job-..."}
"""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from starlette.concurrency import run_in_threadpool

from ..errors import ApiError, echo, job_not_found
from ..state import ServerState
from ..store import JobRow, KeyRecord
from ..submit import submit_job
from .deps import get_state, require_key

router = APIRouter(tags=["jobs"])


_JOB_ID_RE = re.compile(r"^job-[0-9a-zA-Z_-]{1,64}$")
_IDEM_RE = re.compile(r"^[0-9a-zA-Z_-]{8,64}$")  # the marker's key format (sutro_core.idempotency)


def owned_job(state: ServerState, key: KeyRecord, job_id: str) -> JobRow:
    """The caller's job, or 404 (another key's job looks exactly like a missing one). An id that
    cannot be a job id (e.g. holds a lone surrogate) is a 404 before it reaches SQLite."""
    if not isinstance(job_id, str) or not _JOB_ID_RE.match(job_id):
        raise job_not_found(job_id[:100] if isinstance(job_id, str) else type(job_id).__name__)
    job = state.store.get_job(job_id, owner=key.owner)
    if job is None:
        raise job_not_found(job_id)
    return job


@router.post("/batch-inference")
async def batch_inference(
    body: Any = Body(default=None),
    key: KeyRecord = Depends(require_key),
    state: ServerState = Depends(get_state),
) -> dict[str, Any]:
    """Create a job: {"results": job_id, "reattached": false}. With an idempotency key in the
    description (``[sutro-idempotency-key:<key>]``) and a live job (QUEUED/STARTING/RUNNING/
    SUCCEEDED) of this API key holding it, no job is created: {"results": that id, "reattached": true}.

    A URL input is fetched on the server's URL-fetch threads (bounded, with a total deadline), so
    slow URLs never hold the threads the other routes need."""
    started = time.monotonic()
    if isinstance(body, dict) and isinstance(body.get("inputs"), str):
        submitted = await state.url_fetches.run(submit_job, state, key.owner, body, started)
    else:
        submitted = await run_in_threadpool(submit_job, state, key.owner, body, started)
    return {"results": submitted.job_id, "reattached": submitted.reattached}


# The reads below are async on purpose: each is one indexed SQLite read, answered in the event loop
# without waiting for a worker thread (200 pollers once queued behind 40 busy threads).
@router.get("/job-status/{job_id}")
async def job_status(job_id: str, key: KeyRecord = Depends(require_key), state: ServerState = Depends(get_state)) -> dict:
    """{"job_status": {job_id: STATUS}}."""
    return {"job_status": {job_id: owned_job(state, key, job_id).status}}


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, key: KeyRecord = Depends(require_key), state: ServerState = Depends(get_state)) -> dict:
    """{"job": {...}} with status, counts, tokens, cost, timestamps and failure_reason."""
    return {"job": owned_job(state, key, job_id).to_wire()}


@router.get("/list-jobs")
async def list_jobs(
    idempotency_key: str | None = Query(None, description="only the jobs carrying this idempotency key"),
    key: KeyRecord = Depends(require_key),
    state: ServerState = Depends(get_state),
) -> dict:
    """{"jobs": [...]} the key's jobs, newest first; `?idempotency_key=K`: only those carrying K."""
    if idempotency_key is not None:
        if not _IDEM_RE.match(idempotency_key):
            raise ApiError(400, "invalid_request", f"query 'idempotency_key' {echo(idempotency_key)} is not a key: "
                           "8-64 letters, digits, '-' or '_'")  # fmt: skip
        jobs = state.store.list_jobs(key.owner, idem_key=idempotency_key)
        return {"jobs": [j.to_wire() for j in jobs]}
    # a key with thousands of jobs: build the list off the event loop
    jobs = await run_in_threadpool(state.store.list_jobs, key.owner)
    return {"jobs": [j.to_wire() for j in jobs]}


@router.api_route("/job-cancel/{job_id}", methods=["GET", "POST"])
def cancel_job(job_id: str, key: KeyRecord = Depends(require_key), state: ServerState = Depends(get_state)) -> dict:
    """Cancel: QUEUED -> CANCELLED at once; STARTING/RUNNING -> CANCELLING (the worker stops at the
    next chunk boundary). A terminal job keeps its status. Returns the job's new status."""
    job = owned_job(state, key, job_id)
    store = state.store
    if job.status == "QUEUED" and store.transition(job_id, ("QUEUED",), "CANCELLED", finished_at=_now()):
        pass
    elif job.status in ("QUEUED", "STARTING", "RUNNING"):
        store.transition(job_id, ("QUEUED", "STARTING", "RUNNING"), "CANCELLING")
    state.wake_worker()
    status = owned_job(state, key, job_id).status
    return {"job_id": job_id, "status": status, "job_status": {job_id: status}}


def _now() -> str:
    from ..store import utcnow

    return utcnow()
