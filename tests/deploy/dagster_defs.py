"""The Dagster code location the deployment test runs with the multiprocess executor: tickets -> Sutro
embeddings (stored by ``SutroParquetIOManager`` on S3) -> a downstream summary that loads them from S3 in
another process and records what it saw.

Settings come from the environment, as in a deployment: SUTRO_API_KEY / SUTRO_API_URL, DEPLOY_DAGSTER_BASE
(``s3://bucket/prefix``), DEPLOY_ROWS; S3 credentials and endpoint from the standard AWS variables only.

Example:
    $ dagster job execute -m deploy.dagster_defs -j sutro_on_s3
"""

# No `from __future__ import annotations`: Dagster reads the `context` annotation at definition time.
import os

import polars as pl
from dagster import (AssetExecutionContext, AssetSelection, Definitions, EnvVar, MetadataValue, asset,
                     define_asset_job, multiprocess_executor)

from dagster_sutro import SutroParquetIOManager, SutroResource, build_sutro_inference_asset

ROWS = [f"multiprocess ticket {i}" for i in range(int(os.environ.get("DEPLOY_ROWS", "24")))]


@asset
def deploy_tickets() -> pl.DataFrame:
    """The rows to embed."""
    return pl.DataFrame({"ticket_id": list(range(len(ROWS))), "text": ROWS})


deploy_vectors = build_sutro_inference_asset(
    name="deploy_vectors", upstream=deploy_tickets, model="all-minilm-l6-v2", column="text"
)


@asset
def deploy_vector_summary(context: AssetExecutionContext, deploy_vectors: pl.DataFrame) -> pl.DataFrame:
    """A downstream user asset: loads the Sutro artifact (from S3, through the IO manager) and records
    what it saw, and in which process, as its materialization metadata."""
    seen = {
        "rows": deploy_vectors.height,
        "columns": deploy_vectors.columns,
        "ticket_ids": deploy_vectors["ticket_id"].to_list(),
        "dims": sorted({len(v) for v in deploy_vectors["inference_result"].to_list()}),
        "job_ids": sorted(set(deploy_vectors["sutro_job_id"].to_list())),
        "row_status": sorted(set(deploy_vectors["sutro_row_status"].to_list())),
        "pid": os.getpid(),
    }
    context.add_output_metadata({"seen": MetadataValue.json(seen)})
    return pl.DataFrame({"ticket_id": seen["ticket_ids"], "dims": [len(v) for v in deploy_vectors["inference_result"]]})


defs = Definitions(
    assets=[deploy_tickets, deploy_vectors, deploy_vector_summary],
    jobs=[define_asset_job("sutro_on_s3", selection=AssetSelection.all())],
    # Every step in its own process; two at a time (the summary waits for the embeddings anyway).
    executor=multiprocess_executor.configured({"max_concurrent": 2}),
    resources={
        "sutro": SutroResource(api_key=EnvVar("SUTRO_API_KEY"), api_url=EnvVar("SUTRO_API_URL"),
                               poll_interval_seconds=0.2, max_poll_interval_seconds=0.5),
        "io_manager": SutroParquetIOManager(base_dir=EnvVar("DEPLOY_DAGSTER_BASE")),
    },
)
