"""Submit, inspect, list and cancel jobs.

Example:
    >>> # POST /batch-inference {"model": "all-minilm-l6-v2", "inputs": ["hi"]} -> {"results": "job-..."}
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends

from ..errors import job_not_found
from ..state import ServerState
from ..store import JobRow, KeyRecord
from ..submit import submit_job
from .deps import get_state, require_key

router = APIRouter(tags=["jobs"])


def owned_job(state: ServerState, key: KeyRecord, job_id: str) -> JobRow:
    """The caller's job, or 404 (another key's job looks exactly like a missing one)."""
    job = state.store.get_job(job_id, owner=key.owner)
    if job is None:
        raise job_not_found(job_id)
    return job


@router.post("/batch-inference")
def batch_inference(
    body: Any = Body(default=None),
    key: KeyRecord = Depends(require_key),
    state: ServerState = Depends(get_state),
) -> dict[str, str]:
    """Create a job (never idempotent: each call creates a new job)."""
    return {"results": submit_job(state, key.owner, body)}


@router.get("/job-status/{job_id}")
def job_status(job_id: str, key: KeyRecord = Depends(require_key), state: ServerState = Depends(get_state)) -> dict:
    """{"job_status": {job_id: STATUS}}."""
    return {"job_status": {job_id: owned_job(state, key, job_id).status}}


@router.get("/jobs/{job_id}")
def get_job(job_id: str, key: KeyRecord = Depends(require_key), state: ServerState = Depends(get_state)) -> dict:
    """{"job": {...}} with status, counts, tokens, cost, timestamps and failure_reason."""
    return {"job": owned_job(state, key, job_id).to_wire()}


@router.get("/list-jobs")
def list_jobs(key: KeyRecord = Depends(require_key), state: ServerState = Depends(get_state)) -> dict:
    """{"jobs": [...]} the key's jobs, newest first."""
    return {"jobs": [j.to_wire() for j in state.store.list_jobs(key.owner)]}


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
