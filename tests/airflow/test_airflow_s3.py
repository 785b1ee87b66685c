"""The operators on S3 (moto's server over HTTP) in real DAG runs (``dag.test()``): ``ObjectStoragePath`` with an
``aws`` connection (credentials and ``endpoint_url`` from the connection, none of ours, no AWS environment) as
output and as input, a manifest chained downstream through the same connection."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from airflow_provider_sutro.io import output_uri_to_str
from airflow_provider_sutro.operators.sutro import SutroBatchFunctionOperator, SutroBatchInferenceOperator

TICKETS = ["I was charged twice this month", "The app crashes when I log in", "Love the new dashboard"]
FAST = {"poll_interval": 0.2, "max_poll_interval": 0.5}


@pytest.fixture
def aws_conn(monkeypatch: pytest.MonkeyPatch, s3_server: Any) -> str:
    """An ``aws`` connection ``aws_s3`` (JSON env-var form) holding the keys and, in its extra, the endpoint;
    no AWS_* variable in the environment, so only the connection can make the S3 calls work."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookups on a dev box
    monkeypatch.setenv("AIRFLOW_CONN_AWS_S3", json.dumps({
        "conn_type": "aws", "login": s3_server.access_key, "password": s3_server.secret_key,
        "extra": {"endpoint_url": s3_server.endpoint_url, "region_name": s3_server.region},
    }))
    return "aws_s3"


def _dag(dag_id: str) -> Any:
    from airflow.sdk import DAG

    return DAG(dag_id, schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False)


def test_object_storage_paths_with_an_aws_connection_as_output_and_input(
    run_dag: Any, dag_id: str, sutro_conn: str, aws_conn: str, s3_bucket: Any, capsys: Any, caplog: Any,
) -> None:
    from airflow.sdk import ObjectStoragePath, task

    bucket = s3_bucket.name
    source = ObjectStoragePath(f"s3://{bucket}/in/tickets.parquet", conn_id=aws_conn)
    with source.open("wb") as fh:  # the input, written through the same connection
        pl.DataFrame({"ticket_id": [1, 2, 3], "text": TICKETS}).write_parquet(fh)

    with _dag(dag_id) as dag:
        embed = SutroBatchInferenceOperator(
            task_id="embed", model="all-minilm-l6-v2", column="text",
            inputs=ObjectStoragePath(f"s3://{bucket}/in/tickets.parquet", conn_id=aws_conn),
            output_uri=ObjectStoragePath(f"s3://{bucket}/out/embeddings.parquet", conn_id=aws_conn), **FAST,
        )
        triage = SutroBatchFunctionOperator(  # deferrable; the string form names the connection, templated
            task_id="triage", function_name="ticket-triage", inputs=embed.output, columns=["text"],
            carry_columns=["ticket_id", "text"],
            output_uri=f"s3://{aws_conn}@{bucket}/out/{{{{ run_id }}}}/triage.parquet", **FAST,
        )

        @task
        def count(manifest: dict) -> int:  # a plain task reads the results the Airflow way
            with ObjectStoragePath(manifest["uri"], conn_id=manifest["conn_id"]).open("rb") as fh:
                return pl.read_parquet(fh).height

        count(triage.output)
    result = run_dag(dag)
    assert result.state == "success"

    first = result.xcoms("embed")["return_value"]
    assert first["uri"] == f"s3://{bucket}/out/embeddings.parquet" and first["conn_id"] == aws_conn
    second = result.xcoms("triage")["return_value"]
    assert second["uri"].startswith(f"s3://{bucket}/out/") and aws_conn not in second["uri"]
    assert result.xcoms("count")["return_value"] == 3
    triage_key = second["uri"].removeprefix(f"s3://{bucket}/")
    assert sorted(s3_bucket.keys("out/")) == sorted(["out/embeddings.parquet", triage_key])
    assert s3_bucket.unfinished_uploads() == []
    stored = pq.read_table(io.BytesIO(s3_bucket.read(triage_key)))
    assert stored.column("ticket_id").to_pylist() == [1, 2, 3]  # carried from the S3 input, through the chain
    assert set(stored.column("label").to_pylist()) <= {"billing", "bug", "feature_request", "account"}
    assert stored.schema.metadata[b"sutro.job_id"].decode() == second["job_id"]

    shown = capsys.readouterr()
    logs = caplog.text + shown.out + shown.err + json.dumps([first, second])
    assert s3_bucket.server.secret_key not in logs
    assert "could not read the schema" not in logs  # lineage read the S3 footer through the connection too


def test_output_uri_strings_naming_a_connection_are_stored_without_it() -> None:
    assert output_uri_to_str("s3://aws_s3@bucket/out.parquet") == "s3://bucket/out.parquet"
    assert output_uri_to_str(" s3://bucket/out.parquet ") == "s3://bucket/out.parquet"
    assert output_uri_to_str("https://user@example.com/x.parquet") == "https://user@example.com/x.parquet"
