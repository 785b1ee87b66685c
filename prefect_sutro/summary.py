"""One table of all the Sutro jobs of a flow run, ``<flow-name>-sutro-jobs``, on its root flow run.

Each submit adds a row, the wait and the download update it. The artifact is created once and then updated
in place (one table on the parent run, not one per subflow); best effort: an API hiccup never fails a task.

Example:
    >>> await record_job(root_id, "support-insights", "job-1", step="triage")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from sutro_core.markdown import jobs_table_markdown

logger = logging.getLogger(__name__)

SUMMARY_METADATA = "sutro_run_summary"  # the rows as JSON, so another process (a retry) can add to them
# root flow run id -> (artifact id | None, job id -> row). Process-local; rebuilt from the API on a miss.
_state: dict[str, tuple[UUID | None, dict[str, dict[str, Any]]]] = {}
_locks: dict[tuple[int, str], asyncio.Lock] = {}


def summary_key(flow_name: str) -> str:
    """The artifact key of a flow's job table: its name as lowercase letters, digits and dashes.

    Example:
        >>> summary_key("Support Insights")
        'support-insights-sutro-jobs'
    """
    return f"{re.sub(r'[^a-z0-9]+', '-', flow_name.lower()).strip('-') or 'flow'}-sutro-jobs"


async def _load(client: Any, root_id: UUID, key: str) -> tuple[UUID | None, dict[str, dict[str, Any]]]:
    artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[root_id]), key=ArtifactFilterKey(any_=[key])))
    for artifact in artifacts:
        if SUMMARY_METADATA in (artifact.metadata_ or {}):
            return artifact.id, json.loads(artifact.metadata_[SUMMARY_METADATA])
    return None, {}


async def record_job(root_id: UUID, flow_name: str, job_id: str, **fields: Any) -> None:
    """Add or update ``job_id``'s row (``step, url, status, rows, cost, uri``; None values are ignored) in the
    job table of flow run ``root_id``; never raises.

    Example:
        >>> await record_job(root_id, "support-insights", "job-1", cost=0.0001)  # doctest: +SKIP
    """
    root, key = str(root_id), summary_key(flow_name)
    # Keyed by event loop too: a sync flow runs async tasks on other loops, and a Lock is tied to one.
    lock = _locks.setdefault((id(asyncio.get_running_loop()), root), asyncio.Lock())
    try:
        async with lock, get_client() as client:
            if root not in _state:
                _state[root] = await _load(client, root_id, key)
            artifact_id, rows = _state[root]
            rows.setdefault(job_id, {}).update({k: v for k, v in fields.items() if v is not None})
            data, meta = jobs_table_markdown(rows), {SUMMARY_METADATA: json.dumps(rows, default=str)}
            if artifact_id is None:
                created = await client.create_artifact(artifact=ArtifactCreate(
                    type="markdown", key=key, data=data, metadata_=meta, flow_run_id=root_id,
                    description="The Sutro jobs of this flow run: links, rows, cost and results."))
                _state[root] = (created.id, rows)
            else:
                await client.update_artifact(artifact_id, ArtifactUpdate(data=data, metadata_=meta))
    except Exception as exc:  # noqa: BLE001 - the table is a convenience; the job must go on
        logger.warning("Could not update the Sutro job table of flow run %s: %s", root, exc)
