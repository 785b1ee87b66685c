"""The core client end to end over HTTP against a real sutro-local process."""

from __future__ import annotations

import logging

import fsspec
import polars as pl
import pyarrow.parquet as pq
import pytest

from sutro_core import (
    AsyncSutroClient,
    AuthenticationError,
    BatchJobRequest,
    JobCancelledError,
    JobFailedError,
    JobNotSucceededError,
    JobStatus,
    NotFoundError,
    SutroAPIError,
    SutroClient,
    idempotency_key,
    load_results,
)

EMBED = "all-minilm-l6-v2"
LONG_ROW = "word " * 2000  # over MiniLM's 256-token window


def test_infer_attached_returns_vectors_in_input_order(sutro_client):
    df = sutro_client.infer(["the cat sat", "stock markets fell", "the cat sat"], model=EMBED)
    assert df.columns == ["inference_result"] and df.height == 3
    first, second, third = df["inference_result"].to_list()
    assert len(first) == 384
    assert first == pytest.approx(third) and first != pytest.approx(second)


def test_infer_detached_then_wait_and_inspect_the_job(sutro_client):
    job_id = sutro_client.infer(["hello", "world"], model=EMBED, job_priority=1, name="e2e detached")
    assert isinstance(job_id, str)
    results = sutro_client.await_job_completion(job_id, timeout=120, include_inputs=True)
    assert results["inputs"].to_list() == ["hello", "world"]
    job = sutro_client.get_job(job_id)
    assert job.status is JobStatus.SUCCEEDED and job.num_rows == 2 and job.name == "e2e detached"
    assert job.input_tokens and job.input_tokens > 0
    assert job.duration_seconds is not None and job.duration_seconds >= 0
    assert sutro_client.get_job_status(job_id) is JobStatus.SUCCEEDED
    assert job_id in [j.job_id for j in sutro_client.list_jobs()]


def test_dataframe_input_with_concatenated_columns_joins_back(sutro_client):
    df = pl.DataFrame({"title": ["Refund", "Crash"], "body": ["charged twice", "app dies on start"]})
    out = sutro_client.infer(df, model=EMBED, column=["title", ": ", "body"], stay_attached=True,
                             output_column="embedding")
    assert out.columns == ["title", "body", "embedding"] and out.height == 2
    pdf = sutro_client.infer(df.to_pandas(), model=EMBED, column="body", stay_attached=True)
    assert type(pdf).__module__.startswith("pandas") and list(pdf.columns) == ["title", "body", "inference_result"]


def test_dry_run_and_model_list(sutro_client):
    estimate = sutro_client.infer(["a", "b", "c"], model=EMBED, dry_run=True)
    assert isinstance(estimate, float) and estimate >= 0
    ids = sutro_client.infer(["a"], model=[EMBED, EMBED], name=["first", "second"])
    assert len(ids) == 2 and len(set(ids)) == 2


def test_download_results_parquet_is_atomic_and_carries_job_metadata(sutro_client, tmp_path):
    job_id = sutro_client.infer(["x", "y", "z"], model=EMBED, stay_attached=False)
    sutro_client.await_job_completion(job_id, obtain_results=False)
    manifest = sutro_client.download_results(job_id, tmp_path / "out" / "results.parquet", include_inputs=True)
    assert manifest.rows == 3 and manifest.job_id == job_id and manifest.model == EMBED
    assert set(manifest.columns) >= {"inputs", "outputs"} and manifest.bytes > 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.parquet"]
    meta = pq.read_metadata(manifest.uri).metadata
    assert meta[b"sutro.job_id"].decode() == job_id and meta[b"sutro.model"].decode() == EMBED
    assert load_results(manifest)["inputs"].to_list() == ["x", "y", "z"]
    assert load_results(manifest.to_dict()).height == 3


def test_download_results_csv_json_and_fsspec_uri(sutro_client, tmp_path):
    job_id = sutro_client.infer(["one", "two"], model=EMBED, stay_attached=False)
    sutro_client.await_job_completion(job_id, obtain_results=False)
    csv = sutro_client.download_results(job_id, tmp_path / "r.csv", format="csv", include_inputs=True)
    assert csv.rows == 2 and (tmp_path / "r.csv").read_text().splitlines()[0].startswith(("inputs", "outputs"))
    js = sutro_client.download_results(job_id, tmp_path / "r.json", format="json")
    assert js.rows == 2
    remote = sutro_client.download_results(job_id, "memory://bucket/run/results.parquet")
    assert remote.uri == "memory://bucket/run/results.parquet" and remote.rows == 2
    assert fsspec.filesystem("memory").exists("/bucket/run/results.parquet")
    assert load_results(remote).height == 2


def test_failed_job_raises_with_the_server_reason(sutro_client):
    job_id = sutro_client.infer(["short", LONG_ROW], model=EMBED, truncate_rows=False, stay_attached=False)
    with pytest.raises(JobFailedError) as info:
        sutro_client.await_job_completion(job_id, timeout=120)
    assert info.value.job_id == job_id and "truncate_rows" in (info.value.reason or "")
    with pytest.raises(JobFailedError):
        sutro_client.get_job_results(job_id)


