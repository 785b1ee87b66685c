"""What SutroClient and AsyncSutroClient share: settings, headers, and every high-level operation.

The operations here are generators (see ``operations``); each client only drives them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import ssl
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from . import __version__, lifecycle, operations as ops, protocol
from .config import DEFAULT_API_URL, resolve_settings
from .errors import DryRunResultsError, InputValidationError, SutroAPIError
from .inputs import _is_pandas
from .lifecycle import JobHandle, JobSpec
from .models import FunctionResult, Job, JobStatus, ResultsManifest, Submission
from .operations import Blocking, Lines, Op
from .progress import ProgressReporter
from .request import BatchJobRequest
from .results.reading import read_results_file
from .results.shape import join_original, shape_results
from .results.targets import finalize, prepare_target
from .retrying import PollPolicy, RetryPolicy

HOSTED_APP_URL = "https://app.sutro.sh"


@functools.lru_cache(maxsize=1)
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context (certifi's CAs, as httpx uses) for every client in the process.

    Building one costs ~40 ms of CPU; a triggerer that makes a client per deferred task would spend
    that per task (issue 17). An ``SSLContext`` is safe to share between connections and threads.
    """
    import certifi

    # As httpx does with trust_env: SSL_CERT_FILE / SSL_CERT_DIR (a company CA) win over certifi's bundle.
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    return ssl.create_default_context(cafile=certifi.where())


class ClientBase:
    """Settings and operations shared by both clients (not used directly)."""

    #: The job id of the latest job this client's ``infer`` / ``batch_run_function`` submitted (also after an
    #: attached run, which returns a DataFrame); ``last_job_ids``: all of that call's ids (one per model).
    last_job_id: str | None = None
    last_job_ids: tuple[str, ...] = ()

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
        """A link to the job for UIs: the hosted app's job page, or the sutro-local console's job page
        (``<server>/console/jobs/<id>``; the console asks a browser without a session to sign in)."""
        if urlsplit(self.api_url).netloc == urlsplit(DEFAULT_API_URL).netloc:
            return f"{HOSTED_APP_URL}/jobs/{job_id}"
        base = self.api_url.rstrip("/")
        base = base[: -len("/v1")] if base.endswith("/v1") else base  # the console is not under /v1
        return f"{base}/console/jobs/{job_id}"

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
                estimates.append((yield from ops.estimate_cost_op(self.retry, self.poll, req)))
            return estimates[0] if isinstance(model, str) else estimates
        job_ids = []
        for req in requests:
            key = idempotency_key
            if key and len(requests) > 1:  # one key per model job
                key = hashlib.blake2b(f"{idempotency_key}:{req.model}".encode(), digest_size=16).hexdigest()
            job_ids.append((yield from ops.submit_job(self.retry, req, key)).job_id)
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
            return (yield from ops.estimate_cost_op(self.retry, self.poll, req))
        submission = yield from ops.submit_job(self.retry, req, idempotency_key)
        self.last_job_id, self.last_job_ids = submission.job_id, (submission.job_id,)
        if not stay_attached:
            return submission.job_id
        yield from self._attach_op(submission.job_id, None)
        return (yield from self._results_op(submission.job_id, output_column=output_column))

    def _check_cost_op(self, request: BatchJobRequest, max_cost_usd: float) -> Op[float]:
        from .errors import CostLimitExceededError

        estimate = yield from ops.estimate_cost_op(self.retry, self.poll, request)
        if estimate > max_cost_usd:
            raise CostLimitExceededError(estimate, max_cost_usd)
        return estimate

    # ---- the job lifecycle (see ``lifecycle``) --------------------------------------------------

    def _start_op(self, spec: JobSpec, scope: Sequence[Any] | None, idempotency_key: str | None) -> Op[JobHandle]:
        key, sid = lifecycle.step_key(spec, scope, idempotency_key)
        return lifecycle.start_op(self.retry, self.poll, self.api_url, self.job_url, spec, key, sid)

    def _lifecycle_wait_op(self, handle: "JobHandle | dict[str, Any]",
                           on_status: Callable[[JobStatus], None] | None) -> Op[Job]:
        return lifecycle.wait_op(self.retry, self.poll, JobHandle.from_dict(handle), on_status)

    def _finish_op(self, handle: "JobHandle | dict[str, Any]", carry: Any, destination: Any,
                   storage_options: dict[str, Any] | None, timeout: float | None) -> Op[ResultsManifest]:
        if carry is not None and not isinstance(carry, pl.DataFrame):
            carry = lifecycle.carry_frame(carry, None)
        return lifecycle.finish_op(self.retry, JobHandle.from_dict(handle), carry, destination, storage_options, timeout)

    def _cancel_op(self, target: "JobHandle | dict[str, Any] | str", reason: str) -> Op[bool]:
        job_id = target if isinstance(target, str) else JobHandle.from_dict(target).job_id
        return lifecycle.cancel_op(self.retry, job_id, None, reason)

    @staticmethod
    def _interrupted(exc: BaseException, spec: JobSpec) -> bool:
        """An interruption (kill, termination, task cancellation) that should cancel the job: any
        BaseException that is not an Exception. Ordinary errors never cancel (a retry reattaches)."""
        return not isinstance(exc, Exception) and spec.cancel_on_interrupt

    def _cancel_interrupted_op(self, handle: JobHandle | None, key: str) -> Op[bool]:
        job_id = handle.job_id if handle is not None else None
        return lifecycle.cancel_op(self.retry, job_id, key, "the step was interrupted")

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


__all__ = ["ClientBase", "FunctionResult", "SutroAPIError"]
