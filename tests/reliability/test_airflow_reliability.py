"""Airflow under faults, each DAG run in its own process (``dag.test()``): a lost submit answer and a
flaky network give exactly one Sutro job; a task process killed with SIGKILL after submitting is
rerun (same DAG run) and reattaches to the job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from sutro_core import JobStatus

from .proxy import Rule

TESTS_DIR = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory) -> dict[str, str]:
    """A throwaway, migrated AIRFLOW_HOME for the driver processes."""
    home = tmp_path_factory.mktemp("airflow-home")
    (home / "dags").mkdir()
    env = {
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    airflow_bin = os.path.join(os.path.dirname(sys.executable), "airflow")
    subprocess.run([airflow_bin, "db", "migrate"], check=True, capture_output=True, env={**os.environ, **env})
    return env


def _driver(airflow_home: dict[str, str], api_url: str, key: str, dag_id: str, model: str, output: Path,
            **extra: str) -> subprocess.Popen:
    env = {**os.environ, **airflow_home, **extra,
           "AIRFLOW_CONN_SUTRO_DEFAULT": json.dumps({"conn_type": "sutro", "host": api_url, "password": key}),
           "RELIABILITY_DAG_ID": dag_id, "RELIABILITY_MODEL": model, "RELIABILITY_OUTPUT": str(output)}
    return subprocess.Popen([sys.executable, "-c", "from reliability.airflow_driver import main; main()"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _outcome(proc: subprocess.Popen, timeout: float = 240) -> dict:
    out, _ = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{\"state\"")]
    assert proc.returncode == 0 and lines, out[-4000:]
    return json.loads(lines[-1])


@pytest.mark.parametrize("lost", ["status_after"])  # drop_after: see the core and Dagster suites
def test_lost_submit_and_flaky_trigger_give_one_job(lost, airflow_home, proxy, sutro_key, sutro_client, tmp_path,
                                                    tally):
    proxy.add(
        Rule(lost, path=r"^/batch-inference", status=524),
        Rule("status_before", path=r"^/job-status", status=502, times=2),
        Rule("rate_limit", path=r"^/job-status", retry_after=0.2),
        Rule("truncate", path=r"/results\?", keep=64),
    )
    outcome = _outcome(_driver(airflow_home, proxy.url, sutro_key, f"rel_lost_{lost}", "all-minilm-l6-v2",
                               tmp_path / "out.parquet"))
    assert outcome["state"] == "success", outcome
    # The lost submit always happens; the flaky polls only if the job is still running when the trigger
    # starts (a job finished during submit recovery is not waited for), so they may fire fewer times.
    assert proxy.rules[0].applied == 1, [(r.action, r.applied) for r in proxy.rules]
    assert len(proxy.hits("POST", r"^/batch-inference")) == 1
    jobs = sutro_client.list_jobs()
    assert [j.job_id for j in jobs] == [outcome["job_id"]] and jobs[0].status is JobStatus.SUCCEEDED
    tally["duplicates found"] += len(jobs) - 1
    assert outcome["manifest"]["rows"] == 16 and pl.read_parquet(tmp_path / "out.parquet").height == 16


@pytest.mark.parametrize("deferrable", ["1", "0"], ids=["deferred", "waiting-in-worker"])
def test_killed_task_process_reruns_and_reattaches(deferrable, airflow_home, sutro_server, sutro_key, sutro_client,
                                                   tmp_path, tally):
    dag_id = f"rel_kill_{deferrable}"
    first = _driver(airflow_home, sutro_server.url, sutro_key, dag_id, "slow-embed", tmp_path / "out.parquet",
                    RELIABILITY_DEFERRABLE=deferrable)
    deadline = time.monotonic() + 180
    while not sutro_client.list_jobs():
        assert first.poll() is None, first.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "the task never submitted"
        time.sleep(0.1)
    first.kill()
    first.wait(10)
    tally["orchestrator processes killed"] += 1
    [job] = sutro_client.list_jobs()
    assert not job.status.is_terminal

    outcome = _outcome(_driver(airflow_home, sutro_server.url, sutro_key, dag_id, "slow-embed",
                               tmp_path / "out.parquet", RELIABILITY_DEFERRABLE=deferrable))
    assert outcome["state"] == "success", outcome
    assert outcome["job_id"] == job.job_id, "the rerun reattached to the job the killed process submitted"
    jobs = sutro_client.list_jobs()
    assert [j.job_id for j in jobs] == [job.job_id], "exactly one job, ever"
    tally["duplicates found"] += len(jobs) - 1
    df = pl.read_parquet(tmp_path / "out.parquet")
    assert df.height == 16
