"""Issue 16 (Airflow): the stored connection works in the trigger, the example DAG runs the usual ways,
and the dag-processor only parses the example's DAG file."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sutro_core import JobStatus, SutroClient

REPO = Path(__file__).resolve().parents[2]


def _airflow(*args: str) -> subprocess.CompletedProcess[str]:
    airflow_bin = os.path.join(os.path.dirname(sys.executable), "airflow")
    return subprocess.run([airflow_bin, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=120)


@pytest.fixture
def stored_conn(sutro_api_url: str, sutro_key: str, monkeypatch: pytest.MonkeyPatch):
    """A connection added the README's way (``airflow connections add``): in the metadata DB, no env var."""
    conn_id = f"sutro_{uuid.uuid4().hex[:8]}"
    monkeypatch.delenv(f"AIRFLOW_CONN_{conn_id.upper()}", raising=False)
    added = _airflow("connections", "add", conn_id, "--conn-type", "sutro", "--conn-host", sutro_api_url,
                     "--conn-password", sutro_key)
    assert added.returncode == 0, added.stderr[-2000:]
    yield conn_id
    _airflow("connections", "delete", conn_id)


def test_dags_test_with_a_stored_connection(stored_conn: str, sutro_client: SutroClient, tmp_path: Path) -> None:
    """The README's way, as a user runs it: ``airflow connections add`` then ``airflow dags test``. The trigger
    failed with "The conn_id isn't defined" after the job was submitted; and with ``load_examples`` on
    (Airflow's default) every ``dags test`` printed two "No module named 'sutro_pipelines'" tracebacks."""
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "stored_conn_dag.py").write_text(f"""
import datetime as dt
from airflow.sdk import DAG
from airflow_provider_sutro.operators.sutro import SutroBatchInferenceOperator

with DAG("stored_conn_dag", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False):
    SutroBatchInferenceOperator(task_id="embed", model="slow-embed", inputs=["a", "b", "c"],
                                output_uri={str(tmp_path / "out.parquet")!r}, sutro_conn_id={stored_conn!r},
                                poll_interval=0.2, max_poll_interval=0.5)
""")
    airflow_bin = os.path.join(os.path.dirname(sys.executable), "airflow")
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "AIRFLOW__CORE__LOAD_EXAMPLES": "True",
           "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO"}
    run = subprocess.run([airflow_bin, "dags", "test", "stored_conn_dag"], capture_output=True, text=True,
                         env=env, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "isn't defined" not in out and "sutro_pipelines" not in out, out[-4000:]
    assert "state=success" in out, out[-4000:]
    [job] = sutro_client.list_jobs()
    assert job.status is JobStatus.SUCCEEDED
    assert pl.read_parquet(tmp_path / "out.parquet").height == 3


def _example_dag(monkeypatch: pytest.MonkeyPatch, output: Path | None) -> Any:
    if output is None:
        monkeypatch.delenv("SUTRO_DEMO_OUTPUT", raising=False)
    else:
        monkeypatch.setenv("SUTRO_DEMO_OUTPUT", str(output))
    monkeypatch.delenv("SUTRO_DEMO_GENERATION_MODEL", raising=False)
    import example_pipelines.airflow_dag as module

    return importlib.reload(module)


def test_the_example_output_root_is_absolute_without_sutro_demo_output(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # the scheduler's working directory must not matter
    module = _example_dag(monkeypatch, None)
    assert module.OUTPUT_ROOT == str(REPO / ".demo" / "output")


def test_the_example_triggered_by_hand_runs_the_latest_data_day(
    monkeypatch: pytest.MonkeyPatch, run_dag: Any, sutro_conn: str, tmp_path: Path
) -> None:
    """``airflow dags trigger`` without a logical date: no bare AssertionError, the latest day, said so."""
    from example_pipelines import common

    module = _example_dag(monkeypatch, tmp_path)
    result = run_dag(module.dag, test_kwargs={"logical_date": None})
    assert result.state == "success", {t: result.task_state(t) for t in module.dag.task_ids}
    extract = result.xcoms("extract_tickets")["return_value"]
    assert extract["day"] == common.LAST_DAY
    triage = result.xcoms("triage_tickets")["return_value"]
    assert triage["uri"].startswith(str(tmp_path / "airflow" / common.LAST_DAY))
    assert pl.read_parquet(triage["uri"]).height == common.open_tickets(common.LAST_DAY).height


@pytest.mark.parametrize(("ds", "conf", "day"), [
    ("2026-01-03", None, "2026-01-03"),
    (None, None, "2026-01-07"),
    ("2026-12-01", None, "2026-01-07"),
    ("2026-12-01", {"day": "2026-01-02"}, "2026-01-02"),
])
def test_the_example_picks_its_data_day(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ds: str | None,
                                        conf: dict[str, str] | None, day: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    module = _example_dag(monkeypatch, tmp_path)
    with caplog.at_level("WARNING", logger=module.__name__):
        assert module._data_day(ds, conf) == day
    said_so = "processing the latest data day 2026-01-07" in caplog.text
    assert said_so is (day != ds and not conf), caplog.text


def test_airflowignore_leaves_only_the_dag_file() -> None:
    from airflow.utils.file import list_py_file_paths

    found = [Path(p).name for p in list_py_file_paths(str(REPO / "example_pipelines"))]
    assert found == ["airflow_dag.py"]
