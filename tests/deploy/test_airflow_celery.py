"""Airflow as production runs it: PostgreSQL metadata database, CeleryExecutor on Redis, two Celery workers
standing for two machines (concurrency 1 each), scheduler, dag-processor, triggerer and api-server, each
its own process. The DAG's Sutro step writes its results to S3 through an Airflow ``aws`` connection; a
downstream task reads them back from S3 on whichever worker Celery hands it.

The kill: while the Sutro task runs on one worker (``deferrable=False``: the worker holds the task for the
whole job, the window in which losing a worker loses a running task), that worker's whole process tree is
SIGKILLed. The scheduler notices the missing heartbeats, fails the try and retries it; only the other worker
is left to run the retry, which reattaches to the job the dead worker submitted. A deferred task is in the
triggerer while it waits, so a worker lost then loses nothing (the reliability tier kills the triggerer's
side); its worker phases (submit, write) are seconds long.

Repetitions: one per run (a full deployment, kill and retry take one to three minutes on a 2-core box);
``SUTRO_DEPLOY_KILL_REPS=N`` repeats it.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import polars as pl
import pytest

from sutro_core import JobStatus
from sutro_core.idempotency import scope_id, scope_marker
from support.services import wait_for

from .airflow_celery import AirflowCeleryDeployment

pytestmark = pytest.mark.slow

DAG_FILE = Path(__file__).parent / "airflow_dags" / "sutro_on_celery.py"
DAG_ID = "sutro_on_celery"
ROWS = 60  # slow-embed: >= 0.3 s a row, so the job still runs when the worker is killed
KILL_REPS = int(os.environ.get("SUTRO_DEPLOY_KILL_REPS", "1"))
WORKERS = ("worker-a", "worker-b")


def _airflow_env(sutro_url: str, key: str, s3_server, output: str) -> dict[str, str]:
    """Connections and DAG settings every Airflow process gets, as a deployment's secrets backend would."""
    aws = {"conn_type": "aws", "login": s3_server.access_key, "password": s3_server.secret_key,
           "extra": {"endpoint_url": s3_server.endpoint_url, "region_name": s3_server.region}}
    return {
        "AIRFLOW_CONN_SUTRO_DEFAULT": json.dumps({"conn_type": "sutro", "host": sutro_url, "password": key}),
        "AIRFLOW_CONN_AWS_DEPLOY": json.dumps(aws),
        "DEPLOY_DAG_ID": DAG_ID, "DEPLOY_ROWS": str(ROWS), "DEPLOY_MODEL": "slow-embed", "DEPLOY_OUTPUT": output,
        "DEPLOY_AWS_CONN": "aws_deploy",
        # No AWS_* variables: the workers reach S3 only through the Airflow connection.
    }


@pytest.mark.timeout(900)
@pytest.mark.parametrize("rep", range(KILL_REPS))
def test_worker_killed_mid_task_the_retry_on_the_other_worker_reattaches(
        rep, postgres_server, redis_server, s3_server, s3_bucket, sutro_server, sutro_key, sutro_client, tmp_path):
    output = s3_bucket.uri("airflow/embeddings.parquet")
    env = _airflow_env(sutro_server.url, sutro_key, s3_server, output)
    with AirflowCeleryDeployment(tmp_path, postgres_server, redis_server, dags=[DAG_FILE], env=env,
                                 task_heartbeat_timeout=30) as af:
        af.start_workers(*WORKERS)

        # Mid-task: the try runs on a worker, and the job it submitted runs on sutro-local.
        first = af.wait_for_task(DAG_ID, "embed", lambda ti: ti["state"] == "running" and ti["hostname"], 300,
                                 "the Sutro task to run on a worker")
        job = wait_for(lambda: next(iter(sutro_client.list_jobs()), None), 120, "the task to submit its job")
        assert af.task_instance(DAG_ID, "embed")["try_number"] == first["try_number"] == 1
        victim = first["hostname"]
        survivor = next(w for w in WORKERS if w != victim)
        af.kill_worker(victim)
        status_at_kill = sutro_client.get_job_status(job.job_id)
        assert not status_at_kill.is_terminal, "the job ended before the worker was killed: nothing was tested"

        wait_for(lambda: af.dag_run_state(DAG_ID) in ("success", "failed"), 420, "the DAG run to finish",
                 interval=1)
        state, tries = af.dag_run_state(DAG_ID), af.task_tries(DAG_ID, "embed")
        logs = af.logs(DAG_ID)
        assert state == "success", f"{state}: {tries}\n{logs[-4000:]}"
        manifest = af.xcom(DAG_ID, "embed")
        seen = af.xcom(DAG_ID, "read_back")
        run_id = af.query("select run_id from dag_run where dag_id = %s", DAG_ID)[0][0]

    # The dead worker's try failed by heartbeat timeout; the retry ran on the other worker and succeeded.
    assert [(t["try_number"], t["hostname"]) for t in tries] == [(1, victim), (2, survivor)], tries
    assert tries[-1]["state"] == "success", tries
    assert f"Reattached to job {job.job_id}" in logs, logs[-4000:]
    assert s3_server.secret_key not in logs, "the S3 secret is in a task log"

    # Exactly one billed job for the step: the key's whole job list, and the jobs carrying the step's scope.
    jobs = sutro_client.list_jobs()
    assert [j.job_id for j in jobs] == [job.job_id], jobs
    marker = scope_marker(scope_id("airflow", DAG_ID, "embed", run_id, -1))
    assert [j.job_id for j in jobs if marker in (j.description or "")] == [job.job_id]
    assert jobs[0].status is JobStatus.SUCCEEDED

    # The artifact on S3 is complete, and is the only object the step left there.
    assert manifest["uri"] == output and manifest["job_id"] == job.job_id and manifest["rows"] == ROWS, manifest
    assert manifest["conn_id"] == "aws_deploy", manifest
    assert s3_bucket.keys() == ["airflow/embeddings.parquet"], s3_bucket.keys()
    assert not s3_bucket.unfinished_uploads()
    df = pl.read_parquet(io.BytesIO(s3_bucket.read("airflow/embeddings.parquet")))
    assert df.height == ROWS
    assert df["sutro_row_status"].to_list() == ["ok"] * ROWS
    assert set(df["sutro_job_id"].to_list()) == {job.job_id}
    assert {len(v) for v in df["inference_result"].to_list()} == {384}

    # What the downstream task, on a worker of Celery's choosing, read from S3.
    assert seen == {"rows": ROWS, "columns": df.columns, "dims": 384, "worker": survivor}, seen
