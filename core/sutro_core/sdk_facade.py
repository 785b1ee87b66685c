"""The Sutro SDK's methods (``infer``, ``await_job_completion``, ``get_job_results``, ``batch_run_function``, ...)
with the docs' names, arguments and defaults: a thin facade over the wire operations (``operations``) and the
lifecycle's submit (``lifecycle.submit_op``). ``SutroClient`` and ``AsyncSutroClient`` inherit them; the
orchestrator adapters use the lifecycle (``start`` / ``wait`` / ``finish`` / ``cancel`` / ``run``) instead.

Example:
    >>> with SutroClient() as client:                       # SUTRO_API_KEY / SUTRO_API_URL
    ...     job_id = client.infer(["I love it", "Broken"], model="all-minilm-l6-v2", stay_attached=False)
    ...     client.await_job_completion(job_id, obtain_results=False).status
    <JobStatus.SUCCEEDED: 'SUCCEEDED'>
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import polars as pl

from . import lifecycle, operations as ops, protocol, tracing
from .errors import CostLimitExceededError, DryRunResultsError, InputValidationError, SutroAPIError
from .inputs import _is_pandas
from .lifecycle import DEFAULT_DOWNLOAD_TIMEOUT_S
from .models import CancelResult, FunctionResult, Job, JobStatus, Quota, ResultsManifest, Submission
from .operations import Blocking, Lines, Op
from .progress import ProgressReporter, announce_finished
from .request import BatchJobRequest
from .results.reading import read_results_file
from .results.shape import join_original, shape_results
from .results.targets import finalize, prepare_target
from .retrying import PollPolicy, RetryPolicy


def sdk_cancel_call(job_id: str) -> protocol.Call[CancelResult]:
    """``GET job-cancel/{id}`` parsed to a ``CancelResult`` (the server's JSON body, and its new status)."""
    base = protocol.cancel_job_call(job_id)
    return dataclasses.replace(base, parse=lambda r: CancelResult(job_id, protocol._json(r)))


def status_printer(job_id: str) -> Callable[[JobStatus], None]:
    """An ``on_status`` callback printing each status change to stderr, as the SDK's wait prints it.

    Example:
        >>> client.await_job_completion(job_id, on_status=status_printer(job_id))
    """

    def show(status: JobStatus) -> None:
        print(f"Job status is {status.value} for {job_id}", file=sys.stderr, flush=True)

    return show


def rows_of(data: object) -> int | None:
    """How many rows ``data`` has, when that is cheap to know (a list or a DataFrame), for traces."""
    try:
        return len(data) if not isinstance(data, str) else None  # type: ignore[arg-type]
    except TypeError:
        return None


def announce_if_finished(job: Job) -> None:
    """What ``attach`` says for a job that already ended (the docs: it notifies and exits)."""
    if job.is_terminal:
        announce_finished(job.job_id, job.status.value, job.failure_reason)


class SdkOperations:
    """The SDK methods' operations (generators), shared by the sync and async facades."""

    retry: RetryPolicy
    poll: PollPolicy
    #: The job id of the latest job this client's ``infer`` / ``batch_run_function`` submitted (also after an
    #: attached run, which returns a DataFrame); ``last_job_ids``: all of that call's ids (one per model).
    last_job_id: str | None = None
    last_job_ids: tuple[str, ...] = ()


    def _submit_op(
        self,
        request: BatchJobRequest,
        idempotency_key: str | None,
        reattach: bool = True,
        max_cost_usd: float | None = None,
        estimate_cost: bool = False,
    ) -> Op[Submission]:
        return lifecycle.submit_op(self.retry, request, idempotency_key, reattach, poll=self.poll,
                                   max_cost_usd=max_cost_usd, estimate_cost=estimate_cost)

    def _await_op(
        self,
        job_id: str,
        timeout: float | None,
        deadline: float | datetime | None,
        on_status: Callable[[JobStatus], None] | None,
        obtain_results: bool,
        results_kwargs: dict[str, Any],
    ) -> Op[Any]:
        job = yield from ops.poll_until_done(self.retry, self.poll, job_id, timeout=timeout, deadline=deadline,
                                          on_status=on_status)
        if not obtain_results:
            return job
        return (yield from self._results_op(job_id, **results_kwargs))

    def _results_op(
        self,
        job_id: str,
        include_inputs: bool = False,
        include_cumulative_logprobs: bool = False,
        with_original_df: Any = None,
        output_column: str = "inference_result",
        unpack_json: bool = True,
        unwrap_reasoning: bool = False,
    ) -> Op[Any]:
        job = yield from ops.succeeded_job(self.retry, job_id)
        if (job.model_extra or {}).get("dry_run") is True:  # a cost estimate: no results, ever; say so now
            raise DryRunResultsError(job_id)
        # Streamed to a temp file, then read: a body held in memory costs ~2x its size at peak, and decoding
        # while the body arrives did not beat this (benchmarks/README.md, "One reading path").
        fd, tmp = tempfile.mkstemp(prefix="sutro-results-", suffix=".parquet.part")
        os.close(fd)
        try:
            try:
                call = protocol.results_file_call(job_id, include_inputs=include_inputs,
                                                  include_cumulative_logprobs=include_cumulative_logprobs,
                                                  stream_to=tmp)
                yield from ops.send(self.retry, call)
            except SutroAPIError as exc:
                if exc.code == "dry_run_has_no_results":
                    raise DryRunResultsError(job_id) from exc
                raise

            def shape() -> Any:
                df = shape_results(read_results_file(tmp), output_column=output_column, unpack_json=unpack_json,
                                   unwrap_reasoning=unwrap_reasoning)
                if with_original_df is not None:
                    return join_original(df, with_original_df)
                return df

            return (yield Blocking(shape))
        finally:
            os.unlink(tmp)

    def _download_op(
        self,
        job_id: str,
        destination: Any,
        result_format: str,
        include_inputs: bool,
        include_cumulative_logprobs: bool,
        storage_options: dict[str, Any] | None,
        timeout: float | None = None,
    ) -> Op[ResultsManifest]:
        target = prepare_target(destination, result_format, storage_options)
        job = yield from ops.download(self.retry, job_id, target, timeout, result_format=result_format,
                                      include_inputs=include_inputs,
                                      include_cumulative_logprobs=include_cumulative_logprobs)
        return (yield Blocking(lambda: finalize(target, job, result_format)))

    def _attach_op(self, job_id: str, show_progress: bool | None) -> Op[Job]:
        job = yield from ops.get_job(self.retry, job_id)
        reporter = ProgressReporter(job_id, job.num_rows, bar=show_progress)
        try:
            if not job.is_terminal:
                try:
                    yield Lines(protocol.progress_call(job_id), reporter.update)
                except Exception as exc:  # a broken stream is not a failed job: fall back to polling
                    ops.log.warning("progress stream for job %s ended early (%r); polling instead", job_id, exc)
            return (yield from ops.poll_until_done(self.retry, self.poll, job_id, timeout=None))
        finally:
            reporter.close()

    def _infer_op(
        self,
        data: Any,
        model: str | Sequence[str],
        column: str | Sequence[str] | None,
        output_column: str,
        job_priority: int,
        output_schema: Any,
        system_prompt: str | None,
        sampling_params: dict[str, Any] | None,
        random_seed_per_input: bool,
        dry_run: bool,
        stay_attached: bool | None,
        truncate_rows: bool,
        name: str | Sequence[str] | None,
        description: str | Sequence[str] | None,
        idempotency_key: str | None,
    ) -> Op[Any]:
        models = [model] if isinstance(model, str) else list(model)
        if not models:
            raise InputValidationError("model", "an empty model list was given; name at least one model")
        if name is None or isinstance(name, str):
            names = [name] * len(models)
        else:
            names = list(name)
            if len(names) != len(models):
                raise InputValidationError(
                    "name", f"{len(names)} names for {len(models)} models; give one name per model (or one string)"
                )
        if description is None or isinstance(description, str):
            descriptions = [description] * len(models)
        else:  # the docs: a list of descriptions, one per model
            descriptions = list(description)
            if len(descriptions) != len(models):
                raise InputValidationError(
                    "description", f"{len(descriptions)} descriptions for {len(models)} models; "
                    "give one description per model (or one string)",
                )  # fmt: skip
        first = BatchJobRequest.for_inference(
            data, models[0], column=column, job_priority=job_priority, output_schema=output_schema,
            system_prompt=system_prompt, sampling_params=sampling_params,
            random_seed_per_input=random_seed_per_input, truncate_rows=truncate_rows, name=names[0],
            description=descriptions[0],
        )
        requests = [first] + [
            _for_model(first, m, n, d) for m, n, d in zip(models[1:], names[1:], descriptions[1:])
        ]
        if dry_run:
            estimates = []
            for req in requests:
                estimates.append((yield from lifecycle.estimate_op(self.retry, self.poll, req)))
            return estimates[0] if isinstance(model, str) else estimates
        job_ids = []
        for req in requests:
            key = idempotency_key
            if key and len(requests) > 1:  # one key per model job
                key = hashlib.blake2b(f"{idempotency_key}:{req.model}".encode(), digest_size=16).hexdigest()
            job_ids.append((yield from lifecycle.submit_op(self.retry, req, key)).job_id)
            self.last_job_id, self.last_job_ids = job_ids[-1], tuple(job_ids)
        if not isinstance(model, str):
            return job_ids
        attached = stay_attached if stay_attached is not None else job_priority == 0
        if not attached:
            return job_ids[0]
        yield from self._attach_op(job_ids[0], None)
        original = data if isinstance(data, pl.DataFrame) or (_is_pandas(data) and hasattr(data, "columns")) else None
        return (yield from self._results_op(job_ids[0], with_original_df=original, output_column=output_column))

    def _batch_function_op(
        self,
        name: str,
        data: Any,
        columns: Sequence[str] | None,
        job_priority: int,
        stay_attached: bool,
        job_name: str | None,
        description: str | None,
        idempotency_key: str | None,
        output_column: str = "inference_result",
        dry_run: bool = False,
    ) -> Op[Any]:
        req = BatchJobRequest.for_function(name, data, columns=columns, job_priority=job_priority, name=job_name,
                                           description=description)
        if dry_run:  # the SDK sends cost_estimate; as infer(dry_run=True), the estimate in dollars comes back
            return (yield from lifecycle.estimate_op(self.retry, self.poll, req))
        submission = yield from lifecycle.submit_op(self.retry, req, idempotency_key)
        self.last_job_id, self.last_job_ids = submission.job_id, (submission.job_id,)
        if not stay_attached:
            return submission.job_id
        yield from self._attach_op(submission.job_id, None)
        return (yield from self._results_op(submission.job_id, output_column=output_column))

    def _check_cost_op(self, request: BatchJobRequest, max_cost_usd: float) -> Op[float]:
        estimate = yield from lifecycle.estimate_op(self.retry, self.poll, request)
        if estimate > max_cost_usd:
            raise CostLimitExceededError(estimate, max_cost_usd)
        return estimate

    @staticmethod
    def _function_input(name: str, input_data: Any) -> dict[str, Any]:
        if not isinstance(name, str) or not name:
            raise InputValidationError("name", "give the Function's name, e.g. 'ticket-triage'")
        if hasattr(input_data, "model_dump"):
            input_data = input_data.model_dump(mode="json")
        if not isinstance(input_data, dict):
            raise InputValidationError(
                "input_data", f"expected a dict or pydantic model of the Function's inputs, got {type(input_data).__name__}"
            )
        return input_data


def _for_model(first: BatchJobRequest, model: str, name: str | None, description: str | None) -> BatchJobRequest:
    """``first`` for another model of a multi-model ``infer`` (same rows and settings)."""
    return dataclasses.replace(first, model=model, name=name, description=description)


class SdkFacade(SdkOperations):
    """The SDK's methods on the synchronous client (``SutroClient`` drives them with ``_run``)."""

    _run: Callable[..., Any]

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
        ``lifecycle.submit_op``). A job about to be submitted (not a reattach) is dry-run first
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
            announce_if_finished(self.get_job(job_id))
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
            on_status = status_printer(job_id)
        return self._run(self._await_op(job_id, timeout, deadline, on_status, obtain_results, results_kwargs))

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
        return self._run(ops.send(self.retry, sdk_cancel_call(job_id)))

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
        return self._run(lifecycle.estimate_op(self.retry, self.poll, request))

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
        with tracing.batch_submit_trace(name, rows_of(data), langsmith_metadata, langsmith_tags) as traced:
            out = self._run(op)
            traced["job_id"] = self.last_job_id
        return out


