"""Lineage of the batch operators (issue 25).

- In a ``dag.test()`` run: the results are an Asset (fixed ``output_uri``) or resolve an ``AssetAlias``
  (templated ``output_uri``), each asset event carrying the manifest as its ``extra``.
- With real processes: ``airflow dags test`` with the OpenLineage provider's HTTP transport pointed at a tiny
  receiver here sends START and COMPLETE with the datasets and the ``sutro`` facet; then a real scheduler
  (with the execution API server it hands tasks to) runs the DAG scheduled on the alias of the templated URI.
- Without the OpenLineage provider importable, the operator runs as before and imports nothing of it.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sutro_core import SutroClient

from airflow_provider_sutro.operators.sutro import SutroBatchInferenceOperator
from support.quiet_handler import QuietHandler

TESTS_DIR = Path(__file__).parents[1]
FAST = {"poll_interval": 0.2, "max_poll_interval": 0.5}
TICKETS = ["I was charged twice this month", "The app crashes when I log in", "Love the new dashboard"]


def _dag(dag_id: str) -> Any:
    from airflow.sdk import DAG

    return DAG(dag_id, schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False)


def _asset_events(dag_id: str) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.query(AssetEvent).filter_by(source_dag_id=dag_id).all()
        return [{"task_id": e.source_task_id, "uri": e.asset.uri, "extra": e.extra,
                 "aliases": [a.name for a in e.source_aliases]} for e in events]


def test_results_are_an_asset_or_resolve_an_alias_with_the_manifest(
    run_dag: Any, dag_id: str, sutro_conn: str, sutro_client: SutroClient, tmp_path: Path
) -> None:
    from airflow.sdk import Asset, AssetAlias

    fixed = tmp_path / "fixed.parquet"
    with _dag(dag_id) as dag:
        fixed_op = SutroBatchInferenceOperator(task_id="fixed", model="all-minilm-l6-v2", inputs=TICKETS,
                                               output_uri=str(fixed), **FAST)
        templated_op = SutroBatchInferenceOperator(
            task_id="templated", model="all-minilm-l6-v2", inputs=TICKETS[:2],
            output_uri=str(tmp_path / "{{ dag.dag_id }}" / "out.parquet"), **FAST)
    assert fixed_op.outlets == [Asset(uri=f"file://{fixed}")]
    assert templated_op.outlets == [AssetAlias(f"sutro.{dag_id}.templated")]

    result = run_dag(dag)
    assert result.state == "success"
    events = {e["task_id"]: e for e in _asset_events(dag_id)}
    manifests = {t: result.xcoms(t)["return_value"] for t in ("fixed", "templated")}
    assert events["fixed"]["uri"] == f"file://{fixed}" and events["fixed"]["extra"] == manifests["fixed"]
    assert events["templated"]["uri"] == f"file://{tmp_path / dag_id / 'out.parquet'}"  # rendered at run time
    assert events["templated"]["aliases"] == [f"sutro.{dag_id}.templated"]
    assert events["templated"]["extra"] == manifests["templated"] and manifests["templated"]["rows"] == 2


# ---- real processes: airflow dags test + OpenLineage over HTTP, then a scheduler ---------------------------

DAGS = '''
import datetime as dt
import json

from airflow.sdk import DAG, AssetAlias, task
from airflow_provider_sutro.operators.sutro import SutroBatchInferenceOperator

with DAG("lineage_up", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False):
    SutroBatchInferenceOperator(task_id="embed", model="all-minilm-l6-v2", inputs={inputs!r}, column="text",
                                output_uri={out!r} + "/{{{{ run_id }}}}/embeddings.parquet",
                                poll_interval=0.2, max_poll_interval=0.5)

RESULTS = AssetAlias("sutro.lineage_up.embed")

with DAG("lineage_down", schedule=[RESULTS], start_date=dt.datetime(2026, 1, 1), catchup=False):

    @task(inlets=[RESULTS])
    def read(*, triggering_asset_events=None):
        from sutro_core import load_results

        events = triggering_asset_events[RESULTS]  # the events the alias resolved to
        with open({out!r} + "/downstream.json", "w") as fh:
            json.dump({{"uris": [e.asset.uri for e in events], "extras": [e.extra for e in events],
                       "rows": [load_results(e.extra).height for e in events]}}, fh)

    read()
'''


class _Receiver(QuietHandler):
    events: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.events.append(json.loads(body))
        self._send(200, b"{}", "application/json")


@pytest.fixture
def lineage_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A tiny OpenLineage HTTP endpoint on 127.0.0.1 that keeps every event it is sent."""
    events: list[dict[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"events": events})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", events
    finally:
        server.shutdown()
        server.server_close()


