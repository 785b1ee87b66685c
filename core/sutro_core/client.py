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
from collections.abc import Callable, Generator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx

from . import lifecycle, operations as ops, protocol
from ._base import ClientBase, shared_ssl_context
from .watchdog import SocketWatchdog
from . import compat, tracing
from .models import CancelResult, FunctionResult, Job, JobStatus, Quota, ResultsManifest, Submission
from .operations import Blocking, Lines, Op, Sleep
from .protocol import Call
from .lifecycle import DEFAULT_DOWNLOAD_TIMEOUT_S, JobHandle, JobOutcome, JobSpec
from .request import BatchJobRequest
from .retrying import DeadlineReached, PollPolicy, RetryPolicy

T = TypeVar("T")


def _timeout(call: Call[Any], default: float) -> httpx.Timeout:
    """The call's httpx timeouts, none longer than what is left before its deadline."""
    seconds = call.timeout if call.timeout is not None else default
    connect = min(default, 30.0)
    left = call.seconds_left()
    if left is not None:
        seconds, connect = min(seconds, left), min(connect, left)
    return httpx.Timeout(seconds, connect=connect)


def _past(call: Call[Any]) -> bool:
    # A little slack: an httpx timeout set to "what is left" fires a hair before the deadline.
    return call.deadline is not None and time.time() >= call.deadline - 0.05


