"""The flow the Prefect deployment test deploys to a process work pool: Sutro embeddings written to S3,
then read back from S3 in the same flow run.

Credentials the Prefect way, none in the workers' environment: Sutro's from a ``SutroCredentials`` block
(DEPLOY_SUTRO_BLOCK), the S3 secret from a ``Secret`` block (DEPLOY_S3_SECRET_BLOCK); the rest of the S3
settings (key id, endpoint, region) are the ``s3`` parameter, which Prefect stores with the run.
"""

from __future__ import annotations

import os
from typing import Any

from prefect import task
from prefect.blocks.system import Secret

from prefect_sutro import SutroCredentials, load_results, sutro_batch_job, sutro_flow
from prefect_sutro.storage import resolve_storage_options


async def _storage_options(s3: dict[str, Any]) -> dict[str, Any]:
    """s3fs options: the ``s3`` parameter plus the secret, as a ``Secret`` block (never plain text)."""
    return {**s3, "secret": await Secret.load(os.environ["DEPLOY_S3_SECRET_BLOCK"])}


@task
async def read_back(manifest: dict, s3: dict[str, Any]) -> dict:
    """What a downstream task sees: the artifact read from S3."""
    options = resolve_storage_options(await _storage_options(s3))
    df = load_results(manifest, storage_options=options)
    return {"rows": df.height, "job_ids": sorted(set(df["sutro_job_id"].to_list())),
            "worker": os.environ.get("DEPLOY_WORKER_NAME")}


# @sutro_flow: cancelling the run (even from the runner, its process gone) cancels its job. A crash keeps the
# job (cancel_on_crash=False, the default), so a rescheduled run can reattach to it.
# The flow's own result (the manifest and what read_back saw) is persisted on S3 too, through a
# RemoteFileSystem block the test saves (Prefect's block, holding its own fsspec settings).
@sutro_flow(name="sutro-deploy-embed", persist_result=True,
            result_storage="remote-file-system/sutro-deploy-results")
async def embed_to_s3(output: str, s3: dict[str, Any], rows: int = 40) -> dict:
    """Embed ``rows`` texts with the slow test model into ``output`` (an s3:// URI), then read it back."""
    creds = await SutroCredentials.load(os.environ["DEPLOY_SUTRO_BLOCK"])
    options = await _storage_options(s3)
    manifest = await sutro_batch_job([f"prefect deployment row {i}" for i in range(rows)], output, creds,
                                     model="slow-embed", poll_interval_seconds=0.5, max_poll_interval_seconds=1.0,
                                     storage_options=options)
    return {"manifest": manifest, "seen": await read_back(manifest, s3)}
