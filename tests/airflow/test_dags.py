"""The operators in real DAG runs (``dag.test()``, which runs deferred triggers inline) against sutro-local."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from sutro_core import JobStatus, SutroClient, load_results

from airflow_provider_sutro.operators.sutro import (
    SutroBatchFunctionOperator,
    SutroBatchInferenceOperator,
    SutroRunFunctionOperator,
)
from airflow_provider_sutro.sensors.sutro import SutroJobSensor
from airflow_provider_sutro.triggers.sutro import SutroJobTrigger

LONG_ROW = "word " * 2000
TICKETS = ["I was charged twice this month", "The app crashes when I log in", "Love the new dashboard"]
FAST = {"poll_interval": 0.2, "max_poll_interval": 0.5}


def _dag(dag_id: str, **kwargs: Any) -> Any:
    from airflow.sdk import DAG

    return DAG(dag_id, schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False, **kwargs)


@pytest.fixture
def trigger_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Job ids the trigger waited for: proves a task really deferred."""
    seen: list[str] = []
    original = SutroJobTrigger.run

    async def counting_run(self: SutroJobTrigger):  # type: ignore[no-untyped-def]
        seen.append(self.job_id)
        async for event in original(self):
            yield event

    monkeypatch.setattr(SutroJobTrigger, "run", counting_run)
    return seen


def test_batch_inference_defers_and_writes_parquet(
    run_dag: Any,
    dag_id: str,
    sutro_conn: str,
    sutro_client: SutroClient,
    tmp_path: Path,
    trigger_runs: list[str],
) -> None:
    with _dag(dag_id) as dag:
        SutroBatchInferenceOperator(
            task_id="embed",
            model="all-minilm-l6-v2",
            inputs=TICKETS,
            output_uri=str(tmp_path / "{{ dag.dag_id }}" / "embeddings.parquet"),
            **FAST,
        )
    result = run_dag(dag)
    assert result.state == "success"

    xcoms = result.xcoms("embed")
    manifest = xcoms["return_value"]
    [job] = sutro_client.list_jobs()
    assert manifest["job_id"] == job.job_id == xcoms["sutro_job_id"]
    assert trigger_runs == [job.job_id]  # it deferred, and the trigger waited for this job
    assert manifest["uri"] == str(tmp_path / dag_id / "embeddings.parquet")  # templated output_uri
    assert manifest["rows"] == 3
    # Results live in the parquet file, never in XCom: the manifest is small and has no outputs.
    assert set(manifest) >= {"job_id", "uri", "rows", "input_tokens", "output_tokens", "cost"}
    assert "outputs" not in manifest and len(str(xcoms)) < 4000
    df = load_results(manifest)
    assert df.height == 3
    vectors = df[df.columns[0]].to_list()
    assert all(len(v) == 384 for v in vectors)
    assert xcoms["_link_SutroJobLink"] == sutro_client.job_url(job.job_id)


def test_cut_rows_are_repaired_in_deferrals_of_their_own_and_the_manifest_counts_them(
    run_dag: Any, dag_id: str, sutro_conn: str, sutro_client: SutroClient, tmp_path: Path,
    trigger_runs: list[str],
) -> None:
    rows = ["one two", "one two three four five", "a b c d e f g h i"]  # at max_tokens 3, rows 2 and 3 are cut
    with _dag(dag_id) as dag:
        SutroBatchInferenceOperator(
            task_id="draft", model="echo", inputs=rows, sampling_params={"max_tokens": 3},
            output_uri=str(tmp_path / "drafts.parquet"), repair_rounds=2, **FAST,
        )
    result = run_dag(dag)
    assert result.state == "success"
    manifest = result.xcoms("draft")["return_value"]
    jobs = sorted(sutro_client.list_jobs(), key=lambda j: j.created_at)
    assert [j.num_rows for j in jobs] == [3, 2, 1]  # the main job, then only the rows still cut
    assert trigger_runs == [j.job_id for j in jobs]  # each repair round waited in the triggerer too
    assert manifest["row_status_counts"] == {"ok": 3, "cut": 0, "invalid": 0, "missing": 0}
    assert manifest["job_ids"] == [j.job_id for j in jobs]
    df = load_results(manifest)
    assert df["inference_result"].to_list() == rows and df["sutro_row_status"].to_list() == ["ok"] * 3