class AsyncSdkFacade(SdkOperations):
    """The SDK's methods on the asynchronous client; see ``SdkFacade`` for each one's documentation."""

    _run: Callable[..., Any]

    async def infer(
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
        """See ``SutroClient.infer``."""
        return await self._run(self._infer_op(
            data, model, column, output_column, job_priority, output_schema, system_prompt, sampling_params,
            random_seed_per_input, dry_run, stay_attached, truncate_rows, name, description, idempotency_key,
        ))  # fmt: skip

    async def submit_job(
        self,
        request: BatchJobRequest,
        idempotency_key: str | None = None,
        *,
        reattach: bool = True,
        max_cost_usd: float | None = None,
        estimate_cost: bool = False,
    ) -> Submission:
        """See ``SutroClient.submit_job``."""
        return await self._run(self._submit_op(request, idempotency_key, reattach, max_cost_usd, estimate_cost))

    async def find_job(self, idempotency_key: str) -> Job | None:
        """See ``SutroClient.find_job``."""
        return await self._run(ops.find_job(self.retry, idempotency_key))

    async def attach(self, job_id: str, *, show_progress: bool | None = None) -> Job:
        """See ``SutroClient.attach``."""
        if show_progress is not False:
            announce_if_finished(await self.get_job(job_id))
        return await self._run(self._attach_op(job_id, show_progress))

    async def await_job_completion(
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
        """See ``SutroClient.await_job_completion``."""
        if on_status is None and show_progress:
            on_status = status_printer(job_id)
        return await self._run(self._await_op(job_id, timeout, deadline, on_status, obtain_results, results_kwargs))

    async def get_job(self, job_id: str) -> Job:
        """See ``SutroClient.get_job``."""
        return await self._run(ops.get_job(self.retry, job_id))

    async def get_job_status(self, job_id: str) -> JobStatus:
        """See ``SutroClient.get_job_status``."""
        return await self._run(ops.send(self.retry, protocol.get_job_status_call(job_id)))

    async def list_jobs(self) -> list[Job]:
        """See ``SutroClient.list_jobs``."""
        return await self._run(ops.send(self.retry, protocol.list_jobs_call()))

    async def cancel_job(self, job_id: str) -> CancelResult:
        """See ``SutroClient.cancel_job``."""
        return await self._run(ops.send(self.retry, sdk_cancel_call(job_id)))

    async def get_quotas(self) -> list[Quota]:
        """See ``SutroClient.get_quotas``."""
        return await self._run(ops.send(self.retry, protocol.get_quotas_call()))

    async def check_auth(self) -> dict[str, Any]:
        """See ``SutroClient.check_auth``."""
        return await self._run(ops.send(self.retry, protocol.check_auth_call()))

    async def estimate_cost(self, request: BatchJobRequest) -> float:
        """See ``SutroClient.estimate_cost``."""
        return await self._run(lifecycle.estimate_op(self.retry, self.poll, request))

    async def check_cost(self, request: BatchJobRequest, max_cost_usd: float) -> float:
        """See ``SutroClient.check_cost``."""
        return await self._run(self._check_cost_op(request, max_cost_usd))

    async def get_job_results(
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
        """See ``SutroClient.get_job_results``."""
        return await self._run(self._results_op(job_id, include_inputs, include_cumulative_logprobs,
                                                with_original_df, output_column, unpack_json, unwrap_reasoning))

    async def download_results(
        self,
        job_id: str,
        destination: Any,
        format: str = "parquet",
        include_inputs: bool = False,
        include_cumulative_logprobs: bool = False,
        storage_options: dict[str, Any] | None = None,
        timeout: float | None = DEFAULT_DOWNLOAD_TIMEOUT_S,
    ) -> ResultsManifest:
        """See ``SutroClient.download_results``."""
        return await self._run(self._download_op(job_id, destination, format, include_inputs,
                                                 include_cumulative_logprobs, storage_options, timeout))

    async def run_function(
        self,
        name: str,
        input_data: Any,
        langsmith_metadata: dict[str, Any] | None = None,
        langsmith_tags: list[str] | None = None,
        *,
        confidence_scoring: bool | None = None,
    ) -> FunctionResult:
        """See ``SutroClient.run_function``."""
        body = self._function_input(name, input_data)
        with tracing.function_run_trace(name, body, langsmith_metadata, langsmith_tags) as traced:
            result = await self._run(ops.send(self.retry, protocol.run_function_call(name, body, confidence_scoring)))
            traced.update(result.model_dump(mode="json", exclude_none=True))
        return result

    async def batch_run_function(
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
        """See ``SutroClient.batch_run_function``."""
        op = self._batch_function_op(name, data, columns, job_priority, stay_attached, job_name, description,
                                     idempotency_key, output_column, dry_run)
        if dry_run:
            return await self._run(op)
        with tracing.batch_submit_trace(name, rows_of(data), langsmith_metadata, langsmith_tags) as traced:
            out = await self._run(op)
            traced["job_id"] = self.last_job_id
        return out