def _watchdog(response: httpx.Response, deadline: float | None) -> SocketWatchdog:
    stream = response.extensions.get("network_stream")
    return SocketWatchdog(stream.get_extra_info("socket") if stream is not None else None, deadline)


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
                                  transport=transport, verify=shared_ssl_context())

    # ---- driving operations ----------------------------------------------------------------------

    def _run(self, op: Op[T]) -> T:
        value: Any = None
        error: BaseException | None = None
        try:
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
        finally:
            # Stopped early (an interrupt, an error): the operation's own clean-up runs now, not at GC
            # (httpx's auth flow is driven the same way).
            op.close()

    def _perform(self, effect: Any) -> Any:
        if isinstance(effect, Sleep):
            time.sleep(max(0.0, effect.seconds))
            return None
        if isinstance(effect, Blocking):
            return effect.fn()
        if isinstance(effect, Lines):
            return self._stream_lines(effect)
        call: Call[Any] = effect
        try:
            return self._send(call)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            if _past(call):
                raise DeadlineReached(f"{call.method} {call.path}: past the deadline") from exc
            raise

    def _send(self, call: Call[Any]) -> httpx.Response:
        if call.stream_to is None and call.deadline is None:
            return self._http.request(call.method, call.path, params=call.params, json=call.json,
                                      timeout=_timeout(call, self.timeout))
        with self._http.stream(call.method, call.path, params=call.params, json=call.json,
                               timeout=_timeout(call, self.timeout)) as response:
            watchdog = _watchdog(response, call.deadline)
            try:
                if call.stream_to is None or not response.is_success:
                    response._content = b"".join(self._chunks(response, call))  # what Response.read() does
                    return response
                with open(call.stream_to, "wb") as fh:
                    for chunk in self._chunks(response, call):
                        fh.write(chunk)
                return response
            except httpx.TransportError as exc:
                if watchdog.fired:
                    raise DeadlineReached(f"{call.method} {call.path}: the body did not arrive in time") from exc
                raise
            finally:
                watchdog.stop()

    @staticmethod
    def _chunks(response: httpx.Response, call: Call[Any]) -> Any:
        # No chunk_size: httpx would re-buffer every 64 KiB read into 1 MiB chunks (an extra copy;
        # measured 1.37x vs 1.06x of curl on a 38 MB file, benchmarks/results_download.py).
        for chunk in response.iter_bytes():
            if call.deadline is not None and time.time() > call.deadline:
                raise DeadlineReached(f"{call.method} {call.path}: the body did not arrive in time")
            yield chunk

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
        model: str | Sequence[str] = "gpt-oss-20b",
        column: str | Sequence[str] | None = None,
        output_column: str = "inference_result",
        job_priority: int = 0,
        output_schema: Any = None,
        system_prompt: str | None = None,
        dry_run: bool = False,
        stay_attached: bool | None = None,
        truncate_rows: bool = True,
        *,
        sampling_params: dict[str, Any] | None = None,
        random_seed_per_input: bool = False,
        name: str | Sequence[str] | None = None,
        description: str | Sequence[str] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Run batch inference, as the docs' ``infer`` (same defaults and positional order).

        ``data``: list of str, pandas/polars DataFrame, a .csv/.parquet/.txt path or an http(s) URL.
        ``column``: the text column, or a list of columns and literal separators to concatenate.
        ``output_schema``: a JSON schema dict or pydantic model class (outputs unpack to columns).
        ``name`` / ``description``: a string, or one per model when ``model`` is a list.
        Returns the job id; the results DataFrame when attached (default for priority 0); the cost
        estimate when ``dry_run``; a list of job ids when ``model`` is a list. The job id of an
        attached run is on ``client.last_job_id``.

        Example:
            >>> client.infer(df, model="qwen-3-4b", column=["title", ": ", "body"], stay_attached=False)
            'job-...'
        """
        return self._run(self._infer_op(
            data, model, column, output_column, job_priority, output_schema, system_prompt, sampling_params,
            random_seed_per_input, dry_run, stay_attached, truncate_rows, name, description, idempotency_key,
        ))  # fmt: skip

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
        """Follow a job's live progress on stderr until it ends: a bar on a terminal, a line every 10 s
        otherwise; a job that already ended is announced as such. ``show_progress=False``: silent.

        Returns the SUCCEEDED job; raises ``JobFailedError`` / ``JobCancelledError``.

        Example:
            >>> client.attach(job_id).output_tokens
        """
        if show_progress is not False:
            compat.announce_if_finished(self.get_job(job_id))
        return self._run(self._attach_op(job_id, show_progress))

    def await_job_completion(
        self,
        job_id: str,
        timeout: float | None = 7200,
        obtain_results: bool = True,
        *,
        deadline: float | datetime | None = None,
        on_status: Callable[[JobStatus], None] | None = None,
        show_progress: bool = True,
        **results_kwargs: Any,
    ) -> Any:
        """Wait for the job with backoff polling against a wall-clock deadline.

        Returns the results DataFrame (``obtain_results=True``, accepting ``get_job_results``'s
        arguments) or the SUCCEEDED ``Job``. Raises ``JobFailedError`` (with the server's reason),
        ``JobCancelledError`` or ``JobTimeoutError``. Each status change is printed to stderr, as the
        SDK does, unless ``on_status`` is given (it gets them instead) or ``show_progress=False``.

        Example:
            >>> job = client.await_job_completion(job_id, timeout=3600, obtain_results=False)
        """
        if on_status is None and show_progress:
            on_status = compat.status_printer(job_id)
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

    def cancel_job(self, job_id: str) -> CancelResult:
        """Ask the service to cancel the job.

        Returns the docs' dict (the server's answer, ``r["status"]``) which also acts as the job's new
        ``JobStatus`` (``r == JobStatus.CANCELLING``, ``r.value``, ``r.is_terminal``).

        Example:
            >>> client.cancel_job(job_id) in (JobStatus.CANCELLING, JobStatus.CANCELLED)
            True
        """
        return self._run(ops.send(self.retry, compat.cancel_job_call(job_id)))

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
        *,
        disable_cache: bool = False,  # accepted for SDK code; this client keeps no local results cache
    ) -> Any:
        """The results as a polars DataFrame (pandas when ``with_original_df`` is pandas).

        JSON outputs unpack into columns, as the SDK: reasoning outputs give ``content`` and
        ``reasoning_content``; ``unwrap_reasoning=True`` flattens object ``content`` into columns.
        A dry-run job raises ``DryRunResultsError`` at once.

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
        timeout: float | None = DEFAULT_DOWNLOAD_TIMEOUT_S,
    ) -> ResultsManifest:
        """Stream the results file to a local path or fsspec URI in constant memory, atomically.

        Parquet files carry the job id, model, row count and created time in their footer.
        ``storage_options`` go to fsspec for remote URIs (e.g. credentials from an Airflow connection).
        ``timeout`` bounds the whole download (a hung or trickling server raises ``JobTimeoutError``).

        Example:
            >>> client.download_results(job_id, "s3://bucket/run-1/results.parquet").rows
        """
        return self._run(self._download_op(job_id, destination, format, include_inputs, include_cumulative_logprobs,
                                           storage_options, timeout))

    # ---- the job lifecycle: start / wait / finish / cancel, and run (all four) --------------------

    def start(self, spec: JobSpec, *, scope: Sequence[Any] | None = None,
              idempotency_key: str | None = None) -> JobHandle:
        """Start the step's job: reattach to the live job of an earlier try (same scope and inputs), else
        cost-gate and submit it once, close the same-key race, and cancel a live job of the same scope
        whose inputs changed. Record the returned handle before waiting.

        Example:
            >>> handle = client.start(spec, scope=("airflow", dag_id, task_id, run_id, map_index))
        """
        return self._run(self._start_op(spec, scope, idempotency_key))

    def wait(self, handle: JobHandle | dict[str, Any], *,
             on_status: Callable[[JobStatus], None] | None = None) -> Job:
        """Wait until the job SUCCEEDED, within the handle's deadline (every request is bounded by what is
        left). At the deadline the job is cancelled (unless the spec opted out) and ``JobTimeoutError``
        raised; ``JobFailedError`` / ``JobCancelledError`` when it ends otherwise.

        Example:
            >>> job = client.wait(handle)
        """
        return self._run(self._lifecycle_wait_op(handle, on_status))

    def finish(self, handle: JobHandle | dict[str, Any], *, carry: Any = None, destination: Any = None,
               storage_options: dict[str, Any] | None = None,
               timeout: float | None = DEFAULT_DOWNLOAD_TIMEOUT_S) -> ResultsManifest:
        """Write the job's results as the one artifact shape (carried input columns, unpacked outputs,
        ``sutro.*`` footer) to ``destination`` or the spec's ``output_uri``, streamed and atomic.

        Example:
            >>> manifest = client.finish(handle, carry=spec.carry)
        """
        return self._run(self._finish_op(handle, carry, destination, storage_options, timeout))

    def cancel(self, handle: JobHandle | dict[str, Any] | str, *, reason: str = "it was asked to") -> bool:
        """Cancel the job unless it is terminal; True when the service accepted. Bounded (20 s); never
        raises a ``SutroError`` (a warning says the job may still run).

        Example:
            >>> client.cancel(handle, reason="the task was killed")
        """
        return self._run(self._cancel_op(handle, reason))

    def run(self, spec: JobSpec, *, scope: Sequence[Any] | None = None, idempotency_key: str | None = None,
            on_handle: Callable[[JobHandle], None] | None = None,
            on_status: Callable[[JobStatus], None] | None = None, destination: Any = None,
            storage_options: dict[str, Any] | None = None) -> JobOutcome:
        """The whole step: ``start``, ``on_handle(handle)`` (record it durably), ``wait``, ``finish``.

        An interruption (KeyboardInterrupt, SystemExit, an orchestrator's termination) cancels the job
        unless ``spec.cancel_on_interrupt`` is False, then re-raises; ordinary errors never cancel.

        Example:
            >>> outcome = client.run(spec, scope=("dagster", "asset", "2026-12-01", run_id), on_handle=record)
            >>> outcome.manifest.uri
        """
        stages = self.stages(spec, scope=scope, idempotency_key=idempotency_key, on_status=on_status,
                             destination=destination, storage_options=storage_options)
        handle = next(stages)
        try:
            if on_handle is not None:
                on_handle(handle)
        except BaseException as exc:  # the stages decide: an interruption cancels, an error does not
            stages.throw(exc)
        try:
            next(stages)
        except StopIteration as done:
            return done.value
        raise RuntimeError("JobStages yielded twice")  # pragma: no cover - stages yields once

    def stages(self, spec: JobSpec, *, scope: Sequence[Any] | None = None, idempotency_key: str | None = None,
               on_status: Callable[[JobStatus], None] | None = None, destination: Any = None,
               storage_options: dict[str, Any] | None = None) -> Generator[JobHandle, None, JobOutcome]:
        """``run`` as a generator: it yields the handle once the job is started (so an orchestrator can
        record it in its own event stream, e.g. a Dagster asset's ``yield``), then waits and finishes and
        returns the ``JobOutcome``. An interruption thrown in or raised while waiting cancels the job
        (unless ``spec.cancel_on_interrupt`` is False); a generator closed unfinished cancels nothing.

        Example:
            >>> stages = client.stages(spec, scope=scope)
            >>> handle = next(stages)          # record it
            >>> outcome = next(stages, None)   # doctest: +SKIP  (StopIteration.value holds the outcome)
        """
        key, _ = lifecycle.step_key(spec, scope, idempotency_key)
        handle: JobHandle | None = None
        try:
            handle = self.start(spec, scope=scope, idempotency_key=key)
            yield handle
            job = self.wait(handle, on_status=on_status)
            manifest = self.finish(handle, carry=spec.carry, destination=destination, storage_options=storage_options)
        except GeneratorExit:
            raise
        except BaseException as exc:
            if self._interrupted(exc, spec):
                self._run(self._cancel_interrupted_op(handle, key))
            raise
        return JobOutcome(handle=handle, job=job, manifest=manifest)

    # ---- Functions -------------------------------------------------------------------------------

    def run_function(
        self,
        name: str,
        input_data: Any,
        langsmith_metadata: dict[str, Any] | None = None,
        langsmith_tags: list[str] | None = None,
        *,
        confidence_scoring: bool | None = None,
    ) -> FunctionResult:
        """Run a published Function on one input (a dict or a pydantic model, as the docs say), synchronously.
        Traced to LangSmith when ``langsmith`` is installed and ``LANGSMITH_TRACING=true``; otherwise the
        langsmith arguments are ignored.

        Example:
            >>> client.run_function("ticket-triage", {"text": "I was charged twice"}).label
            'billing'
        """
        body = self._function_input(name, input_data)
        with tracing.function_run_trace(name, body, langsmith_metadata, langsmith_tags) as traced:
            result = self._run(ops.send(self.retry, protocol.run_function_call(name, body, confidence_scoring)))
            traced.update(result.model_dump(mode="json", exclude_none=True))
        return result

    def batch_run_function(
        self,
        name: str,
        data: Any,
        job_priority: int = 0,
        output_column: str = "inference_result",
        dry_run: bool = False,
        stay_attached: bool = False,
        job_name: str | None = None,
        description: str | None = None,
        langsmith_metadata: dict[str, Any] | None = None,
        langsmith_tags: list[str] | None = None,
        *,
        columns: Sequence[str] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Run a Function over many rows as a batch job (the docs' arguments, in their order).

        ``data``: list of dicts, pandas/polars DataFrame, .csv/.parquet path or URL.
        Returns the job id; the results (``output_column``) when attached; the cost estimate in
        dollars when ``dry_run`` (sent as ``cost_estimate``). With ``langsmith`` installed and
        ``LANGSMITH_TRACING=true`` the submit is traced; otherwise the langsmith arguments are ignored.

        Example:
            >>> job_id = client.batch_run_function("ticket-triage", tickets_df, columns=["text"])
        """
        op = self._batch_function_op(name, data, columns, job_priority, stay_attached, job_name, description,
                                     idempotency_key, output_column, dry_run)
        if dry_run:
            return self._run(op)
        with tracing.batch_submit_trace(name, compat.rows_of(data), langsmith_metadata, langsmith_tags) as traced:
            out = self._run(op)
            traced["job_id"] = self.last_job_id
        return out