def test_too_many_failed_rows_fail_the_task_without_retries(
    run_dag: Any, dag_id: str, sutro_conn: str, tmp_path: Path,
) -> None:
    with _dag(dag_id) as dag:
        SutroBatchInferenceOperator(
            task_id="draft", model="echo", inputs=["a b c d e"], sampling_params={"max_tokens": 2},
            output_uri=str(tmp_path / "drafts.parquet"), max_failed_rows=0, retries=3, **FAST,
        )
    result = run_dag(dag)
    assert result.state == "failed"
    assert result.task_state("draft") == "failed" and result.try_number("draft") == 1  # no retries: same rows again
    assert load_results(str(tmp_path / "drafts.parquet"))["sutro_row_status"].to_list() == ["cut"]


def test_a_row_store_bills_only_new_rows_and_a_fully_stored_run_defers_on_nothing(
    run_dag: Any, dag_id: str, sutro_conn: str, sutro_client: SutroClient, tmp_path: Path,
    trigger_runs: list[str],
) -> None:
    days = [["alpha ticket", "beta ticket", "gamma ticket"],
            ["beta ticket", "gamma ticket", "delta ticket"],  # shares two tickets with day 1
            ["alpha ticket", "delta ticket"]]                  # every row stored by then
    manifests, handles = [], []
    for day, rows in enumerate(days):
        with _dag(f"{dag_id}_{day}") as dag:
            SutroBatchInferenceOperator(
                task_id="reply", model="echo", inputs=rows, output_uri=str(tmp_path / f"day{day}.parquet"),
                row_store=str(tmp_path / "rows"), **FAST,
            )
        result = run_dag(dag)
        assert result.state == "success"
        manifests.append(result.xcoms("reply")["return_value"])
        handles.append(result.xcoms("reply")["sutro_job_handle"])
        assert load_results(manifests[-1])["inference_result"].to_list() == rows
    jobs = sorted(sutro_client.list_jobs(), key=lambda j: j.created_at)
    assert [j.num_rows for j in jobs] == [3, 1]  # day 2 paid for "delta ticket" only, day 3 for nothing
    assert trigger_runs == [j.job_id for j in jobs]  # day 3 had no job to defer on
    assert [(m["rows_submitted"], m["rows_from_store"]) for m in manifests] == [(3, 0), (1, 2), (0, 2)]
    assert handles[2]["job_id"] is None and handles[2]["rows_from_store"] == 2


def test_batch_function_end_to_end(
    run_dag: Any,
    dag_id: str,
    sutro_conn: str,
    sutro_client: SutroClient,
    tmp_path: Path,
    trigger_runs: list[str],
) -> None:
    out = tmp_path / "triage.parquet"
    with _dag(dag_id) as dag:
        SutroBatchFunctionOperator(
            task_id="triage",
            function_name="ticket-triage",
            inputs=[{"text": t} for t in TICKETS],
            output_uri=str(out),
            include_inputs=True,
            **FAST,
        )
    result = run_dag(dag)
    assert result.state == "success"
    manifest = result.xcoms("triage")["return_value"]
    assert len(trigger_runs) == 1 and manifest["job_id"] == trigger_runs[0]
    df = pl.read_parquet(out)
    assert df.height == 3 == manifest["rows"]
    # The one results shape: the Function's outputs unpacked into columns (no JSON string to parse).
    assert {"label", "rationale", "confidence_score"} <= set(df.columns)
    assert "inputs" in df.columns  # include_inputs=True
    assert [j.model for j in sutro_client.list_jobs()] == ["ticket-triage"]


