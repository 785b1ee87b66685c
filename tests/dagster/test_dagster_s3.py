"""dagster_sutro on S3 (moto's server over HTTP): ``SutroParquetIOManager(base_dir="s3://...")`` stores the
artifact, a downstream asset reads it, in this process (storage_options) and in other processes that have
only the standard AWS environment."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from dagster import EnvVar, asset, materialize

from dagster_sutro import RESULTS_CHECK_NAME, SutroParquetIOManager, SutroResource, build_sutro_inference_asset

REPO = Path(__file__).resolve().parents[2]
TICKETS = ["I was charged twice for my subscription", "The app crashes when I log in", "How do I export my data?"]


@asset
def tickets() -> pl.DataFrame:
    return pl.DataFrame({"ticket_id": ["t1", "t2", "t3"], "text": TICKETS})


ticket_vectors = build_sutro_inference_asset(name="ticket_vectors", upstream=tickets, model="all-minilm-l6-v2",
                                             column="text")


@asset
def vector_sizes(ticket_vectors: pl.LazyFrame) -> pl.DataFrame:
    # A downstream asset: dagster-polars loads the stored artifact back from S3.
    return ticket_vectors.select("ticket_id", pl.col("inference_result").list.len().alias("dims")).collect()


def test_io_manager_on_s3_stores_the_artifact_and_a_downstream_asset_reads_it(
        sutro_server, sutro_key, s3_bucket, tmp_path, monkeypatch):
    server = s3_bucket.server
    monkeypatch.setenv("TEST_S3_SECRET", server.secret_key)  # as a deployment would: the secret in an EnvVar
    staging = tmp_path / "staging"
    resources = {
        "sutro": SutroResource(api_key=sutro_key, api_url=sutro_server.url, poll_interval_seconds=0.2,
                               max_poll_interval_seconds=0.5, results_dir=str(staging)),
        # s3fs's own option names, endpoint at the top level as s3fs documents it
        "io_manager": SutroParquetIOManager(base_dir=s3_bucket.uri("dagster"), storage_options={
            "key": server.access_key, "secret": EnvVar("TEST_S3_SECRET"), "endpoint_url": server.endpoint_url,
            "region_name": server.region}),
    }
    result = materialize([tickets, ticket_vectors, vector_sizes], resources=resources)
    assert result.success

    assert result.output_for_node("vector_sizes").to_dicts() == [
        {"ticket_id": t, "dims": 384} for t in ("t1", "t2", "t3")]
    mats = {str(m.asset_key.path[-1]): m for m in result.get_asset_materialization_events()}
    meta = mats["ticket_vectors"].materialization.metadata
    key = "dagster/ticket_vectors.parquet"
    assert meta["path"].value == s3_bucket.uri(key) and meta["dagster/uri"].value == s3_bucket.uri(key)
    assert meta["dagster/row_count"].value == 3
    # The stored object is the artifact itself, footer included, and the staged local copy is gone.
    stored = pq.read_metadata(io.BytesIO(s3_bucket.read(key)))
    assert stored.num_rows == 3 and stored.metadata[b"sutro.job_id"].decode() == meta["sutro.job.id"].value
    assert not any(p.is_file() for p in staging.rglob("*"))
    assert s3_bucket.unfinished_uploads() == []
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == RESULTS_CHECK_NAME and check.passed
    assert server.secret_key not in json.dumps({k: str(v.value) for k, v in meta.items()})


_PIPELINE = """
    import json, sys
    import polars as pl
    from dagster import asset, materialize
    from dagster_sutro import SutroParquetIOManager, SutroResource, build_sutro_inference_asset

    bucket, step = sys.argv[1], sys.argv[2]

    @asset
    def tickets() -> pl.DataFrame:
        return pl.DataFrame({"ticket_id": ["t1", "t2"], "text": ["charged twice", "app crashes"]})

    ticket_vectors = build_sutro_inference_asset(name="ticket_vectors", upstream=tickets,
                                                 model="all-minilm-l6-v2", column="text")

    @asset
    def vector_sizes(ticket_vectors: pl.LazyFrame) -> pl.DataFrame:
        return ticket_vectors.select("ticket_id", pl.col("inference_result").list.len().alias("dims")).collect()

    resources = {"sutro": SutroResource(poll_interval_seconds=0.2, max_poll_interval_seconds=0.5),
                 "io_manager": SutroParquetIOManager(base_dir=f"s3://{bucket}/dagster")}   # no credentials here
    assets = [tickets, ticket_vectors, vector_sizes]
    selection = [tickets, ticket_vectors] if step == "produce" else [vector_sizes]
    result = materialize(assets, selection=selection, resources=resources)
    out = result.output_for_node("vector_sizes").to_dicts() if step == "consume" else None
    print(json.dumps({"success": result.success, "sizes": out}))
"""


def test_a_downstream_asset_in_another_process_reads_the_artifact_with_only_the_aws_environment(
        sutro_server, sutro_key, s3_bucket, tmp_path):
    env = s3_bucket.server.child_env({
        "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path),
        "SUTRO_API_URL": sutro_server.url, "SUTRO_API_KEY": sutro_key,
        "PYTHONPATH": os.pathsep.join([str(REPO / "core"), str(REPO)]),
    })
    for step in ("produce", "consume"):  # two processes: the second shares only the bucket with the first
        out = subprocess.run([sys.executable, "-c", textwrap.dedent(_PIPELINE), s3_bucket.name, step], env=env,
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-4000:]
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got["success"], out.stderr[-4000:]
    assert got["sizes"] == [{"ticket_id": "t1", "dims": 384}, {"ticket_id": "t2", "dims": 384}]
    assert "dagster/ticket_vectors.parquet" in s3_bucket.keys("dagster/")
