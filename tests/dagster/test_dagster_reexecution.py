"""Re-executing a failed Dagster run ("re-execute from failure") reattaches to the run's Sutro job.

The job is built by a module-level function so Dagster can reconstruct it for the re-execution,
exactly as the UI does; settings come from environment variables, as in a deployment.
"""

from __future__ import annotations

import polars as pl
from dagster import (
    AssetSelection,
    DagsterInstance,
    Definitions,
    EnvVar,
    ReexecutionOptions,
    asset,
    define_asset_job,
    execute_job,
    in_process_executor,
    reconstructable,
)
from dagster_polars import PolarsParquetIOManager

from dagster_sutro import SutroResource, build_sutro_inference_asset
from sutro_core import JobStatus

ROWS = [f"customer review {i}" for i in range(8)]


@asset
def reexec_reviews() -> pl.DataFrame:
    return pl.DataFrame({"text": ROWS})


reexec_embeddings = build_sutro_inference_asset(
    name="reexec_embeddings", upstream=reexec_reviews, model="slow-embed", column="text"
)


def reexecution_job():
    """The job a deployment would define; the 1 s timeout makes the first run fail while the job runs."""
    defs = Definitions(
        assets=[reexec_reviews, reexec_embeddings],
        jobs=[define_asset_job("embed_reviews", selection=AssetSelection.all())],
        executor=in_process_executor,
        resources={
            "sutro": SutroResource(
                api_key=EnvVar("SUTRO_API_KEY"), api_url=EnvVar("SUTRO_API_URL"), timeout_seconds=1.0,
                cancel_on_timeout=False,
                poll_interval_seconds=0.2, max_poll_interval_seconds=0.3,
            ),
            "io_manager": PolarsParquetIOManager(base_dir=EnvVar("DAGSTER_SUTRO_TEST_STORAGE")),
        },
    )
    return defs.resolve_job_def("embed_reviews")


def test_reexecution_from_failure_reattaches(sutro_server, sutro_key, sutro_client, tmp_path, monkeypatch):
    monkeypatch.setenv("SUTRO_API_KEY", sutro_key)
    monkeypatch.setenv("SUTRO_API_URL", sutro_server.url)
    monkeypatch.setenv("DAGSTER_SUTRO_TEST_STORAGE", str(tmp_path / "storage"))
    instance = DagsterInstance.ephemeral()
    job = reconstructable(reexecution_job)

    with execute_job(job, instance=instance, raise_on_error=False) as first:
        assert not first.success  # timed out waiting: the Sutro job keeps running
        first_run_id = first.run_id
    [sutro_job] = sutro_client.list_jobs()
    assert sutro_client.await_job_completion(sutro_job.job_id, timeout=60, obtain_results=False).status is JobStatus.SUCCEEDED

    options = ReexecutionOptions.from_failure(first_run_id, instance)
    with execute_job(job, instance=instance, reexecution_options=options, raise_on_error=False) as second:
        assert second.success
        assert second.dagster_run.root_run_id == first_run_id
        [mat] = second.asset_materializations_for_node("reexec_embeddings")
        assert mat.metadata["sutro.job.reattached"].value is True
        assert mat.metadata["sutro.job.id"].value == sutro_job.job_id
        stored = pl.read_parquet(mat.metadata["path"].value)
        assert stored["text"].to_list() == ROWS
    assert [j.job_id for j in sutro_client.list_jobs()] == [sutro_job.job_id]  # exactly one job, ever
