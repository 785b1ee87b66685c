"""Airflow test harness: a throwaway AIRFLOW_HOME with a migrated SQLite DB, a ``sutro_default`` connection
per test pointing at the session's real ``sutro-local`` server, and ``run_dag`` to run a DAG with
``dag.test()`` (which runs deferred tasks' triggers inline).

Airflow reads AIRFLOW_HOME and its config when first imported, so the environment is set at the top of
this module, before anything imports airflow.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="sutro-airflow-home-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)  # no home outlives the run
os.makedirs(os.path.join(_AIRFLOW_HOME, "dags"), exist_ok=True)
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__DAGS_FOLDER": os.path.join(_AIRFLOW_HOME, "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
)
if "airflow" in sys.modules:  # pragma: no cover - only when another plugin imported airflow first
    import warnings

    warnings.warn(
        "airflow was imported before tests/airflow/conftest.py set AIRFLOW_HOME; the Airflow tests may use "
        "~/airflow. Import airflow lazily in other test modules.",
        stacklevel=1,
    )

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session", autouse=True)
def airflow_db() -> Iterator[str]:
    """``airflow db migrate`` once per session, in the throwaway AIRFLOW_HOME (removed at the end)."""
    airflow_bin = os.path.join(os.path.dirname(sys.executable), "airflow")
    subprocess.run([airflow_bin, "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    yield _AIRFLOW_HOME
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


def _api_url(sutro_server: Any) -> str:
    for attr in ("url", "api_url", "base_url"):
        if hasattr(sutro_server, attr):
            return str(getattr(sutro_server, attr))
    return str(sutro_server)


@pytest.fixture
def sutro_api_url(sutro_server: Any) -> str:
    """The session server's base URL."""
    return _api_url(sutro_server)


@pytest.fixture
def sutro_conn(monkeypatch: pytest.MonkeyPatch, sutro_api_url: str, sutro_key: str) -> str:
    """``sutro_default`` (JSON env-var form) pointing at the test server with this test's fresh key."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_SUTRO_DEFAULT",
        json.dumps({"conn_type": "sutro", "host": sutro_api_url, "password": sutro_key}),
    )
    return "sutro_default"


def _register(dag: Any) -> None:
    """Write the DAG into the metadata DB as the DAG processor would (dag.test() needs it serialized)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    DagBundlesManager().sync_bundles_to_db()
    with create_session() as session:
        update_dag_parsing_results_in_db(
            "dags-folder",
            None,
            [LazyDeserializedDAG.from_dag(dag)],
            {},
            None,
            set(),
            session=session,
            files_parsed=set(),
        )


class DagRunResult:
    """What a test checks after ``run_dag``: the run's state, task states and XComs."""

    def __init__(self, dag_run: Any) -> None:
        self.dag_run = dag_run
        self.state = str(dag_run.state)

    def task_state(self, task_id: str) -> str:
        from airflow.models import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            ti = (
                session.query(TaskInstance)
                .filter_by(dag_id=self.dag_run.dag_id, run_id=self.dag_run.run_id, task_id=task_id)
                .one()
            )
            return str(ti.state)

    def try_number(self, task_id: str) -> int:
        from airflow.models import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            ti = (
                session.query(TaskInstance)
                .filter_by(dag_id=self.dag_run.dag_id, run_id=self.dag_run.run_id, task_id=task_id)
                .one()
            )
            return int(ti.try_number)

    def xcoms(self, task_id: str) -> dict[str, Any]:
        """All XComs of the task, key -> deserialized value."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = (
                session.query(XComModel)
                .filter_by(dag_id=self.dag_run.dag_id, run_id=self.dag_run.run_id, task_id=task_id)
                .all()
            )
            return {row.key: XComModel.deserialize_value(row) for row in rows}


@pytest.fixture
def run_dag() -> Callable[..., DagRunResult]:
    """Run a DAG object end to end with ``dag.test()`` and return a ``DagRunResult``."""

    def _run(dag: Any, *, test_kwargs: dict[str, Any] | None = None, **run_conf: Any) -> DagRunResult:
        _register(dag)
        return DagRunResult(dag.test(run_conf=run_conf or None, **(test_kwargs or {})))

    return _run


@pytest.fixture
def dag_id(request: pytest.FixtureRequest) -> str:
    """A DAG id unique to the test."""
    return "t_" + re.sub(r"[^a-zA-Z0-9_]", "_", request.node.name)[:200]
