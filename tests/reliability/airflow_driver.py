"""Runs one Airflow DAG with ``dag.test()`` in its own process (the process a test may SIGKILL), then
prints the run's outcome as JSON on the last line.

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