def test_inputs_from_an_upstream_task_and_object_storage(
    run_dag: Any, dag_id: str, sutro_conn: str, sutro_client: SutroClient, tmp_path: Path
) -> None:
    """Inputs as an upstream task's output path (XComArg), and as an object-storage URI read via Airflow."""
    import fsspec
    from airflow.sdk import task

    # memory:// is an fsspec filesystem Airflow has no connection type for: read through plain fsspec.
    memory_uri = f"memory://sutro-tests/{dag_id}/tickets.csv"
    with fsspec.open(memory_uri, "wb") as fh:
        pl.DataFrame({"id": [1, 2, 3], "body": TICKETS}).write_csv(fh)

    with _dag(dag_id) as dag:

        @task
        def extract() -> str:
            path = tmp_path / "tickets.parquet"
            pl.DataFrame({"id": [1, 2], "body": TICKETS[:2]}).write_parquet(path)
            return f"file://{path}"

        SutroBatchInferenceOperator(
            task_id="from_upstream",
            model="all-minilm-l6-v2",
            inputs=extract(),
            column="body",
            output_uri=str(tmp_path / "a.parquet"),
            **FAST,
        )
        SutroBatchInferenceOperator(
            task_id="from_object_storage",
            model="all-minilm-l6-v2",
            inputs=memory_uri,
            column="body",
            output_uri=f"memory://sutro-tests/{dag_id}/out.parquet",
            **FAST,
        )
    result = run_dag(dag)
    assert result.state == "success"
    assert result.xcoms("from_upstream")["return_value"]["rows"] == 2
    # Table inputs carry their columns into the results, row-aligned with the outputs.
    upstream = pl.read_parquet(tmp_path / "a.parquet")
    assert upstream["id"].to_list() == [1, 2] and "inference_result" in upstream.columns
    manifest = result.xcoms("from_object_storage")["return_value"]
    assert manifest["rows"] == 3 and manifest["uri"].startswith("memory://")
    assert fsspec.filesystem("memory").exists(manifest["uri"])
    assert load_results(manifest).height == 3
    assert len(sutro_client.list_jobs()) == 2


def test_retry_reattaches_to_the_running_job(
    run_dag: Any,
    dag_id: str,
    sutro_conn: str,
    sutro_client: SutroClient,
    tmp_path: Path,
    trigger_runs: list[str],
) -> None:
    """The first try dies right after submitting (worker lost); the retry must not submit again."""

    class DiesAfterSubmit(SutroBatchInferenceOperator):
        def execute(self, context: Any) -> Any:
            self._try = context["ti"].try_number
            return super().execute(context)

        def defer(self, **kwargs: Any) -> Any:
            if self._try == 1:
                raise RuntimeError("simulated worker loss after submit")
            return super().defer(**kwargs)

    with _dag(dag_id) as dag:
        DiesAfterSubmit(
            task_id="embed",
            model="slow-embed",
            inputs=[f"ticket {i}" for i in range(20)],  # ~6 s on slow-embed: still running at the retry
            output_uri=str(tmp_path / "out.parquet"),
            retries=1,
            retry_delay=dt.timedelta(seconds=0),
            **FAST,
        )
    result = run_dag(dag)
    assert result.state == "success"
    assert result.try_number("embed") == 2
    jobs = sutro_client.list_jobs()
    assert len(jobs) == 1, [j.job_id for j in jobs]  # exactly one job on the server
    # Normally the retry finds the job RUNNING and defers on it; on a very slow machine it may already have
    # SUCCEEDED, and then the retry writes its results without waiting. Either way: no second job.
    assert trigger_runs in ([jobs[0].job_id], [])
    assert result.xcoms("embed")["return_value"]["job_id"] == jobs[0].job_id
    assert pl.read_parquet(tmp_path / "out.parquet").height == 20


def test_failed_job_fails_the_task(
    run_dag: Any, dag_id: str, sutro_conn: str, sutro_client: SutroClient, tmp_path: Path
) -> None:
    out = tmp_path / "never.parquet"
    with _dag(dag_id) as dag:
        SutroBatchInferenceOperator(
            task_id="embed",
            model="all-minilm-l6-v2",
            inputs=["fine", LONG_ROW],
            truncate_rows=False,
            output_uri=str(out),
            retries=2,
            retry_delay=dt.timedelta(seconds=0),
            **FAST,
        )
    result = run_dag(dag)
    assert result.state == "failed"
    assert result.task_state("embed") == "failed"
    assert result.try_number("embed") == 1  # a FAILED job is not retried: a retry cannot fix it
    [job] = sutro_client.list_jobs()
    assert job.status is JobStatus.FAILED and job.failure_reason
    assert result.xcoms("embed")["sutro_job_id"] == job.job_id  # recorded before waiting
    assert not out.exists()


