"""Dagster under faults: a lost submit answer and a flaky network during the step still give exactly
one Sutro job; a step process killed with SIGKILL after submitting is re-executed and reattaches.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, ReexecutionOptions, asset, execute_job, materialize, reconstructable
from dagster_polars import PolarsParquetIOManager

from dagster_sutro import SutroResource, build_sutro_inference_asset
from sutro_core import JobStatus

from .dagster_jobs import ROWS, crash_job
from .proxy import Rule

TEXTS = [f"flaky network review {i}" for i in range(6)]


@asset
def flaky_reviews() -> pl.DataFrame:
    return pl.DataFrame({"text": TEXTS})


flaky_embeddings = build_sutro_inference_asset(
    name="flaky_embeddings", upstream=flaky_reviews, model="all-minilm-l6-v2", column="text"
)


@pytest.mark.parametrize("lost", ["status_after", "drop_after"])
def test_lost_submit_and_flaky_wait_give_one_job(lost, proxy, sutro_key, sutro_client, tmp_path, tally):
    proxy.add(
        Rule(lost, path=r"^/batch-inference", status=524),
        Rule("status_before", path=r"^/job-status", status=503, times=2),
        Rule("drop_after", path=r"^/job-status"),
        Rule("truncate", path=r"/results\?", keep=100),
    )
    sutro = SutroResource(api_key=sutro_key, api_url=proxy.url, poll_interval_seconds=0.1,
                          max_poll_interval_seconds=0.3)
    result = materialize([flaky_reviews, flaky_embeddings], resources={
        "sutro": sutro, "io_manager": PolarsParquetIOManager(base_dir=str(tmp_path / "storage"))})
    assert result.success
    assert all(r.applied == r.times for r in proxy.rules), [(r.action, r.applied) for r in proxy.rules]
    assert len(proxy.hits("POST", r"^/batch-inference")) == 1
    jobs = sutro_client.list_jobs()
    assert len(jobs) == 1 and jobs[0].status is JobStatus.SUCCEEDED
    tally["duplicates found"] += len(jobs) - 1
    [mat] = result.asset_materializations_for_node("flaky_embeddings")
    assert mat.metadata["sutro.job.id"].value == jobs[0].job_id
    stored = pl.read_parquet(mat.metadata["path"].value)
    assert stored["text"].to_list() == TEXTS and stored.height == len(TEXTS)


def test_killed_step_process_is_reexecuted_and_reattaches(sutro_server, sutro_key, sutro_client, tmp_path,
                                                          monkeypatch, tally):
    env = {**os.environ, "SUTRO_API_KEY": sutro_key, "SUTRO_API_URL": sutro_server.url,
           "DAGSTER_HOME": str(tmp_path / "dagster_home"), "DAGSTER_SUTRO_TEST_STORAGE": str(tmp_path / "storage"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    (tmp_path / "dagster_home").mkdir()
    for k in ("SUTRO_API_KEY", "SUTRO_API_URL", "DAGSTER_HOME", "DAGSTER_SUTRO_TEST_STORAGE"):
        monkeypatch.setenv(k, env[k])
    proc = subprocess.Popen([sys.executable, "-c", "from reliability.dagster_jobs import main; main()"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not sutro_client.list_jobs():  # the step submitted: kill its process before it can finish
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the step never submitted"
        time.sleep(0.1)
    proc.kill()
    proc.wait(10)
    tally["orchestrator processes killed"] += 1
    [job] = sutro_client.list_jobs()
    assert not job.status.is_terminal, "the job outlives the killed step"

    instance = DagsterInstance.get()
    [run] = instance.get_runs()
    # What Dagster's run monitoring does when a run worker dies: mark the run failed; then re-execute it.
    instance.report_run_failed(run)
    options = ReexecutionOptions.from_failure(run.run_id, instance)
    with execute_job(reconstructable(crash_job), instance=instance, reexecution_options=options) as second:
        assert second.success
        [mat] = second.asset_materializations_for_node("crash_embeddings")
        assert mat.metadata["sutro.job.reattached"].value is True
        assert mat.metadata["sutro.job.id"].value == job.job_id
        assert pl.read_parquet(mat.metadata["path"].value)["text"].to_list() == ROWS
    jobs = sutro_client.list_jobs()
    assert [j.job_id for j in jobs] == [job.job_id], "exactly one job, ever"
    tally["duplicates found"] += len(jobs) - 1