def test_cancel_mid_run_is_never_success(sutro_client):
    job_id = sutro_client.infer([f"row {i}" for i in range(200)], model="slow-embed", stay_attached=False)
    assert sutro_client.cancel_job(job_id) in (JobStatus.CANCELLING, JobStatus.CANCELLED)
    with pytest.raises(JobCancelledError):
        sutro_client.await_job_completion(job_id, timeout=60)
    with pytest.raises(JobCancelledError):
        sutro_client.download_results(job_id, "never.parquet")


def test_results_of_an_unfinished_job_are_refused(sutro_client):
    job_id = sutro_client.infer([f"row {i}" for i in range(200)], model="slow-embed", stay_attached=False)
    try:
        with pytest.raises(JobNotSucceededError, match="results exist only for SUCCEEDED"):
            sutro_client.get_job_results(job_id)
    finally:
        sutro_client.cancel_job(job_id)


def test_attach_follows_progress_to_the_end(sutro_client, caplog):
    job_id = sutro_client.infer([f"row {i}" for i in range(6)], model="slow-embed", stay_attached=False)
    with caplog.at_level(logging.INFO, logger="sutro_core"):
        job = sutro_client.attach(job_id, show_progress=False)
    assert job.status is JobStatus.SUCCEEDED and job.rows_processed in (None, 6)


def test_idempotent_submit_reattaches_on_the_real_server(sutro_client):
    req = BatchJobRequest.for_inference(["same", "rows"], model=EMBED)
    key = idempotency_key("e2e", "step", fingerprint=req.fingerprint)
    first = sutro_client.submit_job(req, key)
    second = sutro_client.submit_job(req, key)
    assert second.reattached and second.job_id == first.job_id
    assert sutro_client.find_job(key).job_id == first.job_id
    assert len(sutro_client.list_jobs()) == 1


def test_functions_one_and_batch(sutro_client):
    result = sutro_client.run_function("ticket-triage", {"text": "I was charged twice for my subscription"})
    assert result.label == "billing" and result.is_classification
    assert 0 <= result.confidence <= 1 and {p.label for p in result.predictions} >= {"billing", "bug"}
    job_id = sutro_client.batch_run_function(
        "ticket-triage", pl.DataFrame({"text": ["refund my double charge", "the app crashes when I log in"]})
    )
    df = sutro_client.await_job_completion(job_id, timeout=120)
    assert {"label", "rationale", "confidence_score"} <= set(df.columns)
    assert df["label"].to_list()[0] == "billing"


def test_account_calls_and_errors(sutro_server, sutro_client):
    assert sutro_client.check_auth()
    assert {q.job_priority for q in sutro_client.get_quotas()} >= {0, 1}
    with pytest.raises(AuthenticationError):
        SutroClient(api_key="wrong", api_url=sutro_server.url).list_jobs()
    with pytest.raises(NotFoundError):
        sutro_client.get_job("job-does-not-exist")
    with pytest.raises(SutroAPIError) as info:
        sutro_client.infer(["x"], model="no-such-model", stay_attached=False)
    assert info.value.status_code == 400 and EMBED in info.value.detail


async def test_async_client_end_to_end(sutro_server, sutro_key, tmp_path):
    async with AsyncSutroClient(api_key=sutro_key, api_url=sutro_server.url) as client:
        req = BatchJobRequest.for_inference(["async", "rows"], model=EMBED)
        sub = await client.submit_job(req, idempotency_key("async", fingerprint=req.fingerprint))
        job = await client.await_job_completion(sub.job_id, timeout=120, obtain_results=False)
        assert job.status is JobStatus.SUCCEEDED
        manifest = await client.download_results(sub.job_id, tmp_path / "a.parquet")
        assert manifest.rows == 2
        assert (await client.get_job_results(sub.job_id)).height == 2
        assert (await client.run_function("ticket-triage", {"text": "app crashes"})).label == "bug"


def test_cost_gate_runs_only_for_a_new_job(sutro_client):
    from sutro_core import CostLimitExceededError

    req = BatchJobRequest.for_inference(["gate me", "please"], model=EMBED)
    key = idempotency_key("gate", fingerprint=req.fingerprint)
    assert sutro_client.estimate_cost(req) > 0
    with pytest.raises(CostLimitExceededError):
        sutro_client.submit_job(req, key, max_cost_usd=0.0)
    assert all(j.cost_estimate is not None for j in sutro_client.list_jobs())  # only dry runs so far
    first = sutro_client.submit_job(req, key, max_cost_usd=100.0)
    assert not first.reattached and first.cost_estimate is not None and first.cost_estimate <= 100
    dry_runs = len(sutro_client.list_jobs()) - 1
    again = sutro_client.submit_job(req, key, max_cost_usd=100.0)
    assert again.reattached and again.job_id == first.job_id and again.cost_estimate is None
    assert len(sutro_client.list_jobs()) - 1 == dry_runs  # a reattach runs no new dry run
