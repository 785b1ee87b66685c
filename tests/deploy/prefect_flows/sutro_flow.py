"""The flow the Prefect deployment test deploys to a process work pool: Sutro embeddings written to S3,
then read back from S3 in the same flow run. Sutro credentials come from a ``SutroCredentials`` block
(DEPLOY_SUTRO_BLOCK); S3 from the standard AWS variables of the worker's machine.
"""

from __future__ import annotations

import os

from prefect import task

from prefect_sutro import SutroCredentials, load_results, sutro_batch_job, sutro_flow


@task
def read_back(manifest: dict) -> dict:
    """What a downstream task sees: the artifact read from S3."""
    df = load_results(manifest)
    return {"rows": df.height, "job_ids": sorted(set(df["sutro_job_id"].to_list())),
            "worker": os.environ.get("DEPLOY_WORKER_NAME")}


# The flow's own result (the manifest and what read_back saw) is persisted on S3 too, through a
# RemoteFileSystem block the test saves: where a result lives is the deployment's business, not the code's.
# @sutro_flow: cancelling the run (even from the runner, its process gone) cancels its job. A crash keeps the
# job (cancel_on_crash=False, the default), so a rescheduled run can reattach to it.
@sutro_flow(name="sutro-deploy-embed", persist_result=True, result_storage="remote-file-system/sutro-deploy-results")
async def embed_to_s3(output: str, rows: int = 40) -> dict:
    """Embed ``rows`` texts with the slow test model into ``output`` (an s3:// URI), then read it back."""
    creds = await SutroCredentials.load(os.environ["DEPLOY_SUTRO_BLOCK"])
    manifest = await sutro_batch_job([f"prefect deployment row {i}" for i in range(rows)], output, creds,
                                     model="slow-embed", poll_interval_seconds=0.5, max_poll_interval_seconds=1.0)
    return {"manifest": manifest, "seen": read_back(manifest)}