def _airflow(*args: str, env: dict[str, str], timeout: float = 240) -> str:
    airflow_bin = os.path.join(os.path.dirname(sys.executable), "airflow")
    proc = subprocess.run([airflow_bin, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return proc.stdout + proc.stderr


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    airflow_bin = os.path.join(os.path.dirname(sys.executable), "airflow")
    with log.open("wb") as out:
        return subprocess.Popen([airflow_bin, *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_for(predicate: Any, timeout: float, what: str, logs: list[Path] = ()) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            tails = "\n".join(p.read_text(errors="replace")[-2000:] for p in logs if p.exists())
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")
        time.sleep(0.5)
    return value


def _downstream_runs(home: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "airflow.db", timeout=10) as db:
        return db.execute("select run_type, state from dag_run where dag_id = 'lineage_down'").fetchall()


def _task_events(events: list[dict[str, Any]], job_name: str) -> dict[str, dict[str, Any]]:
    return {e["eventType"]: e for e in events if e.get("job", {}).get("name") == job_name}


@pytest.mark.slow
def test_openlineage_events_and_a_downstream_dag_scheduled_on_the_templated_results(
    tmp_path: Path, sutro_server: Any, sutro_key: str, sutro_client: SutroClient,
    lineage_receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    from sutro_local.testing import free_port

    from airflow_provider_sutro.facets import SCHEMA_FILE, SCHEMA_URL

    url, received = lineage_receiver
    home, out = tmp_path / "home", tmp_path / "out"
    (home / "dags").mkdir(parents=True)
    out.mkdir()
    tickets = tmp_path / "tickets.csv"
    pl.DataFrame({"id": [1, 2, 3], "text": TICKETS}).write_csv(tickets)
    (home / "dags" / "lineage_dags.py").write_text(DAGS.format(inputs=str(tickets), out=str(out)))
    api_port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING", "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "sutro-tests",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "http", "url": url, "endpoint": "api/v1/lineage"}),
        "AIRFLOW_CONN_SUTRO_DEFAULT": json.dumps({"conn_type": "sutro", "host": sutro_server.url,
                                                  "password": sutro_key}),
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    _airflow("db", "migrate", env=env)
    _airflow("dags", "test", "lineage_up", env=env)

    # OpenLineage: START and COMPLETE of the task, with the datasets and the sutro facet.
    events = _wait_for(lambda: (e := _task_events(received, "lineage_up.embed")) and "COMPLETE" in e and e, 30,
                       "the COMPLETE event")
    assert "START" in events, sorted(events)
    [job] = sutro_client.list_jobs()
    complete = events["COMPLETE"]
    [inp], [output] = complete["inputs"], complete["outputs"]
    assert (inp["namespace"], inp["name"]) == ("file", str(tickets))
    run_dir = next(p for p in out.iterdir() if p.is_dir())  # the rendered {{ run_id }}
    assert (output["namespace"], output["name"]) == ("file", str(run_dir / "embeddings.parquet"))
    fields = {f["name"]: f["type"] for f in output["facets"]["schema"]["fields"]}
    assert set(fields) == {"id", "text", "inference_result", "sutro_row_status", "sutro_job_id"} and fields["id"] == "int64"
    stats = output["outputFacets"]["outputStatistics"]
    assert stats["rowCount"] == 3 and stats["size"] == (run_dir / "embeddings.parquet").stat().st_size
    facets = complete["run"]["facets"]
    assert facets["externalQuery"] == {**facets["externalQuery"], "externalQueryId": job.job_id, "source": "sutro"}
    sutro = facets["sutro"]
    assert sutro["_schemaURL"] == SCHEMA_URL
    attrs = sutro["attributes"]
    assert attrs["gen_ai.request.model"] == "all-minilm-l6-v2" and attrs["sutro.job.id"] == job.job_id
    assert attrs["gen_ai.usage.input_tokens"] == job.input_tokens and attrs["sutro.cost.usd"] == job.job_cost
    assert attrs["sutro.input.uri"] == str(tickets) and attrs["sutro.output.rows"] == 3
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.validate(sutro, schema["$defs"]["SutroRunFacet"]["allOf"][1])  # the published schema holds
    start = events["START"]
    assert [(d["namespace"], d["name"]) for d in start["inputs"]] == [("file", str(tickets))]
    assert start["outputs"][0]["name"] == output["name"]  # the rendered URI, known at START
    assert start["run"]["facets"]["sutro"]["attributes"]["gen_ai.request.model"] == "all-minilm-l6-v2"

    # A real scheduler runs the DAG scheduled on the alias, after the operator, on its results.
    logs = tmp_path / "api.log", tmp_path / "scheduler.log"
    api = _start(["api-server", "--apps", "execution", "-H", "127.0.0.1", "-p", str(api_port), "-w", "1"], env, logs[0])
    scheduler = _start(["scheduler"], env, logs[1])
    try:
        _wait_for(lambda: _downstream_runs(home) == [("asset_triggered", "success")], 150,
                  "the downstream DAG run to succeed", list(logs))
    finally:
        _stop(scheduler)
        _stop(api)
    seen = json.loads((out / "downstream.json").read_text())
    [manifest] = seen["extras"]
    assert seen["uris"] == [f"file://{run_dir / 'embeddings.parquet'}"]
    assert manifest["job_id"] == job.job_id and manifest["rows"] == 3 and seen["rows"] == [3]


# ---- without the OpenLineage provider -------------------------------------------------------------------

# As if the provider were not installed: its distributions are not listed (so Airflow discovers no provider
# and no plugin) and its modules cannot be imported.
_WITHOUT_OPENLINEAGE = textwrap.dedent('''
    import importlib.abc, importlib.metadata, json, sys
    import importlib_metadata

    def _hidden(name):
        return name == "openlineage" or name.startswith(("openlineage.", "airflow.providers.openlineage"))

    class NoOpenLineage(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if _hidden(name):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    for module in (importlib.metadata, importlib_metadata):
        listed = module.distributions
        module.distributions = lambda listed=listed, **kw: [
            d for d in listed(**kw) if not (d.metadata["Name"] or "").lower().startswith(
                ("openlineage", "apache-airflow-providers-openlineage"))]
    sys.meta_path.insert(0, NoOpenLineage())
    from reliability.airflow_driver import main
    main()
    print(json.dumps({"lineage_modules": sorted(m for m in sys.modules if _hidden(m) or m.endswith(".facets")
                                                and m.startswith("airflow_provider_sutro"))}))
''')


@pytest.mark.slow
def test_without_the_openlineage_provider_the_operator_runs_as_before(
    tmp_path: Path, sutro_server: Any, sutro_key: str, sutro_client: SutroClient, airflow_db: str
) -> None:
    env = {**os.environ, "AIRFLOW_CONN_SUTRO_DEFAULT": json.dumps(
               {"conn_type": "sutro", "host": sutro_server.url, "password": sutro_key}),
           # configured as if lineage were wanted: with the provider missing, nothing may change
           "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "console"}),
           "RELIABILITY_DAG_ID": "no_openlineage", "RELIABILITY_MODEL": "all-minilm-l6-v2",
           "RELIABILITY_OUTPUT": str(tmp_path / "out.parquet"),
           "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_OPENLINEAGE], env=env, capture_output=True, text=True,
                          timeout=240)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and len(lines) == 2, (proc.stdout + proc.stderr)[-4000:]
    outcome, imported = lines
    assert outcome["state"] == "success" and outcome["manifest"]["rows"] == 16
    assert imported["lineage_modules"] == []  # neither OpenLineage nor our facet was ever imported
    assert [j.job_id for j in sutro_client.list_jobs()] == [outcome["job_id"]]


def test_a_step_whose_rows_all_came_from_the_row_store_has_no_external_query() -> None:
    from sutro_core.lineage import OutputDataset, StepLineage

    from airflow_provider_sutro.lineage import operator_lineage

    step = StepLineage(job_id=None, model="echo", rows_submitted=0, rows_from_store=2,
                       output=OutputDataset(uri="/tmp/out.parquet", format="parquet", rows=2, bytes=10))
    lineage = operator_lineage(input_uri=None, output_uri="/tmp/out.parquet", step=step)
    assert "externalQuery" not in lineage.run_facets  # no job ran: nothing to point at
    attrs = lineage.run_facets["sutro"].attributes
    assert attrs["sutro.input.rows_from_store"] == 2 and "sutro.job.id" not in attrs
