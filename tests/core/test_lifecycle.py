"""The core job lifecycle (start / wait / finish / cancel / run) end to end against a real sutro-local."""

from __future__ import annotations

import json

import polars as pl
import pyarrow.parquet as pq
import pytest

from sutro_core import (
    AsyncSutroClient,
    CostLimitExceededError,
    InputValidationError,
    JobCancelledError,
    JobHandle,
    JobSpec,
    JobStatus,
    JobTimeoutError,
    PollPolicy,
    ResultsShapeError,
    is_retryable,
    load_results,
)

EMBED = "all-minilm-l6-v2"
FAST = PollPolicy(initial_interval=0.1, max_interval=0.5)


def _tickets() -> pl.DataFrame:
    return pl.DataFrame({
        "ticket_id": [101, 102, 103],
        "text": ["I was charged twice this month", "The app crashes when I open settings",
                 "Please add a dark mode"],
    })


def test_run_writes_one_artifact_with_carried_columns_and_job_metadata(sutro_client, tmp_path):
    spec = JobSpec.for_inference(_tickets(), EMBED, column="text", output_uri=str(tmp_path / "emb.parquet"), poll=FAST)
    recorded: list[dict] = []
    outcome = sutro_client.run(spec, scope=("test", "embed", "run-1"), on_handle=lambda h: recorded.append(h.to_dict()))
    assert recorded and recorded[0]["job_id"] == outcome.job.job_id  # recorded before the wait
    df = load_results(outcome.manifest)
    assert df.columns == ["ticket_id", "text", "inference_result", "sutro_row_status", "sutro_job_id"]
    assert df["ticket_id"].to_list() == [101, 102, 103] and len(df["inference_result"][0]) == 384
    meta = pq.read_metadata(outcome.manifest.uri).metadata
    assert meta[b"sutro.job_id"].decode() == outcome.job.job_id and meta[b"sutro.model"] == EMBED.encode()
    assert outcome.manifest.rows == 3 and outcome.manifest.columns == df.columns
    assert outcome.manifest.job_ids == [outcome.job.job_id]


def test_function_results_unpack_to_typed_columns(sutro_client, tmp_path):
    spec = JobSpec.for_function("ticket-triage", _tickets(), columns=["text"], carry_columns=["ticket_id"],
                                output_uri=str(tmp_path / "triage.parquet"), poll=FAST)
    outcome = sutro_client.run(spec, scope=("test", "triage", "run-1"))
    df = load_results(outcome.manifest)
    assert df.columns[:3] == ["ticket_id", "label", "rationale"] and "confidence_score" in df.columns
    assert df["label"].to_list() == ["billing", "bug", "feature_request"]
    assert df.schema["confidence_score"] == pl.Float64


def test_an_upstream_artifact_feeds_the_next_step_and_column_clashes_are_refused_before_submitting(
        sutro_client, tmp_path):
    first = sutro_client.run(JobSpec.for_function(
        "ticket-triage", _tickets(), columns=["text"], output_uri=str(tmp_path / "triage.parquet"), poll=FAST),
        scope=("test", "chain", "triage"))
    upstream = load_results(first.manifest)  # ticket_id, text, label, ..., sutro_row_status, sutro_job_id
    jobs_before = len(sutro_client.list_jobs())
    with pytest.raises(InputValidationError, match=r"\['inference_result'\].*output_column"):
        JobSpec.for_inference(upstream.with_columns(inference_result=pl.col("text")), EMBED, column="text")
    with pytest.raises(InputValidationError, match="carry_columns.*sutro_row_status"):
        JobSpec.for_inference(upstream, EMBED, column="text", carry_columns=["ticket_id", "sutro_row_status"])
    assert len(sutro_client.list_jobs()) == jobs_before  # nothing was sent

    # By default the upstream's row status and job ids stay behind: they describe the step that wrote them.
    second = sutro_client.run(JobSpec.for_inference(upstream, EMBED, column="text", poll=FAST,
                                                    output_uri=str(tmp_path / "emb.parquet")),
                              scope=("test", "chain", "embed"))
    df = load_results(second.manifest)
    assert df.columns[:3] == ["ticket_id", "text", "label"]
    assert df["sutro_job_id"].unique().to_list() == [second.job.job_id] and df["ticket_id"].to_list() == [101, 102, 103]

    # A Function's output columns are known only from its results: a clash is found after the job, and the
    # step run again without the clashing columns reattaches to the paid job.
    again = dict(columns=["text"], output_uri=str(tmp_path / "again.parquet"), poll=FAST)
    jobs_before = len(sutro_client.list_jobs())
    with pytest.raises(ResultsShapeError, match="'label'.*not billed again"):
        sutro_client.run(JobSpec.for_function("ticket-triage", upstream, **again), scope=("test", "chain", "again"))
    fixed = sutro_client.run(JobSpec.for_function("ticket-triage", upstream, carry_columns=["ticket_id"], **again),
                             scope=("test", "chain", "again"))
    assert fixed.handle.reattached and len(sutro_client.list_jobs()) == jobs_before + 1
    assert load_results(fixed.manifest)["label"].to_list() == ["billing", "bug", "feature_request"]


