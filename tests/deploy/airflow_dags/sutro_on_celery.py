"""The DAG the Airflow deployment test runs on Celery workers: Sutro embeddings written to S3, then a
downstream task (on whichever worker Celery gives it) that reads the artifact back from S3.

Its settings come from the environment every Airflow process shares (set by tests/deploy):
DEPLOY_DAG_ID, DEPLOY_ROWS, DEPLOY_MODEL, DEPLOY_OUTPUT (an s3:// URI), DEPLOY_AWS_CONN (an Airflow
``aws`` connection id, the S3 credentials and endpoint).
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG, ObjectStoragePath, task

from airflow_provider_sutro.operators.sutro import SutroBatchInferenceOperator

AWS_CONN = os.environ.get("DEPLOY_AWS_CONN", "aws_deploy")
OUTPUT = os.environ.get("DEPLOY_OUTPUT", "s3://sutro-deploy/airflow/embeddings.parquet")
ROWS = [f"celery deployment row {i}" for i in range(int(os.environ.get("DEPLOY_ROWS", "40")))]

with DAG(
    os.environ.get("DEPLOY_DAG_ID", "sutro_on_celery"),
    schedule="@once",  # the scheduler creates the one run by itself: no CLI or API call needed
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    is_paused_upon_creation=False,
):
    embed = SutroBatchInferenceOperator(
        task_id="embed",
        model=os.environ.get("DEPLOY_MODEL", "slow-embed"),
        inputs=ROWS,
        # The results are written through the Airflow connection (credentials, endpoint_url in its extra)
        output_uri=ObjectStoragePath(OUTPUT, conn_id=AWS_CONN),
        # The wait holds the worker slot, so a worker lost mid-job is a task lost mid-run: the case the
        # test kills. (Deferred, the wait is the triggerer's, and a worker only submits and writes.)
        deferrable=False,
        poll_interval=0.5,
        max_poll_interval=1.0,
        retries=2,
        retry_delay=dt.timedelta(seconds=1),
    )

    @task
    def read_back(manifest: dict) -> dict:
        """What a downstream user task sees: the artifact read from S3 through the same connection."""
        import socket

        import polars as pl

        # The manifest names the connection its file was written with; the URI never does.
        path = ObjectStoragePath(manifest["uri"], conn_id=manifest["conn_id"])
        with path.open("rb") as fh:
            df = pl.read_parquet(fh)
        return {"rows": df.height, "columns": df.columns,
                "dims": len(df["inference_result"][0]) if "inference_result" in df.columns else None,
                "worker": os.environ.get("DEPLOY_WORKER_NAME", socket.gethostname())}

    read_back(embed.output)
