"""Prefect artifacts of a Sutro job: the job link (also the durable record of the job), a results preview,
a link to the parquet file and a markdown summary.

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
from sutro_core.markdown import job_summary_markdown, link_for_uri, preview_rows

# The job-link artifact's metadata says which jobs a flow run started, for a cancellation hook that runs
# in another process (a runner or worker): job id, API URL and the saved block's id, never the API key.
# Not the whole handle: Prefect cuts every metadata value to 500 characters, and a handle is longer.
JOB_ID_METADATA, API_URL_METADATA = "sutro_job_id", "sutro_api_url"
BLOCK_METADATA = "sutro_credentials_block_id"
CANCEL_METADATA = "sutro_cancel_on_cancellation"  # "false": the run opted out, no hook cancels the job


def check_artifact_key(key: str | None) -> str | None:
    """A valid user artifact key (lowercase letters, digits and dashes), or ``ValueError``.

    Example:
        >>> check_artifact_key("ticket-triage")
        'ticket-triage'
    """
    if key is not None and not re.fullmatch(r"[a-z0-9-]+", key):
        raise ValueError(f"artifact_key {key!r} is invalid: use only lowercase letters, digits and dashes, "
                         "e.g. 'ticket-triage'")
    return key


def _sub_key(key: str | None, suffix: str) -> str | None:
    return f"{key}-{suffix}" if key else None


async def publish_submission_artifact(handle: JobHandle, key: str | None = None, block_id: UUID | None = None,
                                      cancel_on_cancellation: bool = True) -> UUID:
    """The link to the job's page, created as soon as the job is started; its metadata is the job's record.

    Example:
        >>> await publish_submission_artifact(handle, key="ticket-triage")  # doctest: +SKIP
    """
    metadata = {JOB_ID_METADATA: handle.job_id, API_URL_METADATA: handle.api_url,
                CANCEL_METADATA: str(cancel_on_cancellation).lower()}
    if block_id:
        metadata[BLOCK_METADATA] = str(block_id)
    verb = "Reattached to" if handle.reattached else "Submitted"
    task_run_id, flow_run_id = get_task_and_flow_run_ids()
    async with get_client() as client:  # the client, not acreate_link_artifact: that takes no metadata
        artifact = await client.create_artifact(artifact=ArtifactCreate(
            type="markdown", key=_sub_key(key, "job"), data=f"[Sutro job {handle.job_id}]({handle.url})",
            description=f"{verb} Sutro job `{handle.job_id}` on `{handle.model}` (status {handle.status}).",
            metadata_=metadata, flow_run_id=flow_run_id, task_run_id=task_run_id))
    return artifact.id


async def publish_results_artifacts(manifest: ResultsManifest, job: Job | None, preview: pl.DataFrame | None,
                                    *, job_url: str | None = None, key: str | None = None) -> dict[str, UUID]:
    """The preview table (of ``preview``'s rows), the parquet link and the markdown summary; their ids.

    Example:
        >>> await publish_results_artifacts(manifest, job, df.head(10), key="tickets")  # doctest: +SKIP
        {'table': UUID(...), 'link': UUID(...), 'summary': UUID(...)}
    """
    ids: dict[str, UUID] = {}
    if preview is not None:
        ids["table"] = await acreate_table_artifact(
            table=preview_rows(preview, preview.height), key=_sub_key(key, "preview"),
            description=f"First {preview.height} of {manifest.rows} rows of Sutro job `{manifest.job_id}`.")
    ids["link"] = await acreate_link_artifact(
        link=link_for_uri(manifest.uri), link_text=manifest.uri, key=_sub_key(key, "parquet"),
        description=f"Results of Sutro job `{manifest.job_id}` ({manifest.rows} rows, "
                    f"{manifest.bytes} bytes).")
    ids["summary"] = await acreate_markdown_artifact(
        markdown=job_summary_markdown(manifest, job, job_url), key=_sub_key(key, "summary"),
        description=f"Summary of Sutro job {manifest.job_id}")
    return ids
