"""prefect_sutro end to end: tasks and the sutro_batch_job flow run by Prefect against a real sutro-local."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from uuid import UUID

import polars as pl
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)
from sutro_core import CostLimitExceededError, JobCancelledError, JobFailedError, JobStatus

from prefect_sutro import (
    cancel_job,
    load_results,
    run_function,
    submit_batch_inference,
    sutro_batch_job,
    wait_for_job,
)

REVIEWS = ["Great blender, crushes ice easily.", "Stopped working after a week.", "Okay for the price."]
TICKETS = [
    "I was charged twice for my subscription",
    "The app crashes when I log in",
    "How do I export my data?",
]
FAST = {"poll_interval_seconds": 0.2, "max_poll_interval_seconds": 0.5}


async def _artifacts(flow_run_id: UUID) -> list:
    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


async def test_batch_inference_flow_writes_parquet_and_artifacts(
    sutro_credentials, sutro_client, tmp_path: Path
):
    out = tmp_path / "reviews.parquet"
    state = await sutro_batch_job(
        REVIEWS,
        str(out),
        sutro_credentials,
        model="all-minilm-l6-v2",
        artifact_key="reviews-embeddings",
        return_state=True,
        **FAST,
    )
    assert state.is_completed(), state.message
    manifest = await state.result()

    # The flow returns the manifest, not the data; load_results reads the parquet back.
    assert isinstance(manifest, dict) and manifest["rows"] == 3 and manifest["model"] == "all-minilm-l6-v2"
    assert Path(manifest["uri"].removeprefix("file://")).resolve() == out.resolve() and out.exists()
    df = load_results(manifest)
    assert df.height == 3
    vectors = df["inference_result"].to_list()  # the one results shape: non-JSON outputs in inference_result
    assert all(len(v) == 384 for v in vectors) and vectors[0] != vectors[1]

    jobs = sutro_client.list_jobs()
    assert [j.job_id for j in jobs] == [manifest["job_id"]] and jobs[0].status is JobStatus.SUCCEEDED

    artifacts = {a.key: a for a in await _artifacts(state.state_details.flow_run_id)}
    assert set(artifacts) == {f"reviews-embeddings-{k}" for k in ("job", "preview", "parquet", "summary")} | {
        "sutro-batch-job-sutro-jobs"  # the run's job table (this run is its own root)
    }
    table = artifacts["reviews-embeddings-preview"]
    assert table.type == "table"
    rows = table.data if isinstance(table.data, list) else json.loads(table.data)
    assert len(rows) == 3 and "384 items" in rows[0]["inference_result"]
    job_link = artifacts["reviews-embeddings-job"]
    assert manifest["job_id"] in job_link.data and job_link.metadata_["sutro_job_id"] == manifest["job_id"]
    # What a runner-side hook needs to cancel the job (Prefect cuts metadata values at 500 characters).
    assert job_link.metadata_["sutro_api_url"].startswith(sutro_credentials.api_url)
    assert out.name in artifacts["reviews-embeddings-parquet"].data
    summary = artifacts["reviews-embeddings-summary"]
    assert summary.type == "markdown"
    for needle in (
        manifest["job_id"],
        "all-minilm-l6-v2",
        "| Rows | 3 |",
        "Input tokens",
        "Cost (USD)",
        "Duration",
    ):
        assert needle in summary.data, (needle, summary.data)
    heading, _, header = summary.data.splitlines()[:3]
    assert "`" not in heading and header == "| Field | Value |"
    assert "$0.0000 " not in summary.data and "| Cost (USD) | $0.0" in summary.data  # 3 tiny rows: cents round to 0


async def test_parent_run_gets_named_subflows_and_one_job_table(sutro_credentials, sutro_client, tmp_path: Path):
    @flow(name="Review Pipeline")
    async def parent():
        a = await sutro_batch_job(REVIEWS, str(tmp_path / "a.parquet"), sutro_credentials, model="all-minilm-l6-v2",
                                  artifact_key="review-vectors", **FAST)
        b = await sutro_batch_job([{"text": t} for t in TICKETS], str(tmp_path / "b.parquet"), sutro_credentials,
                                  function_name="ticket-triage", column=["text"], **FAST)
        return a, b

    state = await parent(return_state=True)
    a, b = await state.result()
    root = state.state_details.flow_run_id
    async with get_client() as client:
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[root]))
        )
    assert sorted(c.name for c in children) == sorted(
        [f"review-vectors · {a['job_id']}", f"ticket-triage · {b['job_id']}"]
    )
    jobs = {j.job_id: j for j in sutro_client.list_jobs()}
    assert jobs[a["job_id"]].name == "Review Pipeline/review-vectors"
    assert jobs[b["job_id"]].name == "Review Pipeline/submit-ticket-triage"

    [table] = [x for x in await _artifacts(root) if x.key == "review-pipeline-sutro-jobs"]
    lines = table.data.splitlines()
    assert lines[2] == "| Step | Job | Status | Rows | Cost (USD) | Results |"
    rows = [line for line in lines if line.startswith("| ") and "[" in line]
    assert len(rows) == 2, table.data
    for manifest, step in ((a, "review-vectors"), (b, "Review Pipeline/submit-ticket-triage")):
        [row] = [r for r in rows if manifest["job_id"] in r]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == step and cells[2] == "SUCCEEDED" and cells[3] == str(manifest["rows"])
        assert f"/console/jobs/{manifest['job_id']})" in cells[1]
        assert cells[4].startswith("$") and cells[4] != "$0.0000" and cells[5] == f"`{manifest['uri']}`"
    assert lines[-1].startswith("2 jobs, total cost $")


async def test_function_batch_flow_unpacks_label_columns(sutro_credentials, sutro_client, tmp_path: Path):
    data = pl.DataFrame({"ticket_id": ["t1", "t2", "t3"], "text": TICKETS})
    state = await sutro_batch_job(
        data,
        str(tmp_path / "triage.parquet"),
        sutro_credentials,
        function_name="ticket-triage",
        column="text",
        artifact_key="triage",
        return_state=True,
        **FAST,
    )
    manifest = await state.result()
    df = load_results(manifest)
    assert df.height == 3
    assert {"label", "rationale", "confidence_score"} <= set(df.columns)
    assert df["label"].to_list()[:2] == ["billing", "bug"]  # near-copies of the Function's examples
    assert all(0.0 <= c <= 1.0 for c in df["confidence_score"].to_list())
    assert len(sutro_client.list_jobs()) == 1
    # The one results shape: the DataFrame's columns are carried (ids first), outputs already unpacked.
    raw = load_results(manifest, unpack_json=False)
    assert raw.columns[:2] == ["ticket_id", "text"] and "label" in raw.columns and "outputs" not in raw.columns
    assert raw["ticket_id"].to_list() == ["t1", "t2", "t3"]

    artifacts = {a.key: a for a in await _artifacts(state.state_details.flow_run_id)}
    preview = artifacts["triage-preview"].data
    rows = preview if isinstance(preview, list) else json.loads(preview)
    assert [r["label"] for r in rows] == df["label"].to_list()


async def test_run_function_task_returns_classification(sutro_credentials):
    @flow
    async def triage_one(text: str):
        return await run_function("ticket-triage", {"text": text}, sutro_credentials)

    result = await triage_one("I was charged twice for my subscription")
    assert isinstance(result.label, str) and result.label
    assert result.confidence is not None and 0.0 <= result.confidence <= 1.0
    assert result.label in [p.label for p in result.predictions]


def test_tasks_work_in_a_sync_flow(sutro_credentials, sutro_client):
    @flow
    def sync_pipeline():
        sub = submit_batch_inference.submit(REVIEWS[:2], "all-minilm-l6-v2", sutro_credentials).result()
        job = wait_for_job.submit(sub.job_id, sutro_credentials, **FAST).result()  # a bare job id works too
        return sub, job

    sub, job = sync_pipeline()
    assert job.job_id == sub.job_id and job.status is JobStatus.SUCCEEDED and job.num_rows == 2
    assert len(sutro_client.list_jobs()) == 1


async def test_failed_job_fails_the_task_with_the_server_reason(
    sutro_credentials, sutro_client, tmp_path: Path
):
    rows = ["fine row", "word " * 2000]
    state = await sutro_batch_job(
        rows,
        str(tmp_path / "x.parquet"),
        sutro_credentials,
        model="all-minilm-l6-v2",
        truncate_rows=False,
        return_state=True,
        **FAST,
    )
    assert state.is_failed()
    with pytest.raises(JobFailedError) as info:
        await state.result()
    (job,) = sutro_client.list_jobs()
    assert job.status is JobStatus.FAILED and job.failure_reason
    assert info.value.job_id == job.job_id and info.value.reason == job.failure_reason
    assert job.failure_reason in (state.message or "")
    assert not (tmp_path / "x.parquet").exists()


async def test_cost_gate_blocks_before_any_billed_job(sutro_credentials, sutro_client, tmp_path: Path):
    state = await sutro_batch_job(
        REVIEWS,
        str(tmp_path / "x.parquet"),
        sutro_credentials,
        model="all-minilm-l6-v2",
        max_cost_usd=0.0,
        return_state=True,
        **FAST,
    )
    assert state.is_failed()
    with pytest.raises(CostLimitExceededError, match="exceeds max_cost_usd"):
        await state.result()
    # Only the dry run exists on the server: nothing billed was submitted.
    jobs = sutro_client.list_jobs()
    assert len(jobs) == 1 and jobs[0].cost_estimate is not None


async def test_errors_a_retry_cannot_fix_are_not_retried(sutro_credentials, sutro_client):
    @flow
    async def gated():
        return await submit_batch_inference.with_options(retries=2, retry_delay_seconds=0)(
            REVIEWS, "all-minilm-l6-v2", sutro_credentials, max_cost_usd=0.0
        )

    state = await gated(return_state=True)
    with pytest.raises(CostLimitExceededError):
        await state.result()
    assert len(sutro_client.list_jobs()) == 1, "one dry run: the cost gate was not retried"


async def test_cost_gate_lets_a_cheap_job_through(sutro_credentials, sutro_client, tmp_path: Path):
    manifest = await sutro_batch_job(
        REVIEWS,
        str(tmp_path / "x.parquet"),
        sutro_credentials,
        model="all-minilm-l6-v2",
        max_cost_usd=100.0,
        **FAST,
    )
    assert manifest["rows"] == 3
    assert len(sutro_client.list_jobs()) == 2  # the dry run and the real job


async def test_cancel_job_task_cancels_a_running_job(sutro_credentials, sutro_client):
    @flow
    async def start_and_cancel():
        sub = await submit_batch_inference([f"row {i}" for i in range(40)], "slow-embed", sutro_credentials)
        status = await cancel_job(sub, sutro_credentials)
        return sub, status

    sub, status = await start_and_cancel()
    assert status in (JobStatus.CANCELLING, JobStatus.CANCELLED)
    with pytest.raises(JobCancelledError):
        sutro_client.await_job_completion(sub.job_id, timeout=30, obtain_results=False)


async def test_bad_input_names_the_field(sutro_credentials, sutro_client, tmp_path: Path):
    from sutro_core import InputValidationError

    with pytest.raises(InputValidationError, match="model/function_name"):
        await sutro_batch_job(REVIEWS, str(tmp_path / "x.parquet"), sutro_credentials)
    with pytest.raises(ValueError, match="artifact_key"):
        await sutro_batch_job(
            REVIEWS,
            str(tmp_path / "x.parquet"),
            sutro_credentials,
            model="all-minilm-l6-v2",
            artifact_key="Not Valid",
        )
    with pytest.raises(InputValidationError, match="max_cost_usd: must be a dollar amount >= 0"):
        await sutro_batch_job(
            REVIEWS, str(tmp_path / "x.parquet"), sutro_credentials, model="all-minilm-l6-v2", max_cost_usd=-1
        )
    with pytest.raises(InputValidationError, match="column"):
        await sutro_batch_job(
            pl.DataFrame({"body": REVIEWS}),
            str(tmp_path / "x.parquet"),
            sutro_credentials,
            model="all-minilm-l6-v2",
            column="text",
        )
    with pytest.raises(InputValidationError, match="carry_columns"):  # checked before anything is billed
        await sutro_batch_job(
            pl.DataFrame({"text": REVIEWS}), str(tmp_path / "x.parquet"), sutro_credentials,
            model="all-minilm-l6-v2", column="text", carry_columns=["review_id"],
        )
    assert sutro_client.list_jobs() == []


def test_sync_flow_runs_the_batch_job_as_a_subflow(sutro_credentials, sutro_client, tmp_path: Path):
    @flow
    def sync_parent():
        # sutro_batch_job is an async flow; a sync flow runs it to completion with asyncio.run
        return asyncio.run(
            sutro_batch_job(
                REVIEWS, str(tmp_path / "s.parquet"), sutro_credentials, model="all-minilm-l6-v2", **FAST
            )
        )

    state = sync_parent(return_state=True)
    manifest = state.result()
    assert load_results(manifest).height == 3
    assert len(sutro_client.list_jobs()) == 1
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    assert [c.name for c in children] and children[0].state.is_completed()  # a real, tracked subflow run


async def test_results_to_an_fsspec_uri(sutro_credentials, sutro_client):
    uri = f"memory://sutro-tests/{sutro_client.api_key[:8]}/reviews.parquet"
    manifest = await sutro_batch_job(REVIEWS, uri, sutro_credentials, model="all-minilm-l6-v2", **FAST)
    assert manifest["uri"] == uri and manifest["rows"] == 3
    df = load_results(manifest)
    assert df.height == 3 and len(df["inference_result"][0]) == 384


async def test_generative_model_path(sutro_credentials, sutro_client, tmp_path: Path):
    """tiny-llama has random weights: its text is gibberish, so only the shape and accounting are checked."""
    manifest = await sutro_batch_job(
        ["Write a haiku about rain.", "Summarise: the meeting moved to Tuesday."],
        str(tmp_path / "gen.parquet"),
        sutro_credentials,
        model="tiny-llama",
        system_prompt="You are terse.",
        sampling_params={"max_tokens": 8, "seed": 7},
        **FAST,
    )
    df = load_results(manifest)
    assert df.height == 2 and df["inference_result"].dtype == pl.String
    assert manifest["input_tokens"] > 0 and manifest["output_tokens"] > 0
    (job,) = sutro_client.list_jobs()
    assert job.model == "tiny-llama" and job.status is JobStatus.SUCCEEDED


async def test_cut_rows_are_repaired_and_the_summary_counts_rows_by_status(
    sutro_credentials, sutro_client, tmp_path: Path
):
    rows = ["one two", "one two three four five", "a b c d e f g h i"]  # at max_tokens 3, rows 2 and 3 are cut
    state = await sutro_batch_job(rows, str(tmp_path / "drafts.parquet"), sutro_credentials, model="echo",
                                  sampling_params={"max_tokens": 3}, repair_rounds=2, artifact_key="drafts",
                                  return_state=True, **FAST)
    assert state.is_completed(), state.message
    manifest = await state.result()
    jobs = sorted(sutro_client.list_jobs(), key=lambda j: j.created_at)
    assert [j.num_rows for j in jobs] == [3, 2, 1] and manifest["job_ids"] == [j.job_id for j in jobs]
    assert load_results(manifest)["sutro_row_status"].to_list() == ["ok"] * 3
    summary = {a.key: a for a in await _artifacts(state.state_details.flow_run_id)}["drafts-summary"].data
    assert "| Rows by status | ok 3, cut 0, invalid 0, missing 0 |" in summary, summary

    failing = await sutro_batch_job(["a b c d"], str(tmp_path / "one.parquet"), sutro_credentials, model="echo",
                                    sampling_params={"max_tokens": 2}, max_failed_rows=0, return_state=True, **FAST)
    assert failing.is_failed() and "rows are not ok" in failing.message
    assert load_results(str(tmp_path / "one.parquet"))["sutro_row_status"].to_list() == ["cut"]


async def test_a_row_store_bills_only_new_rows_and_the_summary_says_what_was_reused(
    sutro_credentials, sutro_client, tmp_path: Path
):
    days = [["alpha ticket", "beta ticket", "gamma ticket"],
            ["beta ticket", "gamma ticket", "delta ticket"],  # shares two tickets with day 1
            ["alpha ticket", "delta ticket"]]                  # every row stored by then
    states = []
    for day, rows in enumerate(days):
        state = await sutro_batch_job(rows, str(tmp_path / f"day{day}.parquet"), sutro_credentials, model="echo",
                                      row_store=str(tmp_path / "rows"), artifact_key=f"replies-{day}",
                                      return_state=True, **FAST)
        assert state.is_completed(), state.message
        manifest = await state.result()
        assert load_results(manifest)["inference_result"].to_list() == rows
        states.append((state, manifest))
    jobs = sorted(sutro_client.list_jobs(), key=lambda j: j.created_at)
    assert [j.num_rows for j in jobs] == [3, 1]  # day 2 paid for one row, day 3 for none
    assert [(m["rows_submitted"], m["rows_from_store"]) for _, m in states] == [(3, 0), (1, 2), (0, 2)]
    last_state, last = states[2]
    assert last["job_id"] is None
    summary = {a.key: a for a in await _artifacts(last_state.state_details.flow_run_id)}["replies-2-summary"].data
    assert "| Rows billed / reused | 0 sent, 2 from the row store |" in summary, summary
