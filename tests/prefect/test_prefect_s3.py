"""prefect_sutro on S3 (moto's server over HTTP): inputs and results on s3://, credentials as a Secret block in
storage_options (never stored by Prefect in plain text), or only the worker's standard AWS environment."""

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
import pytest
from prefect import flow
from prefect.blocks.system import Secret
from sutro_core import InputValidationError

from prefect_sutro import load_results, sutro_batch_job

REPO = Path(__file__).resolve().parents[2]
REVIEWS = ["Great blender, crushes ice easily.", "Stopped working after a week.", "Okay for the price."]
FAST = {"poll_interval_seconds": 0.2, "max_poll_interval_seconds": 0.5}


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only storage_options can reach the endpoint."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)


def _drain() -> None:
    """Flush Prefect's log and event workers, so what the run sent is in the server's database."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        for result in (APILogWorker.instance().drain(), EventsWorker.drain_all()):
            if inspect.isawaitable(result):
                await result

    run_coro_as_sync(drain())


def test_a_flow_reads_its_input_from_s3_and_writes_results_there_with_a_secret_block(
        sutro_credentials, sutro_client, s3_bucket, prefect_harness, no_aws_env):
    server = s3_bucket.server
    server.client().put_object(Bucket=s3_bucket.name, Key="in/reviews.parquet", Body=_parquet_bytes(
        pl.DataFrame({"review_id": [1, 2, 3], "text": REVIEWS})))
    options = {"key": server.access_key, "secret": Secret(value=server.secret_key),
               "endpoint_url": server.endpoint_url, "client_kwargs": {"region_name": server.region}}

    @flow
    def reviews() -> dict:
        return sutro_batch_job(s3_bucket.uri("in/reviews.parquet"), s3_bucket.uri("out/reviews.parquet"),
                               sutro_credentials, model="all-minilm-l6-v2", column="text",
                               storage_options=options, **FAST)

    manifest = reviews()
    assert manifest["uri"] == s3_bucket.uri("out/reviews.parquet") and manifest["rows"] == 3
    assert s3_bucket.keys("out/") == ["out/reviews.parquet"] and s3_bucket.unfinished_uploads() == []
    df = load_results(manifest, storage_options=server.storage_options)
    assert df["review_id"].to_list() == [1, 2, 3] and len(df["inference_result"][0]) == 384
    stored = pq.read_metadata(io.BytesIO(s3_bucket.read("out/reviews.parquet")))
    assert stored.metadata[b"sutro.job_id"].decode() == manifest["job_id"]

    # Everything Prefect stored about the runs (parameters, logs, artifacts, events) is in its database.
    _drain()
    stored_bytes = b"".join(p.read_bytes() for p in Path(prefect_harness.home).rglob("*") if p.is_file())
    assert manifest["job_id"].encode() in stored_bytes  # the runs are recorded there...
    assert server.secret_key.encode() not in stored_bytes  # ...their secret is not


async def test_a_plain_text_secret_is_refused_before_anything_is_billed_and_masked_where_prefect_stored_it(
        sutro_credentials, sutro_client, s3_bucket):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    secret = "plain-" + s3_bucket.name
    with pytest.raises(InputValidationError, match=r"storage_options: 'secret' is plain text.*Secret block"):
        await sutro_batch_job(REVIEWS, s3_bucket.uri("out/x.parquet"), sutro_credentials, model="all-minilm-l6-v2",
                              storage_options={"key": "k", "secret": secret}, **FAST)
    assert sutro_client.list_jobs() == []
    async with get_client() as client:
        runs = await client.read_flow_runs(sort="EXPECTED_START_TIME_DESC", limit=20)
    refused = [r for r in runs if r.parameters.get("output_path") == s3_bucket.uri("out/x.parquet")]
    assert len(refused) == 1 and refused[0].state.is_failed()
    assert refused[0].parameters["storage_options"] == {"key": "k", "secret": "**********"}


_WORKER_FLOW = """
    import json, os, sys
    from prefect import flow
    from prefect_sutro import SutroCredentials, load_results, sutro_batch_job

    bucket = sys.argv[1]

    @flow
    def nightly() -> dict:   # as a work pool's worker runs it: the AWS environment, no storage settings
        creds = SutroCredentials(api_key=os.environ["SUTRO_API_KEY"], api_url=os.environ["SUTRO_API_URL"])
        return sutro_batch_job(["Great blender", "Broke in a week"], f"s3://{bucket}/nightly/out.parquet", creds,
                               model="all-minilm-l6-v2", poll_interval_seconds=0.2, max_poll_interval_seconds=0.5)

    manifest = nightly()
    print(json.dumps({"uri": manifest["uri"], "rows": load_results(manifest).height}))
"""


def test_a_flow_in_another_process_with_only_the_aws_environment(
        sutro_server, sutro_key, s3_bucket, prefect_harness, tmp_path):
    env = s3_bucket.server.child_env({
        "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(REPO / "core"), str(REPO)]),
        "PREFECT_API_URL": prefect_harness.api_url, "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
        "SUTRO_API_URL": sutro_server.url, "SUTRO_API_KEY": sutro_key,
    })
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(_WORKER_FLOW), s3_bucket.name], env=env,
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"uri": s3_bucket.uri("nightly/out.parquet"), "rows": 2}
    assert s3_bucket.keys() == ["nightly/out.parquet"]


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()
