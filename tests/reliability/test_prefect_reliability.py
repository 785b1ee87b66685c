"""Prefect under faults, each flow run in its own process: a submit whose answer is lost (524 after
the server accepted it) is recovered; the process is then SIGKILLed while waiting; running the same
flow run again through a flaky network reattaches to the job and writes complete results: one job.

The Prefect API is a PrefectTestServer this test owns (not each driver's ephemeral server, which a
SIGKILLed driver used to leave running), and each driver runs in its own process group, killed whole.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

import pytest

from sutro_core import JobStatus
from support.prefect_server import PrefectTestServer

from .proxy import Rule

TESTS_DIR = Path(__file__).parents[1]


def _driver(mode: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", f"from reliability.prefect_driver import main; main({mode!r})"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


@pytest.fixture
def prefect_api(tmp_path):
    """A Prefect API both driver processes share; stopped (process group killed) whatever happens."""
    with PrefectTestServer(home=tmp_path / "prefect_server") as server:
        yield server.api_url


def test_lost_submit_then_killed_flow_run_reattaches_with_one_job(proxy, sutro_key, sutro_client, tmp_path, tally,
                                                                  prefect_api):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect_home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING", "SUTRO_API_KEY": sutro_key, "SUTRO_API_URL": proxy.url,
           "RELIABILITY_OUTPUT": str(tmp_path / "out.parquet"), "RELIABILITY_FLOW_RUN_FILE": str(tmp_path / "run-id"),
           "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
    env["PREFECT_API_URL"] = prefect_api
    proxy.add(Rule("status_after", path=r"^/batch-inference", status=524))
    first = _driver("first", env)
    try:
        deadline = time.monotonic() + 180
        while not (sutro_client.list_jobs() and proxy.hits("GET", r"^/job-status")):  # recovered and waiting
            assert first.poll() is None, first.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the flow never got to waiting"
            time.sleep(0.1)
    finally:
        _kill_group(first)
    tally["orchestrator processes killed"] += 1
    [job] = sutro_client.list_jobs()
    assert len(proxy.hits("POST", r"^/batch-inference")) == 1

    proxy.add(Rule("status_before", path=r"^/job-status", status=503, times=2), Rule("drop_after", path=r"^/jobs/"),
              Rule("truncate", path=r"/results\?", keep=80))
    second = _driver("rerun", env)
    try:
        out, _ = second.communicate(timeout=240)
    finally:
        _kill_group(second)
    lines = [line for line in out.splitlines() if line.startswith('{"state"')]
    assert second.returncode == 0 and lines, out[-4000:]
    outcome = json.loads(lines[-1])
    assert outcome["state"] == "COMPLETED", outcome
    assert outcome["manifest"]["job_id"] == job.job_id, "the rerun reattached to the job"
    assert all(r.applied == r.times for r in proxy.rules), [(r.action, r.applied) for r in proxy.rules]
    assert len(proxy.hits("POST", r"^/batch-inference")) == 1, "never submitted again"
    jobs = sutro_client.list_jobs()
    assert [j.job_id for j in jobs] == [job.job_id] and jobs[0].status is JobStatus.SUCCEEDED
    tally["duplicates found"] += len(jobs) - 1
    df = pl.read_parquet(tmp_path / "out.parquet")
    assert df.height == 16
