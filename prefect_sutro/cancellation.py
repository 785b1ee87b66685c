"""Cancel the remote Sutro jobs of a flow run when Prefect cancels that flow run.

The submit tasks register each job they start (or reattach to) under the flow runs it belongs to; the
``cancel_sutro_jobs`` hook, attached with ``on_cancellation``, cancels those still running. Waiting
tasks unregister a job once it is terminal, so a finished job is never cancelled.

Example:
    >>> from prefect import flow
    >>> from prefect_sutro import cancel_sutro_jobs
    >>> @flow(on_cancellation=[cancel_sutro_jobs])
    ... async def my_flow(): ...
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from sutro_core import SutroError

if TYPE_CHECKING:
    from .credentials import SutroCredentials

logger = logging.getLogger(__name__)

# Flow-run parameter that opts a flow out of cancelling its jobs (see flows.sutro_batch_job).
OPT_OUT_PARAMETER = "cancel_on_cancellation"

_lock = threading.Lock()
# flow run id -> {job id -> credentials}; process-local, which is where Prefect runs the hooks of a
# flow run it cancels in-process (the engine owns cancellation for flows run outside a runner).
_active: dict[str, dict[str, "SutroCredentials"]] = {}


def register_job(flow_run_ids: list[str], job_id: str, credentials: "SutroCredentials") -> None:
    """Remember that ``job_id`` is in flight for each of ``flow_run_ids`` (own run and root run).

    Example:
        >>> register_job(["3b28b852-..."], "job-123", creds)   # doctest: +SKIP
    """
    with _lock:
        for run_id in dict.fromkeys(flow_run_ids):
            _active.setdefault(run_id, {})[job_id] = credentials


def unregister_job(job_id: str) -> None:
    """Forget ``job_id`` everywhere (it reached a terminal state).

    Example:
        >>> unregister_job("job-123")
    """
    with _lock:
        for run_id in list(_active):
            _active[run_id].pop(job_id, None)
            if not _active[run_id]:
                del _active[run_id]


def active_jobs(flow_run_id: str) -> dict[str, "SutroCredentials"]:
    """The jobs still registered for ``flow_run_id`` (a copy).

    Example:
        >>> active_jobs("3b28b852-...")
        {}
    """
    with _lock:
        return dict(_active.get(str(flow_run_id), {}))


def cancel_jobs_for_flow_run(flow_run_id: str) -> list[str]:
    """Cancel every registered job of ``flow_run_id``; returns the job ids a cancel was sent for.

    A failure to cancel one job is logged and does not stop the others.

    Example:
        >>> cancel_jobs_for_flow_run("3b28b852-...")   # doctest: +SKIP
        ['job-123']
    """
    cancelled: list[str] = []
    for job_id, credentials in active_jobs(str(flow_run_id)).items():
        try:
            with credentials.get_client() as client:
                status = client.cancel_job(job_id)
            logger.info("Cancelled Sutro job %s (now %s) because flow run %s was cancelled",
                        job_id, getattr(status, "value", status), flow_run_id)
            cancelled.append(job_id)
            unregister_job(job_id)
        except SutroError as exc:
            logger.error("Could not cancel Sutro job %s of flow run %s: %s", job_id, flow_run_id, exc)
    return cancelled


def cancel_sutro_jobs(flow: Any, flow_run: Any, state: Any) -> None:
    """``on_cancellation`` hook: cancel the Sutro jobs this flow run started and that are still running.

    Skipped when the flow run has the parameter ``cancel_on_cancellation=False``.

    Example:
        >>> @flow(on_cancellation=[cancel_sutro_jobs])
        ... def my_flow(): ...
    """
    params = getattr(flow_run, "parameters", None) or {}
    if params.get(OPT_OUT_PARAMETER) is False:
        logger.info("Flow run %s cancelled; leaving its Sutro jobs running (%s=False)",
                    flow_run.id, OPT_OUT_PARAMETER)
        return
    cancel_jobs_for_flow_run(str(flow_run.id))
