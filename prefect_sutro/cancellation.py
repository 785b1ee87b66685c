"""Cancel a flow run's Sutro jobs when Prefect cancels that flow run: the ``cancel_sutro_jobs`` hook.

It reads two records of the jobs: the jobs the submit tasks registered in this process (where the engine
runs the hook itself), and the job-link artifacts (where a runner or worker runs it in its own process;
there it authenticates with the saved credentials block, else its own SUTRO_API_KEY).

Example:
    >>> from prefect import flow
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
from sutro_core.lineage import StepLineage

from .artifacts import API_URL_METADATA, BLOCK_METADATA, CANCEL_METADATA, JOB_ID_METADATA
from .credentials import SutroCredentials
from .lineage import emit_job_event

logger = logging.getLogger(__name__)

OPT_OUT_PARAMETER = "cancel_on_cancellation"  # the flow-run parameter that leaves its jobs running
_PAGE, _MAX_SUBFLOW_DEPTH = 200, 5
_lock = threading.Lock()
# job id -> (the flow runs whose cancellation cancels it: its own and the root; its credentials).
_active: dict[str, tuple[frozenset[str], SutroCredentials]] = {}


def track_job(job_id: str, flow_run_ids: list[str], credentials: SutroCredentials) -> None:
    """Track ``job_id`` as in flight for ``flow_run_ids`` (cancelled with them) with its ``credentials``.

    Example:
        >>> track_job("job-123", ["3b28b852-..."], creds)  # doctest: +SKIP
    """
    with _lock:
        _active[job_id] = (frozenset(flow_run_ids), credentials)


def untrack_job(job_id: str) -> None:
    """Stop tracking a settled job (terminal, or cancelled).

    Example:
        >>> untrack_job("job-123")
    """
    with _lock:
        _active.pop(job_id, None)


def recorded_jobs(flow_run_id: str) -> dict[str, dict[str, str]]:
    """Job id -> its job-link artifact's metadata, for this flow run and its subflow runs.

    Example:
        >>> recorded_jobs("3b28b852-...")   # doctest: +SKIP
        {'job-123': {'sutro_job_id': 'job-123', 'sutro_api_url': 'http://...', ...}}
    """
    found: dict[str, dict[str, str]] = {}
    with get_client(sync_client=True) as client:
        run_ids = frontier = [UUID(flow_run_id)]
        for _ in range(_MAX_SUBFLOW_DEPTH):
            if not frontier:
                break
            children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier)))
            frontier = [c.id for c in children if c.id not in run_ids]
            run_ids = run_ids + frontier
        offset = 0
        while True:  # page through: a big flow run can hold more artifacts than one response
            page = client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=run_ids)), limit=_PAGE, offset=offset)
            found.update({a.metadata_[JOB_ID_METADATA]: dict(a.metadata_) for a in page
                          if JOB_ID_METADATA in (a.metadata_ or {})})
            if len(page) < _PAGE:
                return found
            offset += _PAGE


def _credentials(meta: dict[str, str]) -> SutroCredentials | None:
    """The saved block the job was submitted with; else SUTRO_API_KEY of this (runner) process."""
    if meta.get(BLOCK_METADATA):
        with get_client(sync_client=True) as client:
            document = client.read_block_document(UUID(meta[BLOCK_METADATA]))
        return SutroCredentials._from_block_document(document)
    key, url = os.environ.get("SUTRO_API_KEY"), meta.get(API_URL_METADATA)
    return SutroCredentials(api_key=key, api_url=url) if key and url else None


def cancel_jobs_for_flow_run(flow_run_id: str) -> list[str]:
    """Cancel the jobs of ``flow_run_id`` (and its subflow runs) that are not terminal yet; returns the job
    ids whose cancel was accepted. One job's failure is logged and does not stop the others.

    Example:
        >>> cancel_jobs_for_flow_run("3b28b852-...")   # doctest: +SKIP
        ['job-123']
    """
    run, cancelled = str(flow_run_id), []

    def cancel(job_id: str, creds: SutroCredentials | None, meta: dict[str, str] | None = None) -> None:
        try:
            creds = creds or _credentials(meta or {})
            if creds is None:
                logger.warning(
                    "Flow run %s started Sutro job %s with unsaved credentials and SUTRO_API_KEY is not set "
                    "here, so it cannot be cancelled from this process; cancel it in Sutro, and pass a saved "
                    "SutroCredentials block (SutroCredentials.load(...)) or set SUTRO_API_KEY for the runner",
                    run, job_id)
                return
            with creds.get_client() as client:  # bounded; skips a terminal job; never raises a SutroError
                if client.cancel(job_id, reason=f"Prefect flow run {run} was cancelled"):
                    cancelled.append(job_id)
                    logger.info("Cancelled Sutro job %s because flow run %s was cancelled", job_id, run)
                    emit_job_event("cancelled", StepLineage(job_id=job_id, status="CANCELLED"),
                                   reason=f"Prefect flow run {run} was cancelled")
        except Exception as exc:  # noqa: BLE001 - one job's failure must not stop the other cancels
            logger.error("Could not cancel Sutro job %s of flow run %s: %s", job_id, run, exc)

    with _lock:  # the in-process record first: it needs no Prefect API and holds inline credentials
        mine = {job: creds for job, (runs, creds) in _active.items() if run in runs}
    for job_id, creds in mine.items():
        cancel(job_id, creds)
        untrack_job(job_id)
    try:
        recorded = recorded_jobs(run)
    except Exception as exc:  # noqa: BLE001 - an unreachable Prefect API must not hide the in-process cancels
        logger.error("Could not read the Sutro jobs recorded for flow run %s: %s", run, exc)
        recorded = {}
    for job_id, meta in recorded.items():
        if job_id not in mine and meta.get(CANCEL_METADATA) != "false":  # handled, or its run opted out
            cancel(job_id, None, meta)
    return cancelled


def cancel_sutro_jobs(flow: Any, flow_run: Any, state: Any) -> None:
    """``on_cancellation`` hook: cancel the Sutro jobs this flow run started that are still running, in the
    flow's own process or a runner's; skipped when the run has the parameter ``cancel_on_cancellation=False``.

    Example:
        >>> from prefect import flow
        >>> @flow(on_cancellation=[cancel_sutro_jobs])
        ... def my_flow(): ...
    """
    if (getattr(flow_run, "parameters", None) or {}).get(OPT_OUT_PARAMETER) is False:
        logger.info("Flow run %s cancelled; leaving its Sutro jobs running (%s=False)", flow_run.id,
                    OPT_OUT_PARAMETER)
        return
    cancel_jobs_for_flow_run(str(flow_run.id))
