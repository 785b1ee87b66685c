"""What SutroClient and AsyncSutroClient share: settings, headers, and every high-level operation.

The operations here are generators (see ``operations``); each client only drives them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from . import __version__, operations as ops, protocol
from .artifacts import discard, finalize, prepare_target
from .config import DEFAULT_API_URL, resolve_settings
from .errors import InputValidationError, SutroAPIError
from .inputs import _is_pandas
from .models import FunctionResult, Job, JobStatus, ResultsManifest, Submission
from .operations import Blocking, Lines, Op
from .progress import ProgressReporter
from .request import BatchJobRequest
from .results import join_original, read_parquet_bytes, shape_results
from .retrying import PollPolicy, RetryPolicy

HOSTED_APP_URL = "https://app.sutro.sh"


class ClientBase:
    """Settings and operations shared by both clients (not used directly)."""

    def __init__(
        self,
        api_key: str | None = None,
        api_url: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
    ) -> None:
        settings = resolve_settings(api_key, api_url)
        self.api_key = settings.api_key
        self.api_url = settings.api_url
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.poll = poll or PollPolicy()

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"sutro-pipelines/{__version__}"}
        if self.api_key:
            headers["Authorization"] = f"Key {self.api_key}"
        return headers

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(api_url={self.api_url!r})"

    def job_url(self, job_id: str) -> str:
        """A link to the job for UIs: the hosted app's job page, or the local server's job record."""
        if urlsplit(self.api_url).netloc == urlsplit(DEFAULT_API_URL).netloc:
            return f"{HOSTED_APP_URL}/jobs/{job_id}"
        return f"{self.api_url}/jobs/{job_id}"

    # ---- operations (generators) ---------------------------------------------------------------

    def _submit_op(
        self,
        request: BatchJobRequest,
        idempotency_key: str | None,
        reattach: bool = True,
        max_cost_usd: float | None = None,
        estimate_cost: bool = False,
    ) -> Op[Submission]:
        return ops.submit_job(self.retry, request, idempotency_key, reattach, poll=self.poll,
                              max_cost_usd=max_cost_usd, estimate_cost=estimate_cost)

    def _wait_op(
        self,
        job_id: str,
        timeout: float | None,
        deadline: float | datetime | None,
        on_status: Callable[[JobStatus], None] | None,
        obtain_results: bool,
        results_kwargs: dict[str, Any],
    ) -> Op[Any]:
        job = yield from ops.wait_for_job(self.retry, self.poll, job_id, timeout=timeout, deadline=deadline,
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
        yield from ops.succeeded_job(self.retry, job_id)
        content = yield from ops.send(
            self.retry,
            protocol.results_file_call(job_id, include_inputs=include_inputs,
                                       include_cumulative_logprobs=include_cumulative_logprobs),
        )

        def shape() -> Any:
            df = shape_results(read_parquet_bytes(content), output_column=output_column, unpack_json=unpack_json,
                               unwrap_reasoning=unwrap_reasoning)
            if with_original_df is not None:
                return join_original(df, with_original_df)
            return df

        return (yield Blocking(shape))

    def _download_op(
        self,
        job_id: str,
        destination: Any,
        result_format: str,
        include_inputs: bool,
        include_cumulative_logprobs: bool,
        storage_options: dict[str, Any] | None,
    ) -> Op[ResultsManifest]:
        target = prepare_target(destination, result_format, storage_options)
        job = yield from ops.succeeded_job(self.retry, job_id)
        call = protocol.results_file_call(
            job_id, result_format=result_format, include_inputs=include_inputs,
            include_cumulative_logprobs=include_cumulative_logprobs, stream_to=str(target.tmp_path),
        )
        try:
            yield from ops.send(self.retry, call)
        except BaseException:
            discard(target)
            raise
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
            return (yield from ops.wait_for_job(self.retry, self.poll, job_id, timeout=None))
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
        description: str | None,
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
        first = BatchJobRequest.for_inference(
            data, models[0], column=column, job_priority=job_priority, output_schema=output_schema,
            system_prompt=system_prompt, sampling_params=sampling_params,
            random_seed_per_input=random_seed_per_input, truncate_rows=truncate_rows, name=names[0],
            description=description,
        )
        requests = [first] + [dataclasses.replace(first, model=m, name=n) for m, n in zip(models[1:], names[1:])]
        if dry_run:
            estimates = []
            for req in requests:
                estimates.append((yield from ops.estimate_cost_op(self.retry, self.poll, req)))
            return estimates[0] if isinstance(model, str) else estimates
        job_ids = []
        for req in requests:
            key = idempotency_key
            if key and len(requests) > 1:  # one key per model job
                key = hashlib.blake2b(f"{idempotency_key}:{req.model}".encode(), digest_size=16).hexdigest()
            job_ids.append((yield from ops.submit_job(self.retry, req, key)).job_id)
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
    ) -> Op[Any]:
        req = BatchJobRequest.for_function(name, data, columns=columns, job_priority=job_priority, name=job_name,
                                           description=description)
        submission = yield from ops.submit_job(self.retry, req, idempotency_key)
        if not stay_attached:
            return submission.job_id
        yield from self._attach_op(submission.job_id, None)
        return (yield from self._results_op(submission.job_id))

    def _check_cost_op(self, request: BatchJobRequest, max_cost_usd: float) -> Op[float]:
        from .errors import CostLimitExceededError

        estimate = yield from ops.estimate_cost_op(self.retry, self.poll, request)
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


__all__ = ["ClientBase", "FunctionResult", "SutroAPIError"]
