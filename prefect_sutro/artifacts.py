"""Prefect UI artifacts for a Sutro job: a link to the job, a results preview table, a link to the
parquet file and a markdown summary (job id, model, rows, tokens, cost, duration).

Example:
    >>> ids = await publish_results_artifacts(manifest, job, preview_df, key="tickets")  # doctest: +SKIP
"""

from __future__ import annotations

import re
from uuid import UUID

import polars as pl
from prefect.artifacts import acreate_link_artifact, acreate_markdown_artifact, acreate_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.utilities.context import get_task_and_flow_run_ids
from sutro_core import Job, JobHandle, ResultsManifest
from sutro_core.summary import job_summary_markdown, link_for_uri, preview_rows

_KEY_RE = re.compile(r"^[a-z0-9-]+$")


def check_artifact_key(key: str | None) -> str | None:
    """Validate a user artifact key (Prefect allows lowercase letters, digits and dashes).

    Example:
        >>> check_artifact_key("ticket-triage")
        'ticket-triage'
    """
    if key is not None and not _KEY_RE.match(key):
        raise ValueError(
            f"artifact_key {key!r} is invalid: use only lowercase letters, digits and dashes, "
            "e.g. 'ticket-triage'"
        )
    return key


def _sub_key(key: str | None, suffix: str) -> str | None:
    return f"{key}-{suffix}" if key else None


# Metadata keys on the job-link artifact: the durable record of which Sutro jobs a flow run started, read
# back by the cancellation hook when it runs in another process (a Prefect runner or worker).
JOB_ID_METADATA = "sutro_job_id"
CREDENTIALS_BLOCK_METADATA = "sutro_credentials_block_id"
API_URL_METADATA = "sutro_api_url"
HANDLE_METADATA = "sutro_handle"
# "false" when the flow run opted out (sutro_batch_job(cancel_on_cancellation=False)): no hook cancels it.
CANCEL_METADATA = "sutro_cancel_on_cancellation"


async def publish_submission_artifact(
    handle: JobHandle,
    key: str | None = None,
    credentials_block_id: UUID | str | None = None,
    cancel_on_cancellation: bool = True,
) -> UUID:
    """A link artifact to the job's page, created as soon as the job is started (the durable record).

    Its metadata carries the job's handle (``JobHandle.to_json()``: id, key, API URL, never the API key),
    the job id and the id of the saved credentials block, so a cancellation hook in another process (a
    Prefect runner or worker) can find and cancel the job.

    Example:
        >>> await publish_submission_artifact(handle, key="ticket-triage")  # doctest: +SKIP
    """
    verb = "Reattached to" if handle.reattached else "Submitted"
    metadata = {
        JOB_ID_METADATA: handle.job_id,
        API_URL_METADATA: handle.api_url,
        HANDLE_METADATA: handle.to_json(),
        CANCEL_METADATA: str(cancel_on_cancellation).lower(),
    }
    if credentials_block_id:
        metadata[CREDENTIALS_BLOCK_METADATA] = str(credentials_block_id)
    task_run_id, flow_run_id = get_task_and_flow_run_ids()
    async with get_client() as client:
        artifact = await client.create_artifact(
            artifact=ArtifactCreate(
                type="markdown",
                key=_sub_key(key, "job"),
                description=f"{verb} Sutro job `{handle.job_id}` on `{handle.model}` "
                f"(status {handle.status}).",
                data=f"[Sutro job {handle.job_id}]({handle.url})",
                metadata_=metadata,
                flow_run_id=flow_run_id,
                task_run_id=task_run_id,
            )
        )
    return artifact.id


async def publish_results_artifacts(
    manifest: ResultsManifest,
    job: Job | None,
    preview: pl.DataFrame | None,
    *,
    job_url: str | None = None,
    preview_rows_count: int = 10,
    key: str | None = None,
) -> dict[str, UUID]:
    """Create the preview table, the parquet link and the markdown summary; returns their ids.

    Example:
        >>> await publish_results_artifacts(manifest, job, df, key="tickets")  # doctest: +SKIP
        {'table': UUID(...), 'link': UUID(...), 'summary': UUID(...)}
    """
    ids: dict[str, UUID] = {}
    if preview is not None and preview_rows_count > 0:
        ids["table"] = await acreate_table_artifact(
            table=preview_rows(preview, preview_rows_count),
            key=_sub_key(key, "preview"),
            description=f"First {min(preview_rows_count, manifest.rows)} of {manifest.rows} rows of "
            f"Sutro job `{manifest.job_id}`.",
        )
    ids["link"] = await acreate_link_artifact(
        link=link_for_uri(manifest.uri),
        link_text=manifest.uri,
        key=_sub_key(key, "parquet"),
        description=f"Results of Sutro job `{manifest.job_id}` "
        f"({manifest.rows} rows, {manifest.bytes} bytes).",
    )
    ids["summary"] = await acreate_markdown_artifact(
        markdown=job_summary_markdown(manifest, job, job_url),
        key=_sub_key(key, "summary"),
        description=f"Summary of Sutro job {manifest.job_id}",
    )
    return ids
