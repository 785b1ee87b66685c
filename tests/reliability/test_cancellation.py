"""A cancelled job never counts as success: not for the core's wait, results or download, not for a
reattaching retry (which submits anew instead of reusing a cancelled job), not for a Dagster step.
(Cancelling *from* each orchestrator is proven in its own suite: tests/dagster test_run_termination_*,
tests/airflow test_cancelled_job_is_never_success / test_timeout_cancels_the_job_and_fails,
tests/prefect test_cancelling_the_flow_run_cancels_the_remote_job.)
"""

from __future__ import annotations

import threading
import time

import polars as pl
import pytest
from dagster import asset, materialize
from dagster_polars import PolarsParquetIOManager

from dagster_sutro import SutroResource, build_sutro_inference_asset
from sutro_core import BatchJobRequest, JobCancelledError, JobStatus, idempotency_key

from .conftest import FAST_POLL


def _cancel_first_job_when_running(client, done: threading.Event) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not done.is_set():
        jobs = client.list_jobs()
        if jobs and jobs[0].status in (JobStatus.RUNNING, JobStatus.STARTING, JobStatus.QUEUED):
            client.cancel_job(jobs[0].job_id)
            return
        time.sleep(0.05)


def test_cancelled_job_fails_wait_results_and_download_and_is_never_reused(sutro_client, tmp_path, tally):
    req = BatchJobRequest.for_inference([f"row {i}" for i in range(40)], model="slow-embed")
    key = idempotency_key("cancel", "step", fingerprint=req.fingerprint)
    sub = sutro_client.submit_job(req, idempotency_key=key)
    sutro_client.cancel_job(sub.job_id)
    with pytest.raises(JobCancelledError):
        sutro_client.await_job_completion(sub.job_id, timeout=60, obtain_results=False)
    with pytest.raises(JobCancelledError):
        sutro_client.get_job_results(sub.job_id)
    with pytest.raises(JobCancelledError):
        sutro_client.download_results(sub.job_id, tmp_path / "out.parquet")
    assert list(tmp_path.iterdir()) == []
    # a retry of the step does not reattach to the cancelled job: it submits a fresh one
    again = sutro_client.submit_job(req, idempotency_key=key)
    assert not again.reattached and again.job_id != sub.job_id
    sutro_client.cancel_job(again.job_id)
    tally["cancellations checked"] += 4


@asset
def many_rows() -> pl.DataFrame:
    return pl.DataFrame({"text": [f"row {i}" for i in range(40)]})


cancelled_embeddings = build_sutro_inference_asset(
    name="cancelled_embeddings", upstream=many_rows, model="slow-embed", column="text"
)


def test_job_cancelled_behind_dagsters_back_fails_the_step(sutro_server, sutro_key, sutro_client, tmp_path, tally):
    done = threading.Event()
    canceller = threading.Thread(target=_cancel_first_job_when_running, args=(sutro_client, done), daemon=True)
    canceller.start()
    sutro = SutroResource(api_key=sutro_key, api_url=sutro_server.url, poll_interval_seconds=0.1,
                          max_poll_interval_seconds=0.3)
    result = materialize([many_rows, cancelled_embeddings], raise_on_error=False, resources={
        "sutro": sutro, "io_manager": PolarsParquetIOManager(base_dir=str(tmp_path / "storage"))})
    done.set()
    canceller.join(5)
    assert not result.success, "a cancelled job must fail the step"
    assert result.asset_materializations_for_node("cancelled_embeddings") == []
    [job] = sutro_client.list_jobs()
    assert job.status in (JobStatus.CANCELLING, JobStatus.CANCELLED)
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure and "CANCELLED" in str(failure[0].event_specific_data.error.message)
    tally["cancellations checked"] += 1
