"""Runs one Airflow DAG with ``dag.test()`` in its own process (the process a test may SIGKILL), then
prints the run's outcome as JSON on the last line. ``main`` runs triggers inline; ``scheduled`` leaves
them to a real ``airflow triggerer`` process and takes ``clear`` / ``fail`` commands on stdin.

Environment: AIRFLOW_HOME (migrated), AIRFLOW_CONN_SUTRO_DEFAULT, and RELIABILITY_* settings below.
The logical date is fixed, so a rerun is the same DAG run (same run_id): what a cleared or retried
task after a dead worker looks like to the operator's idempotency key.

Example:
    $ RELIABILITY_DAG_ID=d RELIABILITY_MODEL=slow-embed RELIABILITY_OUTPUT=/tmp/o.parquet \
      python -c "from reliability.airflow_driver import main; main()"
"""

from __future__ import annotations

import datetime as dt
import json
import os

ROWS = [f"airflow crash row {i}" for i in range(16)]
LOGICAL_DATE = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def _register(dag) -> None:
    """Write the DAG into the metadata DB as the DAG processor would (dag.test() needs it serialized)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    DagBundlesManager().sync_bundles_to_db()
    with create_session() as session:
        update_dag_parsing_results_in_db("dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(),
                                         session=session, files_parsed=set())


def main() -> None:
    """Build the DAG from the environment, run it once, print {"state", "manifest", "job_id"}."""
    from airflow.models.xcom import XComModel
    from airflow.sdk import DAG
    from airflow.utils.session import create_session

    from airflow_provider_sutro.operators.sutro import SutroBatchInferenceOperator

    dag_id = os.environ["RELIABILITY_DAG_ID"]
    with DAG(dag_id, schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False) as dag:
        SutroBatchInferenceOperator(
            task_id="embed", model=os.environ["RELIABILITY_MODEL"], inputs=ROWS,
            output_uri=os.environ["RELIABILITY_OUTPUT"], poll_interval=0.2, max_poll_interval=0.5,
            deferrable=os.environ.get("RELIABILITY_DEFERRABLE", "1") == "1",
        )
    _register(dag)
    # run_after fixed too: dag.test() derives the run_id from it (default: now, a new run each time)
    run = dag.test(logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)
    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run.run_id, task_id="embed").all()
        xcoms = {r.key: XComModel.deserialize_value(r) for r in rows}
    print(json.dumps({"state": str(run.state), "run_id": run.run_id, "manifest": xcoms.get("return_value"),
                      "job_id": xcoms.get("sutro_job_id")}, default=str))


def _act(dag_id: str, task_id: str, action: str) -> None:
    """What the UI / REST API does to a task instance, through the same Airflow functions its routes call:
    ``clear`` (POST .../clearTaskInstances -> dag.clear + clear_task_instances) or ``fail``
    (PATCH .../taskInstances/{task_id} new_state=failed -> dag.set_task_instance_state)."""
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import clear_task_instances
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
        [run] = session.query(DagRun).filter_by(dag_id=dag_id).all()
        if action == "clear":
            tis = dag.clear(dry_run=True, task_ids=[task_id], run_id=run.run_id, session=session)
            clear_task_instances(tis, session, DagRunState.QUEUED)
        elif action == "fail":
            dag.set_task_instance_state(task_id=task_id, run_id=run.run_id, state=TaskInstanceState.FAILED,
                                        commit=True, session=session)
        else:
            raise ValueError(f"unknown action {action!r}")


def scheduled() -> None:
    """Like ``main`` but deferred tasks wait in a REAL triggerer process (none runs inline), and the
    parent can act on the task like a user: each stdin line ``clear`` or ``fail`` is applied at once
    (answered ``acted <action>`` on stdout). The DAG-run loop is ``dag.test()``'s own (it picks up the
    tasks the triggerer marks SCHEDULED). Prints {"state", "try_number", "manifest", "job_id"} at the end."""
    import sys
    import threading

    import airflow.sdk.definitions.dag as dag_module
    from airflow.models import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.sdk import DAG
    from airflow.utils.session import create_session

    from airflow_provider_sutro.operators.sutro import SutroBatchInferenceOperator

    dag_id = os.environ["RELIABILITY_DAG_ID"]
    rows = [f"airflow clear row {i}" for i in range(int(os.environ.get("RELIABILITY_ROWS", "16")))]
    with DAG(dag_id, schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False) as dag:
        SutroBatchInferenceOperator(
            task_id="embed", model=os.environ["RELIABILITY_MODEL"], inputs=rows,
            output_uri=os.environ["RELIABILITY_OUTPUT"], poll_interval=0.2, max_poll_interval=0.5,
        )
    _register(dag)

    run_task = dag_module._run_task

    def _run_task_without_inline_trigger(**kwargs):
        kwargs["run_triggerer"] = False  # the TI stays DEFERRED; the triggerer process takes the trigger
        return run_task(**kwargs)

    dag_module._run_task = _run_task_without_inline_trigger

    def _commands() -> None:
        for line in sys.stdin:
            if line.strip():
                _act(dag_id, "embed", line.strip())
                print(f"acted {line.strip()}", flush=True)

    threading.Thread(target=_commands, daemon=True).start()
    print("driver started", flush=True)
    run = dag.test(logical_date=LOGICAL_DATE, run_after=LOGICAL_DATE)
    with create_session() as session:
        rows_x = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run.run_id, task_id="embed").all()
        xcoms = {r.key: XComModel.deserialize_value(r) for r in rows_x}
        ti = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run.run_id, task_id="embed").one()
        try_number, ti_state = ti.try_number, str(ti.state)
    print(json.dumps({"state": str(run.state), "ti_state": ti_state, "try_number": try_number,
                      "manifest": xcoms.get("return_value"), "job_id": xcoms.get("sutro_job_id")}, default=str))