def test_a_retry_with_unchanged_inputs_reattaches_and_changed_inputs_supersede(sutro_client):
    scope = ("test", "slow", "run-1")
    first = sutro_client.start(JobSpec.for_inference(["a", "b", "c", "d"], "slow-embed"), scope=scope)
    again = sutro_client.start(JobSpec.for_inference(["a", "b", "c", "d"], "slow-embed"), scope=scope)
    assert again.job_id == first.job_id and again.reattached and not first.reattached
    changed = sutro_client.start(JobSpec.for_inference(["a", "b", "c", "e"], "slow-embed"), scope=scope)
    assert changed.job_id != first.job_id and not changed.reattached
    assert sutro_client.get_job_status(first.job_id) in (JobStatus.CANCELLING, JobStatus.CANCELLED)
    assert sutro_client.cancel(changed, reason="test over")


def test_the_handle_round_trips_through_json_and_refuses_a_newer_version(sutro_client):
    handle = sutro_client.start(JobSpec.for_inference(["x"], EMBED, timeout=60), scope=("test", "json", "1"))
    again = JobHandle.from_json(json.dumps(handle.to_dict()))
    assert again == handle and again.deadline is not None and 55 < again.seconds_left() <= 60
    assert sutro_client.wait(again).status is JobStatus.SUCCEEDED
    with pytest.raises(InputValidationError, match="newer sutro_core"):
        JobHandle.from_dict({**handle.to_dict(), "version": 99})


def test_the_spec_round_trips_with_its_carried_columns(tmp_path):
    spec = JobSpec.for_inference(_tickets(), EMBED, column="text", output_uri=str(tmp_path / "x.parquet"),
                                 max_cost_usd=0, poll=FAST)
    again = JobSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again.fingerprint == spec.fingerprint and again.carry.equals(spec.carry)
    assert again.max_cost_usd == 0 and again.poll == FAST


def test_wait_cancels_the_job_at_its_deadline(sutro_client):
    handle = sutro_client.start(JobSpec.for_inference([f"row {i}" for i in range(20)], "slow-embed", timeout=1.5,
                                                     poll=FAST), scope=("test", "deadline", "1"))
    with pytest.raises(JobTimeoutError) as info:
        sutro_client.wait(handle)
    assert info.value.cancelled is True and is_retryable(info.value)
    assert sutro_client.get_job_status(handle.job_id) in (JobStatus.CANCELLING, JobStatus.CANCELLED)


def test_an_interrupted_run_cancels_its_job(sutro_client, tmp_path):
    spec = JobSpec.for_inference([f"row {i}" for i in range(20)], "slow-embed", output_uri=str(tmp_path / "o.parquet"))
    seen: list[JobHandle] = []

    def interrupt(handle: JobHandle) -> None:
        seen.append(handle)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sutro_client.run(spec, scope=("test", "interrupt", "1"), on_handle=interrupt)
    assert sutro_client.get_job_status(seen[0].job_id) in (JobStatus.CANCELLING, JobStatus.CANCELLED)


def test_an_ordinary_error_does_not_cancel(sutro_client, tmp_path):
    spec = JobSpec.for_inference([f"row {i}" for i in range(6)], "slow-embed", output_uri=str(tmp_path / "o.parquet"))
    seen: list[JobHandle] = []

    def fail(handle: JobHandle) -> None:
        seen.append(handle)
        raise RuntimeError("recording failed")

    with pytest.raises(RuntimeError):
        sutro_client.run(spec, scope=("test", "error", "1"), on_handle=fail)
    assert sutro_client.get_job_status(seen[0].job_id) not in (JobStatus.CANCELLING, JobStatus.CANCELLED)
    assert sutro_client.cancel(seen[0], reason="test over")


def test_a_cancelled_job_is_not_success_and_not_retryable(sutro_client):
    handle = sutro_client.start(JobSpec.for_inference([f"r{i}" for i in range(20)], "slow-embed", poll=FAST),
                                scope=("test", "cancelled", "1"))
    assert sutro_client.cancel(handle, reason="a user asked")
    with pytest.raises(JobCancelledError) as info:
        sutro_client.wait(handle)
    assert not is_retryable(info.value)
    assert not sutro_client.cancel(handle, reason="again")  # terminal: nothing to cancel


def test_the_cost_gate_blocks_before_anything_billed(sutro_client):
    spec = JobSpec.for_inference(["a"] * 50, EMBED, max_cost_usd=0)
    with pytest.raises(CostLimitExceededError) as info:
        sutro_client.start(spec, scope=("test", "gate", "1"))
    assert not is_retryable(info.value)
    assert [j for j in sutro_client.list_jobs() if not (j.model_extra or {}).get("dry_run")] == []


