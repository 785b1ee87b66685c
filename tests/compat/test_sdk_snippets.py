"""SDK-style code from the docs (../shared/sutro-docs/) runs unchanged on ``SutroClient`` (issue 15, items 7-13).

Each test is a docs snippet with ``so`` / ``sutro`` bound to a ``SutroClient`` of the real sutro-local of the
fixtures; model names are the fixture server's (`all-minilm-l6-v2` embeds, `slow-embed` runs for seconds,
`tiny-llama-reasoning` answers ``{"content", "reasoning_content"}``; ``ticket-triage`` is a Function).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import httpx
import pandas as pd
import polars as pl
import pytest
from pydantic import BaseModel

from sutro_core import JobStatus, SutroClient
from sutro_core.errors import DryRunResultsError, InputValidationError, SutroAPIError
from sutro_core.models import CancelResult
from sutro_core.results.shape import shape_results

EMBED = "all-minilm-l6-v2"


@pytest.fixture
def so(sutro_client: SutroClient) -> SutroClient:
    return sutro_client


def _finished(so: SutroClient, job_id: str) -> None:
    so.await_job_completion(job_id, obtain_results=False, show_progress=False)


# ---- 7: infer's defaults, positional order, lists of models, the job id of an attached run ----------------


def test_infer_defaults_and_positional_order_are_the_docs():
    params = list(inspect.signature(SutroClient.infer).parameters.values())[1:]
    # infer(self, data, model='gpt-oss-20b', column=None, output_column='inference_result', job_priority=0,
    #       output_schema=None, system_prompt=None, dry_run=False, stay_attached=None, truncate_rows=True)
    positional = [(p.name, p.default) for p in params if p.kind is p.POSITIONAL_OR_KEYWORD][1:]
    assert positional == [("model", "gpt-oss-20b"), ("column", None), ("output_column", "inference_result"),
                          ("job_priority", 0), ("output_schema", None), ("system_prompt", None),
                          ("dry_run", False), ("stay_attached", None), ("truncate_rows", True)]


def test_infer_default_model_is_gpt_oss_20b(so):
    with pytest.raises(SutroAPIError, match="gpt-oss-20b"):  # not configured on the test server: it says so
        so.infer(["hello"], stay_attached=False)


def test_infer_eighth_positional_argument_is_dry_run(so):
    estimate = so.infer(["hello", "world"], EMBED, None, "inference_result", 0, None, None, True)
    assert isinstance(estimate, float) and estimate >= 0
    assert [j["cost_estimate"] is not None for j in so.list_jobs()] == [True]  # a dry run, nothing else


def test_list_of_models_with_lists_of_names_and_descriptions(so):
    ids = so.infer(["hi"], model=[EMBED, "slow-embed"], name=["run-a", "run-b"],
                   description=["first model", "second model"], stay_attached=False)
    assert isinstance(ids, list) and len(ids) == 2 and so.last_job_ids == tuple(ids)
    jobs = {j["job_id"]: j for j in so.list_jobs()}
    assert [(jobs[i]["model"], jobs[i]["name"], jobs[i]["description"]) for i in ids] == [
        (EMBED, "run-a", "first model"), ("slow-embed", "run-b", "second model")]
    with pytest.raises(InputValidationError, match="description"):
        so.infer(["hi"], model=[EMBED, "slow-embed"], description=["only one"], stay_attached=False)


def test_attached_infer_returns_the_frame_and_the_job_id_is_on_the_client(so, capfd):
    df = pl.DataFrame({"text": ["I love it", "Broken on arrival"]})
    out = so.infer(df, model=EMBED, column="text")  # priority 0: attached by default
    assert out.columns == ["text", "inference_result"] and out.height == 2
    job_id = so.last_job_id
    assert job_id and so.get_job(job_id)["status"] == "SUCCEEDED" and so.get_job(job_id)["num_rows"] == 2
    # 13: progress goes to stderr off a terminal, with input/output tokens and tokens/s, as the docs' bar
    err = capfd.readouterr().err
    assert f"Job {job_id}: 2/2 rows" in err and "Input tokens processed:" in err and "Total tokens/s:" in err


# ---- 8: typed records read as the SDK's dicts ------------------------------------------------------------


def test_list_jobs_get_quotas_and_cancel_job_read_as_dicts(so):
    job_id = so.infer([f"row {i}" for i in range(40)], model="slow-embed", stay_attached=False)
    jobs = so.list_jobs()
    assert jobs[0]["job_id"] == job_id and jobs[0]["status"] in ("QUEUED", "STARTING", "RUNNING")
    assert jobs[0]["datetime_created"] and jobs[0].get("no-such-field") is None and "job_id" in jobs[0]
    q = so.get_quotas()
    assert q[0]["row_quota"] == 1_000_000 and {x["job_priority"] for x in q} == {0, 1}
    assert dict(q[0])["job_priority"] == q[0].job_priority  # typed attributes still work
    resp = so.cancel_job(job_id)
    # the docs: "Returns: dict: The status of the job cancellation."
    assert isinstance(resp, dict) and resp["job_id"] == job_id and resp["status"] in ("CANCELLING", "CANCELLED")
    # ... and older typed code (the adapters) keeps working
    assert resp in (JobStatus.CANCELLING, JobStatus.CANCELLED) and resp.value == resp["status"]
    assert resp.status in (JobStatus.CANCELLING, JobStatus.CANCELLED) and f"now {resp}" == f"now {resp.value}"


def test_cancel_result_pickles_with_its_status():
    import pickle

    r = pickle.loads(pickle.dumps(CancelResult("job-1", {"job_id": "job-1", "status": "CANCELLED"})))
    assert r == JobStatus.CANCELLED and r.is_terminal and r == {"job_id": "job-1", "status": "CANCELLED"}
    assert r != JobStatus.CANCELLING


def test_run_function_with_a_dict_and_a_pydantic_model(so):
    result = so.run_function(name="ticket-triage", input_data={"text": "I was charged twice"})
    assert result["response"] == "billing" and result["predictions"][0]["label"] == "billing"
    assert isinstance(result["usage"]["system_prompt"], str)  # 3: the prompt's text
    assert "output" not in result and result.get("output") is None  # the classification shape

    class TicketInput(BaseModel):
        text: str

    assert so.run_function(name="ticket-triage", input_data=TicketInput(text="The app crashes")).label == "bug"
    with pytest.raises(InputValidationError, match="input_data"):  # a bare string: see docs/sdk-compatibility.md
        so.run_function("ticket-triage", "I forgot my password")


def test_run_function_mismatched_input_is_a_422(so):
    with pytest.raises(SutroAPIError) as err:
        so.run_function("ticket-triage", {"body": "wrong field"})
    assert err.value.status_code == 422 and err.value.code == "invalid_function_input" and "text" in err.value.detail


# ---- 9: batch_run_function's arguments ------------------------------------------------------------------


def test_batch_run_function_docs_examples(so, tmp_path: Path):
    rows = [{"text": "I was charged twice"}, {"text": "The app crashes on login"}]
    job_id = so.batch_run_function(name="ticket-triage", data=rows)
    results_df = so.await_job_completion(job_id)
    assert {"label", "rationale", "confidence_score"} <= set(results_df.columns)  # the docs' table
    assert results_df["label"].to_list() == ["billing", "bug"]

    job_id = so.batch_run_function(name="ticket-triage", data=pl.DataFrame({"text": ["Please add a dark mode"]}))
    pl.DataFrame(rows).write_csv(tmp_path / "inputs.csv")
    from_file = so.batch_run_function(name="ticket-triage", data=str(tmp_path / "inputs.csv"))
    assert so.await_job_completion(from_file)["label"].to_list() == ["billing", "bug"]

    raw_results_df = so.get_job_results(job_id, unpack_json=False)
    first_result = json.loads(raw_results_df["inference_result"][0])
    content = first_result.get("content", first_result)
    assert content["label"] == "feature_request" and first_result.get("reasoning_content") is None
    assert 0 < raw_results_df["confidence_score"][0] <= 1


def test_batch_run_function_positional_priority_dry_run_output_column_langsmith(so):
    rows = [{"text": "Refund my invoice"}]
    job_id = so.batch_run_function("ticket-triage", rows, 1, langsmith_metadata={"team": "support"},
                                   langsmith_tags=["nightly"])  # accepted; no-op without LangSmith tracing
    assert so.get_job(job_id)["job_priority"] == 1 and so.last_job_id == job_id
    estimate = so.batch_run_function("ticket-triage", rows, dry_run=True)
    assert isinstance(estimate, float)
    dry = [j for j in so.list_jobs() if j["cost_estimate"] is not None]
    assert len(dry) == 1 and dry[0]["model"] == "ticket-triage"
    # positional as in the docs: job_priority, output_column, dry_run, stay_attached
    attached = so.batch_run_function("ticket-triage", rows, 0, "triage", False, True)
    assert "label" in attached.columns  # JSON outputs unpack; output_column names the raw column
    raw = so.get_job_results(so.last_job_id, output_column="triage", unpack_json=False)
    assert "triage" in raw.columns


# ---- 10: with_original_df keeps a pandas frame's index and dtypes ------------------------------------------


def test_with_original_df_pandas_keeps_index_and_dtypes(so):
    original_df = pd.DataFrame({"text": ["I love it", "Meh", "Broken"], "n": [1, 2, 3]}, index=[10, 20, 30])
    job_id = so.infer(original_df, model=EMBED, column="text", stay_attached=False)
    _finished(so, job_id)
    df_with_results = so.get_job_results(job_id, with_original_df=original_df)
    assert isinstance(df_with_results, pd.DataFrame) and list(df_with_results.index) == [10, 20, 30]
    assert df_with_results["text"].dtype == original_df["text"].dtype and df_with_results["n"].dtype == "int64"
    joined = original_df.join(df_with_results[["inference_result"]])  # joining back on the index lines up
    assert len(joined.loc[20, "inference_result"]) == 384


def test_get_job_results_docs_shapes(so):
    job_id = so.infer(["What is the capital of France?", "Explain quantum computing"], model=EMBED,
                      stay_attached=False)
    _finished(so, job_id)
    assert so.get_job_results(job_id).columns == ["inference_result"]
    assert so.get_job_results(job_id, include_inputs=True).columns == ["inputs", "inference_result"]
    assert so.get_job_results(job_id, include_cumulative_logprobs=True).columns == [
        "inference_result", "cumulative_logprobs"]


# ---- 11: reasoning outputs as the SDK shapes them ------------------------------------------------------------


@pytest.mark.slow
def test_reasoning_outputs_content_and_reasoning_content(so):
    job_id = so.infer(["Is the sky blue?", "Name a colour"], model="tiny-llama-reasoning", stay_attached=False)
    _finished(so, job_id)
    raw = so.get_job_results(job_id, unpack_json=False)
    first_result = json.loads(raw["inference_result"][0])  # the docs' snippet
    assert set(first_result) == {"content", "reasoning_content"}
    # the tiny random model is always cut by max_tokens (finish_reason "length"), whose rows stay raw;
    # a complete answer unpacks as the SDK's: content + reasoning_content (unwrap: flattened content)
    complete = raw.rename({"inference_result": "outputs"}).drop("finish_reason", strict=False)
    assert shape_results(complete).columns[-2:] == ["content", "reasoning_content"]
    structured = pl.DataFrame({"outputs": [json.dumps({"content": {"colour": "blue"}, "reasoning_content": "sky"})]})
    assert shape_results(structured, unwrap_reasoning=True).to_dicts() == [{"reasoning_content": "sky",
                                                                            "colour": "blue"}]


# ---- 12: a dry run's results fail at once; only "not written yet" is retried --------------------------------


class _Counting(httpx.BaseTransport):
    """The real HTTP transport, counting results requests."""

    def __init__(self) -> None:
        self.inner, self.results_calls = httpx.HTTPTransport(), 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/results") or request.url.path.endswith("/job-results"):
            self.results_calls += 1
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_dry_run_job_results_raise_a_typed_error_at_once(sutro_server, sutro_key):
    counting = _Counting()
    with SutroClient(api_key=sutro_key, api_url=sutro_server.url, transport=counting) as so:
        so.infer(["hello"] * 3, model=EMBED, dry_run=True)
        [dry] = [j for j in so.list_jobs() if j["cost_estimate"] is not None]
        with pytest.raises(DryRunResultsError, match="cost estimate"):
            so.get_job_results(dry["job_id"])
    assert counting.results_calls == 0  # known from the job record: no results request, no retries


def test_results_retry_only_the_not_written_yet_answer():
    from sutro_core.protocol import is_transient

    assert is_transient(SutroAPIError(503, "wait", code="results_not_ready"), results=True)
    assert is_transient(SutroAPIError(409, "not yet"), results=True)  # no code: the hosted write window
    assert not is_transient(SutroAPIError(409, "estimate", code="dry_run_has_no_results"), results=True)
    assert not is_transient(SutroAPIError(404, "gone", code="job_not_found"), results=True)
    assert not is_transient(SutroAPIError(409, "not yet"), results=False)


# ---- 13: attach and await_job_completion say what happens, on stderr -------------------------------------


def test_attach_on_a_finished_job_says_so(so, capfd):
    job_id = so.infer(["hello"], model=EMBED, stay_attached=False)
    _finished(so, job_id)
    capfd.readouterr()
    assert so.attach(job_id)["status"] == "SUCCEEDED"
    captured = capfd.readouterr()
    assert f"Job {job_id} already SUCCEEDED" in captured.err and "get_job_results" in captured.err
    assert captured.out == ""  # stdout stays the caller's


def test_await_job_completion_prints_status_changes(so, capfd):
    job_id = so.infer(["hello", "world"], model=EMBED, stay_attached=False)
    results = so.await_job_completion(job_id, timeout=120)
    assert results.height == 2
    assert f"Job status is SUCCEEDED for {job_id}" in capfd.readouterr().err
    so.await_job_completion(job_id, show_progress=False)
    assert capfd.readouterr().err == ""