def test_cancelled_job_is_never_success(
    run_dag: Any, dag_id: str, sutro_conn: str, sutro_client: SutroClient, tmp_path: Path
) -> None:
    def cancel_when_submitted() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            jobs = sutro_client.list_jobs()
            if jobs:
                sutro_client.cancel_job(jobs[0].job_id)
                return
            time.sleep(0.1)

    canceller = threading.Thread(target=cancel_when_submitted, daemon=True)
    with _dag(dag_id) as dag:
        SutroBatchInferenceOperator(
            task_id="embed",
            model="slow-embed",
            inputs=[f"row {i}" for i in range(40)],
            output_uri=str(tmp_path / "out.parquet"),
            **FAST,
        )
    canceller.start()
    result = run_dag(dag)
    canceller.join(5)
    assert result.state == "failed"
    [job] = sutro_client.list_jobs()
    assert job.status in (JobStatus.CANCELLED, JobStatus.CANCELLING)
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize(
    "limits",
    [{"timeout": 1}, {"timeout": 3600, "execution_timeout": dt.timedelta(seconds=4)}],
    ids=["timeout", "execution_timeout"],
)
def test_timeout_cancels_the_job_and_fails(
    run_dag: Any,
    dag_id: str,
    sutro_conn: str,
    sutro_client: SutroClient,
    tmp_path: Path,
    limits: dict[str, Any],
) -> None:
    """Either limit ends the wait through the trigger's timeout event, which cancels the job."""
    with _dag(dag_id) as dag:
        SutroBatchInferenceOperator(
            task_id="embed",
            model="slow-embed",
            inputs=[f"row {i}" for i in range(60)],
            output_uri=str(tmp_path / "out.parquet"),
            **limits,
            **FAST,
        )
    result = run_dag(dag)
    assert result.state == "failed"
    [job] = sutro_client.list_jobs()
    assert sutro_client.get_job_status(job.job_id) in (JobStatus.CANCELLING, JobStatus.CANCELLED)


def test_non_deferrable_mode_waits_in_the_worker(
    run_dag: Any,
    dag_id: str,
    sutro_conn: str,
    sutro_client: SutroClient,
    tmp_path: Path,
    trigger_runs: list[str],
) -> None:
    with _dag(dag_id) as dag:
        SutroBatchInferenceOperator(
            task_id="embed",
            model="all-minilm-l6-v2",
            inputs=TICKETS,
            deferrable=False,
            output_uri=str(tmp_path / "out.parquet"),
            **FAST,
        )
    result = run_dag(dag)
    assert result.state == "success"
    assert trigger_runs == []
    assert result.xcoms("embed")["return_value"]["rows"] == 3


def test_cost_gate_blocks_before_any_billed_job(
    run_dag: Any, dag_id: str, sutro_conn: str, sutro_client: SutroClient, tmp_path: Path
) -> None:
    with _dag(dag_id) as dag:
        SutroBatchInferenceOperator(
            task_id="embed",
            model="all-minilm-l6-v2",
            inputs=TICKETS,
            max_cost_usd=0.0,
            output_uri=str(tmp_path / "out.parquet"),
            retries=2,
            retry_delay=dt.timedelta(seconds=0),
            **FAST,
        )
    result = run_dag(dag)
    assert result.state == "failed"
    assert result.try_number("embed") == 1  # the cost gate is not retried
    jobs = sutro_client.list_jobs()
    # Only the dry run exists: nothing billed was submitted.
    assert len(jobs) == 1 and jobs[0].cost_estimate is not None and jobs[0].cost_estimate > 0


@pytest.mark.parametrize("deferrable", [True, False])
def test_sensor_waits_for_a_job_submitted_elsewhere(
    run_dag: Any,
    dag_id: str,
    sutro_conn: str,
    sutro_client: SutroClient,
    tmp_path: Path,
    trigger_runs: list[str],
    deferrable: bool,
) -> None:
    from airflow.sdk import task
    from sutro_core import BatchJobRequest

    # Deferred: ~6 s of slow-embed, submitted by an upstream task (not before the run: Airflow's first start
    # in a session can be slow), so the job is surely still running when the sensor first looks.
    rows = [f"ticket {i}" for i in range(20)] if deferrable else TICKETS

    with _dag(dag_id) as dag:

        @task
        def submit_elsewhere() -> str:
            request = BatchJobRequest.for_inference(rows, model="slow-embed")
            return sutro_client.submit_job(request, idempotency_key=None).job_id

        submit_elsewhere() >> SutroJobSensor(
            task_id="wait",
            job_id="{{ ti.xcom_pull(task_ids='submit_elsewhere') }}",
            output_uri=str(tmp_path / "s.parquet"),
            poke_interval=0.2,
            timeout=60,
            deferrable=deferrable,
        )
    result = run_dag(dag)
    assert result.state == "success"
    job_id = result.xcoms("submit_elsewhere")["return_value"]
    assert trigger_runs == ([job_id] if deferrable else [])
    assert result.xcoms("wait")["return_value"]["rows"] == len(rows)
    assert len(sutro_client.list_jobs()) == 1


