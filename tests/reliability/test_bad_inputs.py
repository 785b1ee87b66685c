"""A table of bad inputs across the client, the server and the three adapters: each one gets a
clear typed error (or a 4xx JSON error) that names the field, never a 5xx, a hang or a job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import polars as pl
import pytest

from sutro_core import (
    AuthenticationError,
    BatchJobRequest,
    InputValidationError,
    JobFailedError,
    NotFoundError,
    SutroAPIError,
    SutroClient,
)

from .conftest import FAST_RETRY

EMBED = "all-minilm-l6-v2"


@dataclass(frozen=True)
class Case:
    """One bad input: ``run(env)`` must raise ``error`` whose message contains ``needle``."""

    id: str
    run: Callable[["Env"], Any]
    error: type[BaseException] | tuple[type[BaseException], ...]
    needle: str


@dataclass
class Env:
    client: SutroClient
    url: str
    key: str
    tmp: Any

    def http(self, method: str, path: str, *, auth: str | None = None, headers: dict[str, str] | None = None,
             **kw: Any) -> httpx.Response:
        """A raw request; raises SutroAPIError for a 4xx so the table reads one way (5xx fail the test)."""
        headers = {"Authorization": auth or f"Key {self.key}", **(headers or {})}
        r = httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)
        assert r.status_code < 500, f"{method} {path} answered {r.status_code}: {r.text[:300]}"
        if r.status_code >= 400:
            body = r.json()
            assert body.get("detail") and body.get("code") and body.get("request_id"), body
            raise SutroAPIError(r.status_code, body["detail"], code=body["code"])
        return r


def _non_utf8_csv(env: Env) -> str:
    path = env.tmp / "latin1.csv"
    path.write_bytes("text\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    return str(path)


def _infer(**kw: Any) -> Callable[[Env], Any]:
    def run(env: Env) -> Any:
        args = {"model": EMBED, "stay_attached": False, **kw}
        data = args.pop("data", ["ok"])
        return env.client.infer(data(env) if callable(data) else data, **args)

    return run


def _dagster(builder: str, **kw: Any) -> Callable[[Env], Any]:
    def run(env: Env) -> Any:
        import dagster_sutro.assets as assets

        return getattr(assets, builder)(**kw)

    return run


def _airflow_operator(**kw: Any) -> Callable[[Env], Any]:
    def run(env: Env) -> Any:
        from airflow_provider_sutro.operators.sutro import SutroBatchInferenceOperator

        return SutroBatchInferenceOperator(task_id="t", inputs=["x"], output_uri="/tmp/x.parquet", model=EMBED, **kw)

    return run


def _airflow_io(fn: str, value: Any) -> Callable[[Env], Any]:
    def run(env: Env) -> Any:
        import airflow_provider_sutro.io as io

        return getattr(io, fn)(value)

    return run


def _prefect_flow_both(env: Env) -> Any:
    from prefect_sutro.credentials import SutroCredentials
    from prefect_sutro.flows import sutro_batch_job

    creds = SutroCredentials(api_key=env.key, api_url=env.url)
    return asyncio.run(sutro_batch_job.fn(["x"], str(env.tmp / "o.parquet"), creds, model=EMBED,
                                          function_name="ticket-triage"))


def _prefect_bad_credentials(env: Env) -> Any:
    from prefect_sutro.tasks import _check_credentials

    return _check_credentials("sk-just-a-string")


CASES = [
    # ---- client: data ----
    Case("empty list", _infer(data=[]), InputValidationError, "no rows given"),
    Case("empty DataFrame", _infer(data=pl.DataFrame({"text": []}, schema={"text": pl.Utf8}), column="text"),
         InputValidationError, "no rows"),
    Case("missing column", _infer(data=pl.DataFrame({"body": ["a"]}), column="text"), InputValidationError, "column"),
    Case("wrong row types", _infer(data=[1, 2, 3]), InputValidationError, "data"),
    Case("None row", _infer(data=["a", None]), InputValidationError, "data"),
    Case("missing input file", _infer(data="/no/such/file.csv", column="text"), InputValidationError, "does not exist"),
    Case("non-UTF-8 CSV", _infer(data=_non_utf8_csv, column="text"), InputValidationError, "UTF-8"),
    Case("URL of a .txt file", _infer(data="https://example.com/rows.txt", column="text"), InputValidationError, "URL"),
    Case("URL without column", _infer(data="https://example.com/rows.csv"), InputValidationError, "column"),
    # ---- client: job settings ----
    Case("unknown model", _infer(model="gpt-17"), SutroAPIError, "available models"),
    Case("empty model", _infer(model=""), InputValidationError, "model"),
    Case("name over 45 chars", _infer(name="n" * 46), InputValidationError, "name"),
    Case("description over 512 chars", _infer(description="d" * 600), InputValidationError, "description"),
    Case("job_priority 7", _infer(job_priority=7), (SutroAPIError, InputValidationError), "job_priority"),
    Case("sampling_params a list", _infer(sampling_params=[1]), InputValidationError, "sampling_params"),
    Case("output_schema a string", _infer(output_schema="json please"), InputValidationError, "output_schema"),
    Case("malformed JSON schema", _infer(model="tiny-llama", output_schema={"type": "nope"}), (SutroAPIError, InputValidationError),
         "JSON Schema"),
    Case("oversized row, no truncation",
         lambda env: env.client.await_job_completion(
             env.client.infer(["word " * 2000], model=EMBED, truncate_rows=False, stay_attached=False),
             timeout=120, obtain_results=False),
         JobFailedError, "row"),
    # ---- client: Functions ----
    Case("unknown Function (batch)", lambda env: env.client.batch_run_function("no-such-fn", [{"text": "x"}]),
         SutroAPIError, "no-such-fn"),
    Case("unknown Function (run)", lambda env: env.client.run_function("no-such-fn", {"text": "x"}), NotFoundError,
         "no-such-fn"),
    Case("Function input not a dict", lambda env: env.client.run_function("ticket-triage", "text"),
         InputValidationError, "input_data"),
    Case("Function rows missing a field", lambda env: env.client.batch_run_function("ticket-triage", [{"body": "x"}]),
         (SutroAPIError, InputValidationError), "text"),
    # ---- client: results and credentials ----
    Case("invalid result format", lambda env: env.client.download_results("job-x", env.tmp / "o.xml", format="xml"),
         InputValidationError, "format"),
    Case("destination is a folder", lambda env: env.client.download_results("job-x", env.tmp), InputValidationError,
         "destination"),
    Case("unknown job id", lambda env: env.client.get_job("job-doesnotexist"), NotFoundError, "job-doesnotexist"),
    Case("bad API key", lambda env: SutroClient(api_key="sk-wrong", api_url=env.url).list_jobs(), AuthenticationError,
         "invalid API key"),
    Case("bad API URL", lambda env: SutroClient(api_key=env.key, api_url="http://127.0.0.1:9", retry=FAST_RETRY).list_jobs(),
         Exception, "127.0.0.1:9"),
    # ---- server: raw HTTP ----
    Case("server: body not JSON", lambda env: env.http("POST", "/batch-inference", content=b"{oops",
                                                       headers={"content-type": "application/json"}),
         SutroAPIError, ""),
    Case("server: body not UTF-8", lambda env: env.http("POST", "/batch-inference", content=b'{"model": "\xff\xfe"}',
                                                        headers={"content-type": "application/json"}),
         SutroAPIError, ""),
    Case("server: file:// URL inputs", lambda env: env.http("POST", "/batch-inference", json={
        "model": EMBED, "inputs": "file:///etc/passwd", "column_name": "text"}), SutroAPIError, "http(s) URL"),
    Case("server: unreachable URL inputs", lambda env: env.http("POST", "/batch-inference", json={
        "model": EMBED, "inputs": "http://127.0.0.1:9/rows.csv", "column_name": "text"}), SutroAPIError, "inputs"),
    Case("server: invalid result_format", lambda env: env.http("GET", "/jobs/job-x/results?result_format=xml"),
         SutroAPIError, "result_format"),
    Case("server: expires_in_seconds 0", lambda env: env.http("GET", "/jobs/job-x/results-url?expires_in_seconds=0"),
         SutroAPIError, "expires_in_seconds"),
    Case("server: 10k-char job name", lambda env: env.http("POST", "/batch-inference", json={
        "model": EMBED, "inputs": ["x"], "name": "n" * 10_000}), SutroAPIError, "name"),
    Case("server: 10k-char Function name", lambda env: env.http("POST", f"/functions/{'f' * 10_000}/run",
                                                                json={"input": {"text": "x"}}),
         SutroAPIError, ""),
    Case("server: Function input not an object", lambda env: env.http("POST", "/functions/ticket-triage/run",
                                                                      json={"input": 42}),
         SutroAPIError, "input"),
    Case("server: malformed Function definition", lambda env: env.http("POST", "/functions", json={
        "name": "bad", "type": "classification", "inputs": ["text"], "labels": "not a list"}), SutroAPIError, ""),
    Case("server: job-results without job_id", lambda env: env.http("POST", "/job-results", json={"id": "x"}),
         SutroAPIError, "job_id"),
    Case("server: Authorization without a key", lambda env: env.http("GET", "/list-jobs", auth="Bearer"),
         SutroAPIError, "Authorization: Key <api key>"),
    # ---- adapters ----
    Case("dagster: empty model", _dagster("build_sutro_inference_asset", name="a", upstream="u", model=""),
         ValueError, "model"),
    Case("dagster: empty Function", _dagster("build_sutro_function_asset", name="a", upstream="u", function=""),
         ValueError, "function"),
    Case("dagster: negative cost limit", _dagster("build_sutro_inference_asset", name="a", upstream="u", model=EMBED,
                                                  max_cost_usd=-1), ValueError, "max_cost_usd"),
    Case("dagster: CSV path upstream", lambda env: __import__("dagster_sutro.assets").assets.rows_to_frame("rows.csv"),
         InputValidationError, "upstream"),
    Case("airflow: zero timeout", _airflow_operator(timeout=0), ValueError, "timeout"),
    Case("airflow: negative cost limit", _airflow_operator(max_cost_usd=-5), ValueError, "max_cost_usd"),
    Case("airflow: empty output_uri", _airflow_io("output_uri_to_str", ""), InputValidationError, "output_uri"),
    Case("airflow: no inputs", _airflow_io("resolve_inputs", None), InputValidationError, "inputs"),
    Case("prefect: model and Function both given", _prefect_flow_both, InputValidationError, "model/function_name"),
    Case("prefect: credentials not a block", _prefect_bad_credentials, TypeError, "sutro_credentials"),
]


def test_the_table_is_broad():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_clear_typed_error(case, sutro_server, sutro_key, sutro_client, tmp_path, tally):
    env = Env(sutro_client, sutro_server.url, sutro_key, tmp_path)
    with pytest.raises(case.error) as err:
        case.run(env)
    tally["bad inputs tried"] += 1
    message = str(err.value)
    assert case.needle in message, f"{case.id}: {message!r} does not name {case.needle!r}"
    if isinstance(err.value, SutroAPIError):
        assert 400 <= err.value.status_code < 500, message
    if case.error is not JobFailedError:
        # nothing billable was created by a rejected input
        assert sutro_client.list_jobs() == [], f"{case.id} created a job"
