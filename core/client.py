"""``SutroClient``: the synchronous client (httpx.Client transport).

Example:
    >>> from sutro_core import SutroClient
    >>> with SutroClient() as client:                       # SUTRO_API_KEY / SUTRO_API_URL
    ...     job_id = client.infer(["I love it", "Broken"], model="all-minilm-l6-v2", stay_attached=False)
    ...     client.await_job_completion(job_id, obtain_results=False).status
    <JobStatus.SUCCEEDED: 'SUCCEEDED'>
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx

from . import operations as ops, protocol
from ._base import ClientBase
from .models import FunctionResult, Job, JobStatus, Quota, ResultsManifest, Submission
from .operations import Blocking, Lines, Op, Sleep
from .protocol import Call
from .request import BatchJobRequest
from .retrying import PollPolicy, RetryPolicy

T = TypeVar("T")


def _timeout(call: Call[Any], default: float) -> httpx.Timeout:
    return httpx.Timeout(call.timeout if call.timeout is not None else default, connect=min(default, 30.0))


class SutroClient(ClientBase):
    """Synchronous Sutro client. Every failure raises a ``SutroError``; nothing prints.

    Args:
        api_key: falls back to ``SUTRO_API_KEY``, then ``~/.sutro/config.json``.
        api_url: falls back to ``SUTRO_API_URL``, then the config file, then https://api.sutro.sh.
        timeout: per-request timeout in seconds.
        retry: how reads are retried (submits never are).
        poll: how ``await_job_completion`` polls.
        transport: an ``httpx.BaseTransport`` (tests use ``httpx.MockTransport`` for faults).
    """

    def __init__(
        self,
        api_key: str | None = None,
        api_url: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(api_key, api_url, timeout=timeout, retry=retry, poll=poll)
        self._http = httpx.Client(base_url=self.api_url + "/", headers=self._headers(), timeout=timeout,
                                  transport=transport)

    # ---- driving operations ----------------------------------------------------------------------

    def _run(self, op: Op[T]) -> T:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = op.throw(error) if error is not None else op.send(value)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            try:
                value = self._perform(effect)
            except Exception as exc:  # handed to the operation, which decides (retry, clean up, raise)
                error = exc

    def _perform(self, effect: Any) -> Any:
        if isinstance(effect, Sleep):
            time.sleep(max(0.0, effect.seconds))
            return None
        if isinstance(effect, Blocking):
            return effect.fn()
        if isinstance(effect, Lines):
            return self._stream_lines(effect)
        call: Call[Any] = effect
        if call.stream_to is None:
            return self._http.request(call.method, call.path, params=call.params, json=call.json,
                                      timeout=_timeout(call, self.timeout))
        with self._http.stream(call.method, call.path, params=call.params, json=call.json,
                               timeout=_timeout(call, self.timeout)) as response:
            if not response.is_success:
                response.read()
                return response
            with open(call.stream_to, "wb") as fh:
                # No chunk_size: httpx would re-buffer every 64 KiB read into 1 MiB chunks (an extra
                # copy; measured 1.37x vs 1.06x of curl on a 38 MB file, benchmarks/results_download.py).
                for chunk in response.iter_bytes():
                    fh.write(chunk)
            return response

    def _stream_lines(self, effect: Lines) -> None:
        call = effect.call
        with self._http.stream(call.method, call.path, timeout=httpx.Timeout(60.0, connect=10.0)) as response:
            if not response.is_success:
                response.read()
                raise protocol.error_from_response(response)
            for line in response.iter_lines():
                if line.strip():
                    effect.on_line(json.loads(line))

    # ---- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> "SutroClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- jobs ------------------------------------------------------------------------------------

    def infer(
        self,
        data: Any,
        model: str | Sequence[str] = "qwen-3-4b",
        column: str | Sequence[str] | None = None,
        output_column: str = "inference_result",
        job_priority: int = 0,
        output_schema: Any = None,
        system_prompt: str | None = None,
        sampling_params: dict[str, Any] | None = None,
        random_seed_per_input: bool = False,
        dry_run: bool = False,
        stay_attached: bool | None = None,
        truncate_rows: bool = True,
        name: str | Sequence[str] | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Run batch inference, as the official SDK's ``infer``.

        ``data``: list of str, pandas/polars DataFrame, a .csv/.parquet/.txt path or an http(s) URL.
        ``column``: the text column, or a list of columns and literal separators to concatenate.
        ``output_schema``: a JSON schema dict or pydantic model class (outputs unpack to columns).
        Returns the job id; the results DataFrame when attached (default for priority 0); the cost
        estimate when ``dry_run``; a list of job ids when ``model`` is a list.

        Example:
            >>> client.infer(df, model="qwen-3-4b", column=["title", ": ", "body"], stay_attached=False)
            'job-...'
        """
        return self._run(self._infer_op(
            data, model, column, output_column, job_priority, output_schema, system_prompt, sampling_params,
            random_seed_per_input, dry_run, stay_attached, truncate_rows, name, description, idempotency_key,
        ))

    def submit_job(
        self,
        request: BatchJobRequest,
        idempotency_key: str | None = None,
        *,
        reattach: bool = True,
        max_cost_usd: float | None = None,
        estimate_cost: bool = False,
    ) -> Submission:
        """Submit ``request`` once, or reattach to the job carrying ``idempotency_key``.

        Never retries the submit; a lost response is recovered through the key (see
        ``operations.submit_job``). A job about to be submitted (not a reattach) is dry-run first
        when ``max_cost_usd`` is set (``CostLimitExceededError`` above it, nothing billed) or
        ``estimate_cost`` is true; the estimate is on ``Submission.cost_estimate``.

        Example:
            >>> req = BatchJobRequest.for_inference(rows, model="all-minilm-l6-v2")
            >>> sub = client.submit_job(req, idempotency_key(run_id, fingerprint=req.fingerprint), max_cost_usd=5)
        """
        return self._run(self._submit_op(request, idempotency_key, reattach, max_cost_usd, estimate_cost))

    def find_job(self, idempotency_key: str) -> Job | None:
        """The newest job submitted with ``idempotency_key``, or None.

        Example:
            >>> client.find_job(key).status
        """
        return self._run(ops.find_job(self.retry, idempotency_key))

    def attach(self, job_id: str, *, show_progress: bool | None = None) -> Job:
        """Follow a job's live progress (tqdm on a terminal, log lines otherwise) until it ends.

        Returns the SUCCEEDED job; raises ``JobFailedError`` / ``JobCancelledError``.

        Example:
            >>> client.attach(job_id).output_tokens
        """
        return self._run(self._attach_op(job_id, show_progress))

    def await_job_completion(
        self,
        job_id: str,
        timeout: float | None = 7200,
        obtain_results: bool = True,
        *,
        deadline: float | datetime | None = None,
        on_status: Callable[[JobStatus], None] | None = None,
        **results_kwargs: Any,
    ) -> Any:
        """Wait for the job with backoff polling against a wall-clock deadline.

        Returns the results DataFrame (``obtain_results=True``, accepting ``get_job_results``'s
        arguments) or the SUCCEEDED ``Job``. Raises ``JobFailedError`` (with the server's reason),
        ``JobCancelledError`` or ``JobTimeoutError``.

        Example:
            >>> job = client.await_job_completion(job_id, timeout=3600, obtain_results=False)
        """
        return self._run(self._wait_op(job_id, timeout, deadline, on_status, obtain_results, results_kwargs))

    def get_job(self, job_id: str) -> Job:
        """The job's full record (status, rows, tokens, cost, failure reason).

        Example:
            >>> client.get_job(job_id).failure_reason
        """
        return self._run(ops.get_job(self.retry, job_id))

    def get_job_status(self, job_id: str) -> JobStatus:
        """The job's current status.

        Example:
            >>> client.get_job_status(job_id).is_terminal
        """
        return self._run(ops.send(self.retry, protocol.get_job_status_call(job_id)))

    def list_jobs(self) -> list[Job]:
        """All jobs visible to this API key.

        Example:
            >>> [j.job_id for j in client.list_jobs() if j.status is JobStatus.RUNNING]
        """
        return self._run(ops.send(self.retry, protocol.list_jobs_call()))

    def cancel_job(self, job_id: str) -> JobStatus:
        """Ask the service to cancel the job; returns its new status (CANCELLING or CANCELLED).

        Example:
            >>> client.cancel_job(job_id)
        """
        return self._run(ops.send(self.retry, protocol.cancel_job_call(job_id)))

    def get_quotas(self) -> list[Quota]:
        """Row and token quotas per priority.

        Example:
            >>> {q.job_priority: q.row_quota for q in client.get_quotas()}
        """
        return self._run(ops.send(self.retry, protocol.get_quotas_call()))

    def check_auth(self) -> dict[str, Any]:
        """Validate the API key (raises ``AuthenticationError`` when it is bad).

        Example:
            >>> client.check_auth()
        """
        return self._run(ops.send(self.retry, protocol.check_auth_call()))

    def estimate_cost(self, request: BatchJobRequest) -> float:
        """Dry-run ``request`` and return its cost estimate in dollars (nothing billed is submitted).

        Example:
            >>> client.estimate_cost(BatchJobRequest.for_inference(rows, model="qwen-3-4b"))
            0.42
        """
        return self._run(ops.estimate_cost_op(self.retry, self.poll, request))

    def check_cost(self, request: BatchJobRequest, max_cost_usd: float) -> float:
        """Dry-run ``request``; raise ``CostLimitExceededError`` if the estimate exceeds ``max_cost_usd``.

        Example:
            >>> client.check_cost(req, max_cost_usd=5.0)
            0.42
        """
        return self._run(self._check_cost_op(request, max_cost_usd))

    # ---- results ---------------------------------------------------------------------------------

    def get_job_results(
        self,
        job_id: str,
        include_inputs: bool = False,
        include_cumulative_logprobs: bool = False,
        with_original_df: Any = None,
        output_column: str = "inference_result",
        unpack_json: bool = True,
        unwrap_reasoning: bool = False,
    ) -> Any:
        """The results as a polars DataFrame (pandas when ``with_original_df`` is pandas).

        JSON outputs unpack into columns; reasoning outputs keep ``reasoning_content``.

        Example:
            >>> client.get_job_results(job_id, with_original_df=df)
        """
        return self._run(self._results_op(job_id, include_inputs, include_cumulative_logprobs, with_original_df,
                                          output_column, unpack_json, unwrap_reasoning))

    def download_results(
        self,
        job_id: str,
        destination: Any,
        format: str = "parquet",
        include_inputs: bool = False,
        include_cumulative_logprobs: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> ResultsManifest:
        """Stream the results file to a local path or fsspec URI in constant memory, atomically.

        Parquet files carry the job id, model, row count and created time in their footer.
        ``storage_options`` go to fsspec for remote URIs (e.g. credentials from an Airflow connection).

        Example:
            >>> client.download_results(job_id, "s3://bucket/run-1/results.parquet").rows
        """
        return self._run(self._download_op(job_id, destination, format, include_inputs, include_cumulative_logprobs,
                                           storage_options))

    # ---- Functions -------------------------------------------------------------------------------

    def run_function(self, name: str, input_data: Any, *, confidence_scoring: bool | None = None) -> FunctionResult:
        """Run a published Function on one input, synchronously.

        Example:
            >>> client.run_function("ticket-triage", {"text": "I was charged twice"}).label
            'billing'
        """
        body = self._function_input(name, input_data)
        return self._run(ops.send(self.retry, protocol.run_function_call(name, body, confidence_scoring)))

    def batch_run_function(
        self,
        name: str,
        data: Any,
        *,
        columns: Sequence[str] | None = None,
        job_priority: int = 0,
        stay_attached: bool = False,
        job_name: str | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Run a Function over many rows as a batch job; returns the job id (results when attached).

        ``data``: list of dicts, pandas/polars DataFrame, .csv/.parquet path or URL.

        Example:
            >>> job_id = client.batch_run_function("ticket-triage", tickets_df, columns=["text"])
        """
        return self._run(self._batch_function_op(name, data, columns, job_priority, stay_attached, job_name,
                                                 description, idempotency_key))
