"""Submit, inspect, list and cancel jobs.

Example:
    >>> # POST /batch-inference {"model": "all-minilm-l6-v2", "inputs": ["hi"]} -> {"results": "job-..."}
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool

from ..errors import ApiError, echo, job_not_found
from ..state import ServerState
from ..store import JobRow, KeyRecord
from ..submit import accept_job
from .deps import caller_owner, get_state, invalid_key, require_key
from .raw_route import RawRoute

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
        submitted = await state.url_fetches.run(accept_job, state, key.owner, body, started)
    else:
        submitted = await run_in_threadpool(accept_job, state, key.owner, body, started)
    return {"results": submitted.job_id, "reattached": submitted.reattached}


# The reads below are async on purpose: each is one indexed SQLite read, answered in the event loop
# without waiting for a worker thread (200 pollers once queued behind 40 busy threads). They are
# pollers' hot path, so they skip what cost more than the read itself (issue 17: 3.4x a bare
# FastAPI route): no FastAPI request handler (RawRoute), auth a plain call checked in the same
# statement as the job, no response-model validation. Job records are copied as stored encoded in
# SQLite (`job_wire`, written with every change of the job; bytes as pydantic-core encoded them,
# as FastAPI's default path did), else built from the row's columns as tuples (no `params` parse).
INLINE_LIST_MAX = 200  # list-jobs answers up to this many jobs on the loop; longer lists in a thread


# job_id and idempotency_key are read from the request (a declared parameter costs a dependency
# solve per request); these keep them in the OpenAPI document
_JOB_ID_PARAM = {"parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]}
_IDEM_PARAM = {"parameters": [{"name": "idempotency_key", "in": "query", "required": False,
                               "description": "only the jobs carrying this idempotency key",
                               "schema": {"type": "string"}}]}  # fmt: skip


def _json(content: Any) -> Response:
    return Response(to_json(content), media_type="application/json")


def _json_bytes(body: bytes) -> Response:
    return Response(body, media_type="application/json")


# list-jobs is {"jobs":[<records, comma-joined>]}: the same bytes as to_json({"jobs": [...]}) of
# the records (compact, no spaces)
_JOBS_HEAD, _JOBS_TAIL = b'{"jobs":[', b"]}"


class _PartsResponse(Response):
    """A response whose body is sent as several byte strings, not copied into one (a long list is
    megabytes: one copy on the event loop cost more than a third of its read)."""

    def __init__(self, parts: tuple[bytes, ...], media_type: str = "application/json") -> None:
        self.parts = parts
        super().__init__(None, media_type=media_type,
                         headers={"content-length": str(sum(len(p) for p in parts))})  # fmt: skip

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        for i, part in enumerate(self.parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < len(self.parts) - 1})


def _bad_job_id(state: ServerState, owner: str, job_id: str) -> ApiError:
    """The error for a job id that cannot exist: 401 if the key is unknown (auth comes first), else 404."""
    if not state.store.key_exists(owner):
        return invalid_key()
    return job_not_found(job_id[:100])


def _owned_read(request: Request, read: Callable[[str, str], tuple[bool, Any]]) -> tuple[str, Any]:
    """(job_id, what ``read(owner, job_id)`` found) for the caller's own job; 401/404 as the API says."""
    state: ServerState = request.app.state.sutro
    job_id: str = request.path_params["job_id"]
    owner = caller_owner(request)
    if not _JOB_ID_RE.match(job_id):
        raise _bad_job_id(state, owner, job_id)
    known, found = read(owner, job_id)
    if not known:
        raise invalid_key()
    if found is None:
        raise job_not_found(job_id)
    return job_id, found


async def job_status(request: Request) -> Response:
    """{"job_status": {job_id: STATUS}}."""
    job_id, status = _owned_read(request, request.app.state.sutro.store.key_and_status)
    return _json({"job_status": {job_id: status}})


async def get_job(request: Request) -> Response:
    """{"job": {...}} with status, counts, tokens, cost, timestamps and failure_reason."""
    _, record = _owned_read(request, request.app.state.sutro.store.key_and_job_json)
    return _json_bytes(b'{"job":' + record + b"}")


async def list_jobs(request: Request) -> Response:
    """{"jobs": [...]} the key's jobs, newest first; `?idempotency_key=K`: only those carrying K."""
    state: ServerState = request.app.state.sutro
    idempotency_key = request.query_params.get("idempotency_key")  # the last one, as Query() took it
    owner = caller_owner(request)
    if not state.store.key_exists(owner):
        raise invalid_key()
    if idempotency_key is not None and not _IDEM_RE.match(idempotency_key):
        raise ApiError(400, "invalid_request", f"query 'idempotency_key' {echo(idempotency_key)} is not a key: "
                       "8-64 letters, digits, '-' or '_'")  # fmt: skip
    listed = state.store.list_json(owner, idempotency_key, limit=INLINE_LIST_MAX + 1)
    if listed.count <= INLINE_LIST_MAX and not listed.unstored:
        return _json_bytes(_JOBS_HEAD + listed.joined + _JOBS_TAIL)
    # a key with thousands of jobs, or finished jobs whose records are not stored yet (e.g. from
    # before an upgrade): read off the event loop (the loop thread's connection is not shared),
    # storing those records (it takes the write lock) so that the next list copies them
    listed = await run_in_threadpool(lambda: state.store.list_json(owner, idempotency_key, store_missing=True))
    return _PartsResponse((_JOBS_HEAD, listed.joined, _JOBS_TAIL))


# Served by RawRoute: no FastAPI request handler around them (see raw_route.py).
router.add_api_route("/job-status/{job_id}", job_status, methods=["GET"], route_class_override=RawRoute,
                     openapi_extra=_JOB_ID_PARAM)  # fmt: skip
router.add_api_route("/jobs/{job_id}", get_job, methods=["GET"], route_class_override=RawRoute,
                     openapi_extra=_JOB_ID_PARAM)  # fmt: skip
router.add_api_route("/list-jobs", list_jobs, methods=["GET"], route_class_override=RawRoute,
                     openapi_extra=_IDEM_PARAM)  # fmt: skip


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
