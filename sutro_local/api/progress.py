"""`stream-job-progress`: NDJSON progress/tokens/heartbeat lines until the job is terminal.

Example:
    >>> # {"update_type": "progress", "result": 12}
    >>> # {"update_type": "tokens", "result": {"input_tokens": 96, "output_tokens": 0, "total_tokens_processed_per_second": 310.5}}
    >>> # {"update_type": "heartbeat"}
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from typing import AsyncIterator

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..errors import job_not_found
from ..state import ServerState
from ..store import JobRow, KeyRecord
from .deps import get_state, require_key

router = APIRouter(tags=["jobs"])

POLL_S = 0.2


def _rate(job: JobRow) -> float:
    if not job.started_at:
        return 0.0
    start = datetime.fromisoformat(job.started_at.replace("Z", "+00:00"))
    end = datetime.fromisoformat(job.finished_at.replace("Z", "+00:00")) if job.finished_at else datetime.now(timezone.utc)
    elapsed = max((end - start).total_seconds(), 1e-3)
    return round((job.input_tokens + job.output_tokens) / elapsed, 2)


async def _lines(state: ServerState, job_id: str) -> AsyncIterator[bytes]:
    """Progress and tokens on every change; a heartbeat every ``heartbeat_seconds``.

    The official SDK polls the job's status on each heartbeat and stops reading once it is terminal,
    so (1) the first line is progress, never a heartbeat; (2) no heartbeat goes out while fresher
    progress is waiting; (3) a terminal job always gets a final progress + tokens line before the close.
    """
    last_rows, last_tokens = -1, None
    last_heartbeat = time.monotonic()  # the first heartbeat waits a full interval: progress comes first
    while True:
        job = await run_in_threadpool(state.store.get_job, job_id)
        if job is None:
            return
        final = job.is_terminal
        if job.rows_processed != last_rows or final:
            last_rows = job.rows_processed
            yield _line({"update_type": "progress", "result": job.rows_processed})
        tokens = (job.input_tokens, job.output_tokens)
        if tokens != last_tokens or final:
            last_tokens = tokens
            yield _line({"update_type": "tokens", "result": {
                "input_tokens": job.input_tokens, "output_tokens": job.output_tokens,
                "total_tokens_processed_per_second": _rate(job)}})  # fmt: skip
        if final:
            return
        if time.monotonic() - last_heartbeat >= state.config.heartbeat_seconds:
            fresh = await run_in_threadpool(state.store.get_job, job_id)
            if fresh is not None and not fresh.is_terminal and fresh.rows_processed == last_rows:
                last_heartbeat = time.monotonic()
                yield _line({"update_type": "heartbeat"})
            continue  # something changed since the read above: send it before any heartbeat
        await asyncio.sleep(POLL_S)


def _line(obj: dict) -> bytes:
    return (json.dumps(obj) + "\n").encode()


@router.get("/stream-job-progress/{job_id}")
async def stream_job_progress(
    job_id: str, key: KeyRecord = Depends(require_key), state: ServerState = Depends(get_state)
) -> StreamingResponse:
    """Stream progress as newline-delimited JSON; ends when the job is SUCCEEDED, FAILED or CANCELLED."""
    job = await run_in_threadpool(state.store.get_job, job_id, key.owner)
    if job is None:
        raise job_not_found(job_id)
    return StreamingResponse(_lines(state, job_id), media_type="application/x-ndjson")
