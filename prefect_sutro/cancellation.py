"""Cancel the remote Sutro jobs of a flow run when Prefect cancels that flow run.

Two records say which jobs a flow run started:
- in process: the submit tasks register each job under its flow run and root flow run (used when the
  Prefect engine runs the hook itself, e.g. a flow run outside a runner);
- durable: the job-link artifact each submit creates carries the job's handle, its API URL and the saved
  credentials block's id in its metadata (used when a Prefect runner/worker runs the hook in its own
  process; without a saved block, SUTRO_API_KEY of that process authenticates).
The ``cancel_sutro_jobs`` hook reads both and cancels the jobs that are not yet terminal.

Example:
    >>> from prefect import flow
    >>> from prefect_sutro import cancel_sutro_jobs
    >>> @flow(on_cancellation=[cancel_sutro_jobs])
    ... async def my_flow(): ...
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)
from sutro_core import JobHandle, SutroError

from .artifacts import (
    API_URL_METADATA,
    CANCEL_METADATA,
    CREDENTIALS_BLOCK_METADATA,
    HANDLE_METADATA,
    JOB_ID_METADATA,
)
from .credentials import SutroCredentials

logger = logging.getLogger(__name__)

# Flow-run parameter that opts a flow out of cancelling its jobs (see flows.sutro_batch_job).
OPT_OUT_PARAMETER = "cancel_on_cancellation"

_PAGE = 200
_MAX_SUBFLOW_DEPTH = 5
_lock = threading.Lock()
# job id -> (the flow runs whose cancellation cancels it: own and root run; its credentials). Process-local,
# which is where Prefect runs the hooks of a flow run it cancels in-process (a flow run outside a runner).
_active: dict[str, tuple[frozenset[str], SutroCredentials]] = {}


def register_job(flow_run_ids: list[str], job_id: str, credentials: SutroCredentials) -> None:
    """Remember that ``job_id`` is in flight for each of ``flow_run_ids``.

    Example:
        >>> register_job(["3b28b852-..."], "job-123", creds)   # doctest: +SKIP
    """
    with _lock:
        _active[job_id] = (frozenset(flow_run_ids), credentials)


def unregister_job(job_id: str) -> None:
    """Forget ``job_id`` (it reached a terminal state, or was cancelled).

    Example:
        >>> unregister_job("job-123")
    """
    with _lock:
        _active.pop(job_id, None)


def active_jobs(flow_run_id: str) -> dict[str, SutroCredentials]:
    """The jobs still registered for ``flow_run_id``.

    Example:
        >>> active_jobs("3b28b852-...")
        {}
    """
    with _lock:
        return {job: creds for job, (runs, creds) in _active.items() if str(flow_run_id) in runs}


def _cancel(job_id: str, credentials: SutroCredentials, flow_run_id: str, handle: str | None = None) -> bool:
    """The core cancel (of the recorded handle when there is one): bounded, skips terminal jobs, never
    raises a SutroError (it logs instead)."""
    reason = f"Prefect flow run {flow_run_id} was cancelled"
    try:
        target: JobHandle | str = JobHandle.from_json(handle) if handle else job_id
    except (SutroError, ValueError):  # a handle written by a newer or broken writer: the id still cancels
        target = job_id
    with credentials.get_client() as client:
        accepted = client.cancel(target, reason=reason)
    if accepted:
        logger.info("Cancelled Sutro job %s because flow run %s was cancelled", job_id, flow_run_id)
    return accepted


def recorded_jobs(flow_run_id: str) -> dict[str, dict[str, str]]:
    """Job id -> its job-link artifact's metadata, for this flow run and its subflow runs.

    Example:
        >>> recorded_jobs("3b28b852-...")   # doctest: +SKIP
        {'job-123': {'sutro_job_id': 'job-123', 'sutro_credentials_block_id': '...'}}
    """
    found: dict[str, dict[str, str]] = {}
    with get_client(sync_client=True) as client:
        run_ids, frontier = [UUID(flow_run_id)], [UUID(flow_run_id)]
        for _ in range(_MAX_SUBFLOW_DEPTH):
            if not frontier:
                break
            children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier)))
            frontier = [c.id for c in children if c.id not in run_ids]
            run_ids.extend(frontier)
        offset = 0
        while True:  # page through: a big flow run can hold more artifacts than one response
            page = client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=run_ids)), limit=_PAGE, offset=offset)
            for artifact in page:
                meta = artifact.metadata_ or {}
                if JOB_ID_METADATA in meta:
                    found[meta[JOB_ID_METADATA]] = dict(meta)
            if len(page) < _PAGE:
                return found
            offset += _PAGE


def _load_credentials(meta: dict[str, str]) -> SutroCredentials | None:
    """The saved block the job was submitted with; else SUTRO_API_KEY of this (runner) process."""
    block_id = meta.get(CREDENTIALS_BLOCK_METADATA)
    if block_id:
        with get_client(sync_client=True) as client:
            document = client.read_block_document(UUID(block_id))
        return SutroCredentials._from_block_document(document)
    key, url = os.environ.get("SUTRO_API_KEY"), meta.get(API_URL_METADATA)
    if key and url:
        return SutroCredentials(api_key=key, api_url=url)
    return None


def cancel_jobs_for_flow_run(flow_run_id: str) -> list[str]:
    """Cancel every job of ``flow_run_id`` (and its subflow runs) that is not terminal yet.

    Returns the job ids a cancel was sent for. A failure on one job is logged and does not stop the others.

    Example:
        >>> cancel_jobs_for_flow_run("3b28b852-...")   # doctest: +SKIP
        ['job-123']
    """
    flow_run_id = str(flow_run_id)
    cancelled: list[str] = []
    handled: set[str] = set()
    for job_id, credentials in active_jobs(flow_run_id).items():
        handled.add(job_id)
        if _cancel(job_id, credentials, flow_run_id):
            cancelled.append(job_id)
        unregister_job(job_id)
    try:
        recorded = recorded_jobs(flow_run_id)
    except Exception as exc:  # noqa: BLE001 - an unreachable Prefect API must not hide the in-process cancels
        logger.error("Could not read the Sutro jobs recorded for flow run %s: %s", flow_run_id, exc)
        recorded = {}
    for job_id, meta in recorded.items():
        if job_id in handled or meta.get(CANCEL_METADATA) == "false":  # handled, or its run opted out
            continue
        try:
            credentials = _load_credentials(meta)
        except Exception as exc:  # noqa: BLE001 - one missing block must not stop the other cancels
            logger.error("Could not load the credentials for Sutro job %s: %s", job_id, exc)
            continue
        if credentials is None:
            logger.warning(
                "Flow run %s started Sutro job %s with unsaved credentials and SUTRO_API_KEY is not set "
                "here, so it cannot be cancelled from this process; cancel it in Sutro, and pass a saved "
                "SutroCredentials block (SutroCredentials.load(...)) or set SUTRO_API_KEY for the runner",
                flow_run_id, job_id)
            continue
        if _cancel(job_id, credentials, flow_run_id, meta.get(HANDLE_METADATA)):
            cancelled.append(job_id)
    return cancelled


def cancel_sutro_jobs(flow: Any, flow_run: Any, state: Any) -> None:
    """``on_cancellation`` hook: cancel the Sutro jobs this flow run started and that are still running.

    Works both in the flow's own process and in a Prefect runner/worker process (through the job records
    kept as artifacts; that path needs a saved ``SutroCredentials`` block). Skipped when the flow run has
    the parameter ``cancel_on_cancellation=False``.

    Example:
        >>> from prefect import flow
        >>> @flow(on_cancellation=[cancel_sutro_jobs])
        ... def my_flow(): ...
    """
    params = getattr(flow_run, "parameters", None) or {}
    if params.get(OPT_OUT_PARAMETER) is False:
        logger.info("Flow run %s cancelled; leaving its Sutro jobs running (%s=False)", flow_run.id,
                    OPT_OUT_PARAMETER)
        return
    cancel_jobs_for_flow_run(str(flow_run.id))
