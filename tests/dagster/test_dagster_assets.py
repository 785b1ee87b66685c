"""dagster_sutro end to end: assets materialized in-process against a real sutro-local over HTTP."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from dagster import (
    DagsterEventType,
    DagsterRunStatus,
    DagsterInstance,
    DailyPartitionsDefinition,
    RetryPolicy,
    StaticPartitionsDefinition,
    asset,
    materialize,
)
from dagster_polars import PolarsParquetIOManager

from dagster_sutro import RESULTS_CHECK_NAME, SutroParquetIOManager, SutroResource, build_sutro_function_asset, build_sutro_inference_asset
from sutro_core import JobStatus
from sutro_core.idempotency import key_in_description

REVIEWS = ["Great blender, crushes ice easily.", "Stopped working after a week.", "Okay for the price."]
TICKETS = ["I was charged twice for my subscription", "The app crashes when I log in", "How do I export my data?"]


@pytest.fixture
def sutro(sutro_server, sutro_key) -> SutroResource:
    return SutroResource(api_key=sutro_key, api_url=sutro_server.url, poll_interval_seconds=0.2,
                         max_poll_interval_seconds=0.5)


@pytest.fixture
def io_manager(tmp_path: Path) -> SutroParquetIOManager:
    return SutroParquetIOManager(base_dir=str(tmp_path / "storage"))


@asset
def reviews() -> pl.DataFrame:
    return pl.DataFrame({"review_id": [1, 2, 3], "text": REVIEWS})


@asset
def tickets() -> pl.DataFrame:
    return pl.DataFrame({"ticket_id": ["t1", "t2", "t3"], "text": TICKETS})


def _materialization(result, key: str):
    mats = [m for m in result.asset_materializations_for_node(key)]
    assert len(mats) == 1, mats
    return mats[0]


def _check_result(result):
    evals = result.get_asset_check_evaluations()
    assert len(evals) == 1
    assert evals[0].check_name == RESULTS_CHECK_NAME
    return evals[0]


def _step_error(result) -> str:
    failures = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert failures, "the step did not fail"
    return failures[-1].step_failure_data.error.to_string()


def _recorded_job_ids(result) -> list[str]:
    observations = [e for e in result.all_events if e.event_type == DagsterEventType.ASSET_OBSERVATION]
    return [e.asset_observation_data.asset_observation.metadata["sutro.job.id"].value for e in observations]


def _own_billed_jobs(sutro_client):
    return [j for j in sutro_client.list_jobs() if key_in_description(j.description)]


def test_inference_asset_stores_joined_parquet_with_metadata(sutro, io_manager, sutro_client):
    embeddings = build_sutro_inference_asset(
        name="review_embeddings", upstream=reviews, model="all-minilm-l6-v2", column="text"
    )
    result = materialize([reviews, embeddings], resources={"sutro": sutro, "io_manager": io_manager})
    assert result.success

    meta = _materialization(result, "review_embeddings").metadata
    jobs = sutro_client.list_jobs()
    assert len(jobs) == 1  # exactly one job, and it is the one the UI links to
    job = jobs[0]
    assert job.status is JobStatus.SUCCEEDED
    assert job.description.startswith(f"Dagster asset review_embeddings run {result.run_id}")
    assert meta["sutro.job.id"].value == job.job_id
    assert meta["sutro.job.url"].value == sutro_client.job_url(job.job_id)
    assert meta["gen_ai.request.model"].value == "all-minilm-l6-v2"
    assert meta["dagster/row_count"].value == 3
    assert meta["gen_ai.usage.input_tokens"].value > 0
    assert meta["sutro.cost.usd"].value == pytest.approx(job.job_cost) and job.job_cost > 0
    assert meta["sutro.job.duration_s"].value >= 0
    assert "review_id" in meta["preview"].value and "384 items" in meta["preview"].value

    # The parquet file the IO manager wrote is what a user reads back: input rows joined to vectors.
    path = Path(meta["path"].value)
    assert path.suffix == ".parquet" and path.exists()
    stored = pl.read_parquet(path)
    assert stored["review_id"].to_list() == [1, 2, 3]
    assert stored["text"].to_list() == REVIEWS
    assert all(len(v) == 384 for v in stored["inference_result"].to_list())

    check = _check_result(result)
    assert check.passed, check.description


def test_function_asset_adds_function_outputs(sutro, io_manager, sutro_client):
    labels = build_sutro_function_asset(
        name="ticket_labels", upstream=tickets, function="ticket-triage", input_columns=["text"],
        output_columns=["label", "rationale", "confidence_score"],
    )
    result = materialize([tickets, labels], resources={"sutro": sutro, "io_manager": io_manager})
    assert result.success

    meta = _materialization(result, "ticket_labels").metadata
    stored = pl.read_parquet(meta["path"].value)
    assert stored["ticket_id"].to_list() == ["t1", "t2", "t3"]
    assert stored["label"].null_count() == 0 and stored["label"].dtype == pl.String
    assert stored["confidence_score"].is_between(0, 1).all()
    assert _check_result(result).passed
    [job] = sutro_client.list_jobs()
    assert job.model == "ticket-triage" and job.num_rows == 3


def test_static_partitions_run_one_job_each(sutro, io_manager, sutro_client):
    regions = StaticPartitionsDefinition(["eu", "us"])

    @asset(partitions_def=regions, name="regional_reviews")
    def regional_reviews(context) -> pl.DataFrame:
        texts = REVIEWS[:2] if context.partition_key == "eu" else REVIEWS
        return pl.DataFrame({"region": [context.partition_key] * len(texts), "text": texts})

    embeddings = build_sutro_inference_asset(
        name="regional_embeddings", upstream=regional_reviews, model="all-minilm-l6-v2", column="text",
        partitions_def=regions,
    )
    instance = DagsterInstance.ephemeral()
    for region, rows in (("eu", 2), ("us", 3)):
        result = materialize([regional_reviews, embeddings], partition_key=region, instance=instance,
                             resources={"sutro": sutro, "io_manager": io_manager})
        assert result.success
        mat = _materialization(result, "regional_embeddings")
        assert mat.partition == region
        stored = pl.read_parquet(mat.metadata["path"].value)
        assert stored.height == rows and set(stored["region"]) == {region}
    jobs = sutro_client.list_jobs()
    assert sorted(j.num_rows for j in jobs) == [2, 3]
    assert sorted(j.name for j in jobs) == ["regional_embeddings[eu]", "regional_embeddings[us]"]


def test_daily_partition_materializes_one_day(sutro, io_manager, sutro_client):
    days = DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-10")

    @asset(partitions_def=days, name="daily_tickets")
    def daily_tickets(context) -> pl.DataFrame:
        return pl.DataFrame({"day": [context.partition_key] * 2, "text": TICKETS[:2]})

    labels = build_sutro_function_asset(
        name="daily_labels", upstream=daily_tickets, function="ticket-triage", input_columns=["text"],
        partitions_def=days,
    )
    result = materialize([daily_tickets, labels], partition_key="2026-01-03",
                         resources={"sutro": sutro, "io_manager": io_manager})
    assert result.success
    mat = _materialization(result, "daily_labels")
    assert mat.partition == "2026-01-03" and "2026-01-03" in mat.metadata["path"].value
    assert pl.read_parquet(mat.metadata["path"].value)["day"].to_list() == ["2026-01-03"] * 2
    assert _check_result(result).passed  # no output_columns given: the check requires new columns
    assert len(sutro_client.list_jobs()) == 1


def test_step_retry_reattaches_instead_of_resubmitting(sutro_server, sutro_key, io_manager, sutro_client):
    # Each try waits at most 1 s for a job of >= 2.4 s (8 rows at 0.3 s): the first tries time out and
    # fail the step, Dagster's RetryPolicy re-runs it, and every retry must reattach to the same job
    # (cancel_on_timeout=False keeps the job running at each try's deadline).
    impatient = SutroResource(api_key=sutro_key, api_url=sutro_server.url, timeout_seconds=1.0,
                              poll_interval_seconds=0.2, max_poll_interval_seconds=0.3, cancel_on_timeout=False)

    @asset(name="eight_reviews")
    def eight_reviews() -> pl.DataFrame:
        return pl.DataFrame({"text": [f"review {i}" for i in range(8)]})

    embeddings = build_sutro_inference_asset(
        name="slow_embeddings", upstream=eight_reviews, model="slow-embed", column="text",
        # generous: the first use of slow-embed on a fresh server also loads the model
        retry_policy=RetryPolicy(max_retries=40, delay=0.5), max_cost_usd=5.0,
    )
    result = materialize([eight_reviews, embeddings], resources={"sutro": impatient, "io_manager": io_manager})
    assert result.success

    retries = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert retries, "the step never timed out, so no retry was exercised"
    jobs = _own_billed_jobs(sutro_client)
    assert len(jobs) == 1, f"a retry submitted again: {[j.job_id for j in jobs]}"
    # The cost gate ran once: retries found the job and neither re-estimated nor resubmitted.
    assert len(sutro_client.list_jobs()) == 2
    # Every try recorded the same job id before waiting; only the first one submitted.
    assert _recorded_job_ids(result) == [jobs[0].job_id] * (len(retries) + 1)
    meta = _materialization(result, "slow_embeddings").metadata
    assert meta["sutro.job.id"].value == jobs[0].job_id
    assert meta["sutro.job.reattached"].value is True
    assert pl.read_parquet(meta["path"].value).height == 8


def test_a_step_timeout_cancels_the_job_by_default(sutro_server, sutro_key, io_manager, sutro_client):
    impatient = SutroResource(api_key=sutro_key, api_url=sutro_server.url, timeout_seconds=1.0,
                              poll_interval_seconds=0.2, max_poll_interval_seconds=0.3)

    @asset(name="many_rows")
    def many_rows() -> pl.DataFrame:
        return pl.DataFrame({"text": [f"row {i}" for i in range(20)]})

    embeddings = build_sutro_inference_asset(name="timed_out", upstream=many_rows, model="slow-embed", column="text")
    result = materialize([many_rows, embeddings], resources={"sutro": impatient, "io_manager": io_manager},
                         raise_on_error=False)
    assert not result.success and "did not finish in time" in _step_error(result)
    jobs = _own_billed_jobs(sutro_client)
    assert len(jobs) == 1 and sutro_client.get_job_status(jobs[0].job_id).value in ("CANCELLING", "CANCELLED")


def test_failed_job_fails_the_step_with_the_server_reason(sutro, io_manager, sutro_client):
    @asset(name="long_texts")
    def long_texts() -> pl.DataFrame:
        return pl.DataFrame({"text": ["short one", "word " * 2000]})

    embeddings = build_sutro_inference_asset(
        name="long_embeddings", upstream=long_texts, model="all-minilm-l6-v2", column="text", truncate_rows=False
    )
    result = materialize([long_texts, embeddings], resources={"sutro": sutro, "io_manager": io_manager},
                         raise_on_error=False)
    assert not result.success
    [job] = sutro_client.list_jobs()
    assert job.status is JobStatus.FAILED and job.failure_reason
    error = _step_error(result)
    assert f"Sutro job {job.job_id} FAILED" in error
    assert job.failure_reason in error
    assert not result.asset_materializations_for_node("long_embeddings")


def test_cost_gate_blocks_before_any_billed_job(sutro, io_manager, sutro_client):
    embeddings = build_sutro_inference_asset(
        name="gated_embeddings", upstream=reviews, model="all-minilm-l6-v2", column="text", max_cost_usd=1e-9
    )
    result = materialize([reviews, embeddings], resources={"sutro": sutro, "io_manager": io_manager},
                         raise_on_error=False)
    assert not result.success
    error = _step_error(result)
    assert "exceeds max_cost_usd" in error and "No billed job was submitted" in error
    # Only the dry run exists; nothing carrying the step's idempotency key (a billed job) was submitted.
    jobs = sutro_client.list_jobs()
    assert _own_billed_jobs(sutro_client) == []
    assert len(jobs) == 1 and jobs[0].cost_estimate is not None


def test_cost_estimate_within_limit_is_reported(sutro, io_manager, sutro_client):
    embeddings = build_sutro_inference_asset(
        name="cheap_embeddings", upstream=reviews, model="all-minilm-l6-v2", column="text", max_cost_usd=5.0
    )
    result = materialize([reviews, embeddings], resources={"sutro": sutro, "io_manager": io_manager})
    assert result.success
    meta = _materialization(result, "cheap_embeddings").metadata
    dry_runs = [j for j in sutro_client.list_jobs() if j.cost_estimate is not None]
    assert 0 < meta["sutro.cost.estimate_usd"].value <= 5.0
    assert meta["sutro.cost.estimate_usd"].value == pytest.approx(dry_runs[0].cost_estimate)
    assert len(_own_billed_jobs(sutro_client)) == 1


def test_bad_column_fails_with_a_clear_message_and_submits_nothing(sutro, io_manager, sutro_client):
    embeddings = build_sutro_inference_asset(
        name="typo_embeddings", upstream=reviews, model="all-minilm-l6-v2", column="body"
    )
    result = materialize([reviews, embeddings], resources={"sutro": sutro, "io_manager": io_manager},
                         raise_on_error=False)
    assert not result.success
    error = _step_error(result)
    assert "column" in error and "'body'" in error and "text" in error
    assert sutro_client.list_jobs() == []


def _terminate_when_running(sutro_client, instance: DagsterInstance, stop: threading.Event) -> None:
    """Terminate the in-process run as Dagster does: mark it CANCELING, then SIGINT the run worker."""
    while not stop.is_set():
        jobs = sutro_client.list_jobs()
        if jobs and jobs[0].status is JobStatus.RUNNING:
            [run] = instance.get_runs(limit=1)
            instance.report_run_canceling(run)
            os.kill(os.getpid(), signal.SIGINT)
            return
        time.sleep(0.1)


@pytest.mark.parametrize("cancel_on_termination", [True, False])
def test_run_termination_cancels_the_job_unless_opted_out(
    sutro_server, sutro_key, io_manager, sutro_client, cancel_on_termination
):
    resource = SutroResource(api_key=sutro_key, api_url=sutro_server.url, poll_interval_seconds=0.2,
                             max_poll_interval_seconds=0.5, cancel_on_termination=cancel_on_termination)

    @asset(name="many_reviews")
    def many_reviews() -> pl.DataFrame:
        return pl.DataFrame({"text": [f"review number {i}" for i in range(60)]})

    embeddings = build_sutro_inference_asset(
        name="slow_review_embeddings", upstream=many_reviews, model="slow-embed", column="text"
    )
    stop = threading.Event()
    instance = DagsterInstance.ephemeral()
    killer = threading.Thread(target=_terminate_when_running, args=(sutro_client, instance, stop), daemon=True)
    killer.start()
    try:
        result = materialize([many_reviews, embeddings], resources={"sutro": resource, "io_manager": io_manager},
                             instance=instance, raise_on_error=False)
    finally:
        stop.set()
        killer.join(timeout=5)
    assert not result.success
    assert result.dagster_run.status is DagsterRunStatus.CANCELED
    [job] = sutro_client.list_jobs()
    if cancel_on_termination:
        deadline = time.monotonic() + 10
        while sutro_client.get_job(job.job_id).status is not JobStatus.CANCELLED and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sutro_client.get_job(job.job_id).status is JobStatus.CANCELLED
    else:
        assert sutro_client.get_job(job.job_id).status is JobStatus.RUNNING
        sutro_client.cancel_job(job.job_id)  # leave the shared server idle for the next test
    assert not result.asset_materializations_for_node("slow_review_embeddings")
    # The job id was recorded in Dagster's event log before the step started waiting.
    assert _recorded_job_ids(result) == [job.job_id]


def test_resource_gives_async_client_and_closes_clients(sutro, io_manager, sutro_client):
    seen = {}

    @asset(name="async_quota_check")
    async def async_quota_check(sutro: SutroResource) -> pl.DataFrame:
        client = sutro.get_async_client()
        quotas = await client.get_quotas()
        seen["async"] = client
        seen["sync"] = sutro.get_client()
        return pl.DataFrame({"job_priority": [q.job_priority for q in quotas]})

    result = materialize([async_quota_check], resources={"sutro": sutro, "io_manager": io_manager})
    assert result.success
    assert sorted(result.output_for_node("async_quota_check")["job_priority"]) == [0, 1]
    # Teardown closed both connection pools.
    assert seen["sync"]._http.is_closed and seen["async"]._http.is_closed


def test_pandas_and_parquet_path_upstreams(sutro, io_manager, sutro_client, tmp_path):
    source = tmp_path / "reviews.parquet"
    pl.DataFrame({"review_id": [7, 8], "text": REVIEWS[:2]}).write_parquet(source)

    @asset(name="review_file", io_manager_key="pickle_io")
    def review_file() -> str:
        return str(source)  # an upstream that hands over a parquet path

    @asset(name="pandas_reviews", io_manager_key="pickle_io")
    def pandas_reviews():
        return pl.DataFrame({"text": REVIEWS}).to_pandas()

    from_file = build_sutro_inference_asset(name="file_embeddings", upstream=review_file,
                                            model="all-minilm-l6-v2", column="text")
    from_pandas = build_sutro_inference_asset(name="pandas_embeddings", upstream=pandas_reviews,
                                              model="all-minilm-l6-v2", column="text")
    from dagster import FilesystemIOManager

    result = materialize(
        [review_file, pandas_reviews, from_file, from_pandas],
        resources={"sutro": sutro, "io_manager": io_manager,
                   "pickle_io": FilesystemIOManager(base_dir=str(tmp_path / "pickles"))},
    )
    assert result.success
    stored = pl.read_parquet(_materialization(result, "file_embeddings").metadata["path"].value)
    assert stored["review_id"].to_list() == [7, 8] and stored["inference_result"].list.len().to_list() == [384] * 2
    stored = pl.read_parquet(_materialization(result, "pandas_embeddings").metadata["path"].value)
    assert stored["text"].to_list() == REVIEWS
    assert len(sutro_client.list_jobs()) == 2


def test_generative_output_schema_fields_become_columns(sutro, io_manager, sutro_client):
    schema = {"type": "object", "properties": {"sentiment": {"type": "string", "enum": ["pos", "neg"]}},
              "required": ["sentiment"]}
    sentiments = build_sutro_inference_asset(
        name="review_sentiment", upstream=reviews, model="tiny-llama", column="text",
        system_prompt="Classify the review's sentiment.", output_schema=schema,
        sampling_params={"temperature": 0.0, "max_tokens": 16},
    )
    result = materialize([reviews, sentiments], resources={"sutro": sutro, "io_manager": io_manager})
    assert result.success
    stored = pl.read_parquet(_materialization(result, "review_sentiment").metadata["path"].value)
    assert stored["review_id"].to_list() == [1, 2, 3]
    assert set(stored["sentiment"]) <= {"pos", "neg"}
    check = _check_result(result)
    assert check.passed and check.metadata["expected_fields"].value == ["sentiment"]


@asset
def drafts_input() -> pl.DataFrame:
    # at max_tokens 3 (echo: words), the second and third rows are cut
    return pl.DataFrame({"id": [1, 2, 3], "text": ["one two", "one two three four five", "a b c d e f g h i"]})


def test_cut_rows_show_in_metadata_warn_in_the_check_and_are_repaired(sutro, io_manager, sutro_client):
    def drafts(**options):
        return build_sutro_inference_asset(name="drafts", upstream=drafts_input, model="echo", column="text",
                                           sampling_params={"max_tokens": 3}, **options)

    result = materialize([drafts_input, drafts()], resources={"sutro": sutro, "io_manager": io_manager})
    assert result.success
    meta = _materialization(result, "drafts").metadata
    assert {k: meta[f"sutro.rows.{k}"].value for k in ("ok", "cut", "invalid", "missing")} == {
        "ok": 1, "cut": 2, "invalid": 0, "missing": 0}
    check = _check_result(result)
    assert not check.passed and check.severity.value == "WARN" and "2 rows are not ok" in check.description

    repaired = materialize([drafts_input, drafts(repair_rounds=2)], resources={"sutro": sutro, "io_manager": io_manager})
    assert repaired.success and _check_result(repaired).passed
    meta = _materialization(repaired, "drafts").metadata
    assert meta["sutro.rows.ok"].value == 3 and len(meta["sutro.job.ids"].value) == 3


def test_too_many_failed_rows_fail_the_step_without_retries(sutro, io_manager):
    drafts = build_sutro_inference_asset(name="drafts", upstream=drafts_input, model="echo", column="text",
                                         sampling_params={"max_tokens": 3}, max_failed_rows=1,
                                         retry_policy=RetryPolicy(max_retries=2))
    result = materialize([drafts_input, drafts], resources={"sutro": sutro, "io_manager": io_manager},
                         raise_on_error=False)
    assert not result.success
    assert "RowsFailedError" in _step_error(result) or "rows are not ok" in _step_error(result)
    retries = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert retries == []


def test_a_row_store_bills_only_new_rows_and_a_fully_stored_partition_needs_no_job(
        sutro, io_manager, sutro_client, tmp_path):
    days = {"d1": ["alpha ticket", "beta ticket", "gamma ticket"],
            "d2": ["beta ticket", "gamma ticket", "delta ticket"],  # shares two tickets with d1
            "d3": ["alpha ticket", "delta ticket"]}                  # every row stored by then
    parts = StaticPartitionsDefinition(list(days))

    @asset(partitions_def=parts)
    def daily_tickets(context) -> pl.DataFrame:
        return pl.DataFrame({"text": days[context.partition_key]})

    replies = build_sutro_inference_asset(name="replies", upstream=daily_tickets, model="echo", column="text",
                                          partitions_def=parts, row_store=str(tmp_path / "rows"))
    metas = {}
    for day in days:
        result = materialize([daily_tickets, replies], partition_key=day,
                             resources={"sutro": sutro, "io_manager": io_manager})
        assert result.success and _check_result(result).passed
        metas[day] = _materialization(result, "replies").metadata
        frame = pl.read_parquet(metas[day]["dagster/uri"].value)
        assert frame["inference_result"].to_list() == days[day]
    billed = sorted(_own_billed_jobs(sutro_client), key=lambda j: j.created_at)
    assert [j.num_rows for j in billed] == [3, 1]  # d2 paid for "delta" only; d3 for nothing
    assert {d: (m["sutro.input.rows_submitted"].value, m["sutro.input.rows_from_store"].value)
            for d, m in metas.items()} == {"d1": (3, 0), "d2": (1, 2), "d3": (0, 2)}
    assert "sutro.job.id" not in metas["d3"]  # no job for d3
