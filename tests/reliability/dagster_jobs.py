"""A Dagster job for the crash tests, importable by module so a subprocess and a re-execution can
rebuild it (as a deployment does). Settings come from the environment.

``main()`` executes the job once on the DAGSTER_HOME instance (the process a test kills).
"""

from __future__ import annotations

import os

import polars as pl
from dagster import AssetSelection, Definitions, EnvVar, asset, define_asset_job, in_process_executor
from dagster_polars import PolarsParquetIOManager

from dagster_sutro import SutroResource, build_sutro_inference_asset

ROWS = [f"crash review {i}" for i in range(16)]


@asset
def crash_reviews() -> pl.DataFrame:
    return pl.DataFrame({"text": ROWS})


crash_embeddings = build_sutro_inference_asset(
    name="crash_embeddings", upstream=crash_reviews, model="slow-embed", column="text"
)


def crash_job():
    """The job a deployment would define."""
    defs = Definitions(
        assets=[crash_reviews, crash_embeddings],
        jobs=[define_asset_job("crash_embed", selection=AssetSelection.all())],
        executor=in_process_executor,
        resources={
            "sutro": SutroResource(api_key=EnvVar("SUTRO_API_KEY"), api_url=EnvVar("SUTRO_API_URL"),
                                   poll_interval_seconds=0.2, max_poll_interval_seconds=0.3),
            "io_manager": PolarsParquetIOManager(base_dir=EnvVar("DAGSTER_SUTRO_TEST_STORAGE")),
        },
    )
    return defs.resolve_job_def("crash_embed")


def main() -> None:
    """Run the job once on the DAGSTER_HOME instance; exit 0 on success."""
    from dagster import DagsterInstance, execute_job, reconstructable

    assert os.environ.get("DAGSTER_HOME"), "set DAGSTER_HOME"
    with execute_job(reconstructable(crash_job), instance=DagsterInstance.get()) as result:
        raise SystemExit(0 if result.success else 1)
