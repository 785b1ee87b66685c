"""Run one example pipeline in this process, in its orchestrator's own runtime, and report its Sutro steps.

``example_pipelines.demo`` starts this module once per orchestrator in a fresh process, because Airflow
and Prefect read their home folders and settings from the environment when first imported. It runs one
or more days, one after the other in that process (a later day reuses rows the earlier ones stored), and
writes a JSON file: ``{"days": [{"day", "seconds", "steps": [{"step", "job_id", "job_ids", "path", "rows",
"rows_submitted", "rows_from_store", "row_status_counts"}, ...], "notes": {...}}, ...]}``, with an
``"error"`` (and a non-zero exit) when a day failed; the days before it are still there.

Example:
    $ SUTRO_API_URL=http://127.0.0.1:8000 SUTRO_API_KEY=... AIRFLOW_HOME=.demo/airflow \\
        python -m example_pipelines.runners airflow --day 2026-01-05 --day 2026-01-06 --result /tmp/airflow.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Steps = dict[str, Any]


def _step(step: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """What the demo checks and prints of a step's manifest (the same fields from every orchestrator)."""
    return {"step": step, "job_id": manifest["job_id"], "job_ids": list(manifest.get("job_ids") or []),
            "path": str(manifest["uri"]), "rows": int(manifest["rows"]),
            "rows_submitted": manifest.get("rows_submitted"), "rows_from_store": manifest.get("rows_from_store"),
            "row_status_counts": manifest.get("row_status_counts")}


@cache  # once per process: every day's dag.test() reads the same serialized DAG
def _register_airflow_dag(dag: Any) -> None:
    """Serialize the DAG into the metadata DB as Airflow's DAG processor would (``dag.test()`` reads it there)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    DagBundlesManager().sync_bundles_to_db()
    with create_session() as session:
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(),
            session=session, files_parsed=set(),
        )


def run_airflow(day: str) -> Steps:
    """``dag.test()`` the support_ticket_triage DAG for ``day``; its deferred operators' triggers run inline."""
    import datetime as dt

    from airflow.models import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from example_pipelines.airflow_dag import dag

    _register_airflow_dag(dag)
    logical_date = dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc)
    dag_run = dag.test(logical_date=logical_date)
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id).all()
        states = {ti.task_id: str(ti.state) for ti in tis}
        if str(dag_run.state) != "success":
            raise RuntimeError(f"Airflow DAG run {dag_run.run_id} ended {dag_run.state}; task states: {states}")
        rows = session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id, key="return_value").all()
        xcoms = {row.task_id: XComModel.deserialize_value(row) for row in rows}
    steps = [_step(task_id, xcoms[task_id]) for task_id in ("triage_tickets", "embed_tickets", "draft_replies")
             if task_id in xcoms]
    return {"steps": steps, "notes": {"label_counts": xcoms["report"]["label_counts"], "run_id": dag_run.run_id}}


def run_dagster(day: str) -> Steps:
    """``materialize`` one day's partition of the Dagster assets."""
    from example_pipelines.common import output_root
    from example_pipelines.dagster_pipeline import SUTRO_ASSETS, run_partition

    summary = run_partition(
        day, storage_dir=f"{output_root().rstrip('/')}/dagster",
        api_key=os.environ.get("SUTRO_API_KEY"), api_url=os.environ.get("SUTRO_API_URL"),
    )
    if not summary["success"]:
        raise RuntimeError(f"Dagster materialization of {day} failed: {summary}")
    if not summary["checks_passed"]:
        raise RuntimeError(f"Dagster asset checks failed for {day}: {summary}")
    steps = [{"step": name, **{k: summary[name][k] for k in (
        "job_id", "job_ids", "rows", "rows_submitted", "rows_from_store", "row_status_counts")},
        "path": str(summary[name]["path"])} for name in SUTRO_ASSETS]
    return {"steps": steps, "notes": {}}


def run_prefect(day: str) -> Steps:
    """Run the support-insights flow in this process (Prefect's ephemeral API unless PREFECT_API_URL is set)."""
    import asyncio

    from example_pipelines.prefect_flow import support_insights

    manifests = asyncio.run(support_insights(day))
    return {"steps": [_step(name, m) for name, m in manifests.items()], "notes": {}}


RUNNERS: dict[str, Callable[[str], Steps]] = {"airflow": run_airflow, "dagster": run_dagster, "prefect": run_prefect}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child process: run one pipeline, write the result JSON, exit 0 or 1."""
    parser = argparse.ArgumentParser(prog="python -m example_pipelines.runners")
    parser.add_argument("pipeline", choices=sorted(RUNNERS))
    parser.add_argument("--day", required=True, action="append",
                        help="a day to run; repeat it to run several, in the order given")
    parser.add_argument("--result", required=True, type=Path, help="where to write the result JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result: dict[str, Any] = {"days": []}
    code = 0
    for day in args.day:
        started = time.monotonic()
        try:
            ran = RUNNERS[args.pipeline](day)
        except Exception as exc:  # the parent shows this message and the log tail
            log.error("%s pipeline failed on %s:\n%s", args.pipeline, day, traceback.format_exc())
            result["error"], code = f"{day}: {type(exc).__name__}: {exc}", 1
            break
        result["days"].append({"day": day, "seconds": round(time.monotonic() - started, 1), **ran})
    args.result.write_text(json.dumps(result, default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
