"""Dagster with the multiprocess executor and ``SutroParquetIOManager(base_dir="s3://...")``: ``dagster job
execute`` (a persistent instance in DAGSTER_HOME) runs each step in a process of its own. The Sutro asset's
process stores its artifact on S3; the downstream asset's process loads it from S3 and records what it saw.
S3 is reached through the standard AWS variables only, as on a machine with an instance role.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from sutro_core import JobStatus
from support.services import Service, wait_for

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
ROWS = 24
STEPS = ("deploy_tickets", "deploy_vectors", "deploy_vector_summary")


@pytest.mark.timeout(600)
def test_downstream_step_in_another_process_reads_the_artifact_from_s3(
        s3_server, s3_bucket, sutro_server, sutro_key, sutro_client, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER", "PYTEST_", "AWS_"))}
    env.update(s3_server.env)
    env.update({
        "DAGSTER_HOME": str(home), "DAGSTER_DISABLE_TELEMETRY": "1",
        "SUTRO_API_KEY": sutro_key, "SUTRO_API_URL": sutro_server.url,
        "DEPLOY_DAGSTER_BASE": s3_bucket.uri("dagster"), "DEPLOY_ROWS": str(ROWS),
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO / "core"), str(REPO), os.environ.get("PYTHONPATH", "")]),
    })
    run = Service("dagster job execute",
                  [str(Path(sys.executable).with_name("dagster")), "job", "execute", "-m", "deploy.dagster_defs",
                   "-j", "sutro_on_s3"], tmp_path / "dagster.log", env=env, cwd=tmp_path).start()
    try:
        wait_for(lambda: not run.running(), 420, "the Dagster run to finish", interval=1)
    finally:
        run.stop()
    assert run.proc.returncode == 0, run.log_tail()

    from dagster import AssetKey, DagsterEventType, DagsterInstance, EventRecordsFilter

    with DagsterInstance.from_config(str(home)) as instance:
        [record] = instance.get_run_records()
        run_id = record.dagster_run.run_id
        starts = instance.get_event_records(EventRecordsFilter(DagsterEventType.STEP_START))
        pids = {r.event_log_entry.step_key: r.event_log_entry.dagster_event.pid for r in starts
                if r.event_log_entry.run_id == run_id}
        [summary] = instance.fetch_materializations(AssetKey("deploy_vector_summary"), limit=5).records
        seen = summary.asset_materialization.metadata["seen"].value

    # Each step ran in a process of its own, none of them the run's coordinator.
    assert set(pids) == set(STEPS), pids
    assert len(set(pids.values())) == len(STEPS) and run.pid not in pids.values(), pids
    assert seen["pid"] == pids["deploy_vector_summary"]

    [job] = sutro_client.list_jobs()
    assert job.status is JobStatus.SUCCEEDED

    # What the downstream process loaded from S3: every row, in order, from the one job.
    assert seen == {"rows": ROWS, "columns": ["ticket_id", "text", "inference_result", "sutro_row_status",
                                               "sutro_job_id"],
                    "ticket_ids": list(range(ROWS)), "dims": [384], "job_ids": [job.job_id],
                    "row_status": ["ok"], "pid": seen["pid"]}, seen

    # The artifact on S3 is the core's file as written: complete, with its sutro.* footer.
    assert s3_bucket.keys("dagster/") == [f"dagster/{step}.parquet" for step in sorted(STEPS)], s3_bucket.keys()
    data = s3_bucket.read("dagster/deploy_vectors.parquet")
    assert pl.read_parquet(io.BytesIO(data)).height == ROWS
    footer = pq.read_metadata(io.BytesIO(data)).metadata or {}
    assert any(k.startswith(b"sutro") for k in footer), sorted(footer)