def test_a_step_without_scope_or_key_is_refused():
    with pytest.raises(InputValidationError, match="scope"):
        from sutro_core.spec import step_key

        step_key(JobSpec.for_inference(["a"], EMBED), None, None)


async def test_async_run_matches_the_sync_shape(sutro_server, sutro_key, sutro_client, tmp_path):
    spec = JobSpec.for_function("ticket-triage", _tickets(), columns=["text"], poll=FAST)
    sync = sutro_client.run(spec, scope=("test", "shape", "sync"), destination=str(tmp_path / "sync.parquet"))
    async with AsyncSutroClient(api_key=sutro_key, api_url=sutro_server.url) as client:
        other = await client.run(spec, scope=("test", "shape", "async"), destination=str(tmp_path / "async.parquet"))
    assert pq.read_schema(sync.manifest.uri).remove_metadata() == pq.read_schema(other.manifest.uri).remove_metadata()


async def test_async_stages_yield_the_handle_then_the_outcome(sutro_server, sutro_key, tmp_path):
    spec = JobSpec.for_inference(["a", "b"], EMBED, output_uri=str(tmp_path / "s.parquet"), poll=FAST)
    async with AsyncSutroClient(api_key=sutro_key, api_url=sutro_server.url) as client:
        steps = [step async for step in client.stages(spec, scope=("test", "async-stages", "1"))]
    assert [type(s).__name__ for s in steps] == ["JobHandle", "JobOutcome"]
    assert steps[1].handle == steps[0] and steps[1].manifest.rows == 2


async def test_async_stages_cancel_on_an_interruption_thrown_in(sutro_server, sutro_key, sutro_client, tmp_path):
    spec = JobSpec.for_inference([f"row {i}" for i in range(20)], "slow-embed", output_uri=str(tmp_path / "o.parquet"))
    async with AsyncSutroClient(api_key=sutro_key, api_url=sutro_server.url) as client:
        steps = client.stages(spec, scope=("test", "async-stages-interrupt", "1"))
        handle = await anext(steps)
        with pytest.raises(KeyboardInterrupt):
            await steps.athrow(KeyboardInterrupt())
    assert sutro_client.get_job_status(handle.job_id) in (JobStatus.CANCELLING, JobStatus.CANCELLED)


async def test_async_run_cancels_when_its_task_is_cancelled(sutro_server, sutro_key, sutro_client, tmp_path):
    import asyncio

    spec = JobSpec.for_inference([f"row {i}" for i in range(20)], "slow-embed", output_uri=str(tmp_path / "o.parquet"))
    seen: list[JobHandle] = []
    async with AsyncSutroClient(api_key=sutro_key, api_url=sutro_server.url) as client:
        task = asyncio.ensure_future(client.run(spec, scope=("test", "async-cancel", "1"), on_handle=seen.append))
        while not seen:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sutro_client.get_job_status(seen[0].job_id) in (JobStatus.CANCELLING, JobStatus.CANCELLED)


def test_a_handle_knows_whether_it_is_for_the_current_inputs_and_takes_a_steps_own_rules(sutro_client):
    scope = ("test", "is-for", "1")
    spec = JobSpec.for_inference(["x"], EMBED, output_uri="out.parquet")
    handle = sutro_client.start(spec, scope=scope)
    assert handle.is_for(spec, scope) and handle.output.uri == "out.parquet"
    assert not handle.is_for(JobSpec.for_inference(["y"], EMBED), scope)
    assert not handle.is_for(spec, ("test", "is-for", "2"))
    rearmed = handle.with_overrides(timeout=30, poll=FAST, cancel_on_timeout=False, include_inputs=True)
    assert 25 < rearmed.seconds_left() <= 30 and rearmed.poll_policy() == FAST
    assert not rearmed.cancel_on_timeout and rearmed.output.include_inputs and rearmed.output.uri == "out.parquet"
    assert handle.with_overrides(timeout=None).deadline is None
    assert sutro_client.wait(handle).status is JobStatus.SUCCEEDED


def test_a_version_1_handle_recorded_before_an_upgrade_is_still_read(sutro_client, tmp_path):
    handle = sutro_client.start(JobSpec.for_inference(["x"], EMBED), scope=("test", "v1", "1"))
    v1 = {k: v for k, v in handle.to_dict().items() if k != "output"} | {
        "version": 1, "output_uri": str(tmp_path / "v1.parquet"), "output_format": "parquet",
        "output_column": "vector", "include_inputs": False, "json_schema": None}
    again = JobHandle.from_dict(v1)
    assert again.version == 2 and again.output.uri == str(tmp_path / "v1.parquet") and again.output.column == "vector"
    sutro_client.wait(again)
    assert "vector" in load_results(sutro_client.finish(again)).columns