def test_mapped_tasks_get_one_job_each(
    run_dag: Any, dag_id: str, sutro_conn: str, sutro_client: SutroClient, tmp_path: Path
) -> None:
    """map_index is part of the idempotency scope: mapped instances never reattach to each other's jobs."""
    with _dag(dag_id) as dag:
        SutroBatchInferenceOperator.partial(
            task_id="embed",
            model="all-minilm-l6-v2",
            output_uri=str(tmp_path / "part-{{ ti.map_index }}.parquet"),
            **FAST,
        ).expand(inputs=[TICKETS[:2], TICKETS[:2]])  # identical inputs on purpose
    result = run_dag(dag)
    assert result.state == "success"
    assert len(sutro_client.list_jobs()) == 2
    assert pl.read_parquet(tmp_path / "part-0.parquet").height == 2
    assert pl.read_parquet(tmp_path / "part-1.parquet").height == 2


def test_run_function_operator(run_dag: Any, dag_id: str, sutro_conn: str) -> None:
    with _dag(dag_id) as dag:
        SutroRunFunctionOperator(task_id="one", function_name="ticket-triage", input={"text": TICKETS[0]})
    result = run_dag(dag)
    assert result.state == "success"
    answer = result.xcoms("one")["return_value"]
    assert answer["response"]
    assert answer["predictions"]


class _LosesSubmitResponse(httpx.BaseTransport):
    """Forwards every request to the real server, but drops the response of the first submit: the job
    exists, the client never hears its id (a 524 / dropped connection a real server cannot be asked for)."""

    def __init__(self) -> None:
        self._real = httpx.HTTPTransport()
        self.dropped = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._real.handle_request(request)
        if request.method == "POST" and request.url.path.endswith("/batch-inference") and not self.dropped:
            response.read()
            self.dropped += 1
            raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
        return response


def test_lost_submit_response_is_recovered_without_a_second_job(
    run_dag: Any,
    dag_id: str,
    sutro_conn: str,
    sutro_client: SutroClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_sutro.hooks.sutro import SutroHook

    transport = _LosesSubmitResponse()

    def get_conn(self: SutroHook, **options: Any) -> SutroClient:
        conn = self.get_connection(self.sutro_conn_id)
        return SutroClient(**self._client_kwargs(conn), transport=transport, **options)

    monkeypatch.setattr(SutroHook, "get_conn", get_conn)
    with _dag(dag_id) as dag:
        SutroBatchInferenceOperator(
            task_id="embed",
            model="all-minilm-l6-v2",
            inputs=TICKETS,
            output_uri=str(tmp_path / "o.parquet"),
            **FAST,
        )
    result = run_dag(dag)
    assert transport.dropped == 1
    assert result.state == "success"
    [job] = sutro_client.list_jobs()
    assert result.xcoms("embed")["return_value"]["job_id"] == job.job_id


def test_the_trigger_logs_each_status_once(
    run_dag: Any, dag_id: str, sutro_conn: str, sutro_client: SutroClient, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It logged every status line twice (its own line and the core's)."""
    with _dag(dag_id) as dag:
        SutroBatchInferenceOperator(task_id="embed", model="slow-embed", inputs=["a", "b", "c"],
                                    output_uri=str(tmp_path / "out.parquet"), **FAST)
    with caplog.at_level("INFO"):
        result = run_dag(dag)
    assert result.state == "success"
    [job] = sutro_client.list_jobs()
    lines = [r.getMessage() for r in caplog.records if job.job_id in r.getMessage()]
    succeeded = [line for line in lines if "SUCCEEDED" in line and " is " in line]
    assert len(succeeded) == 1, lines
