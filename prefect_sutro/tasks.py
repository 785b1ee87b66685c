"""Prefect tasks for Sutro: submit (retry-safe), wait, download to parquet, run a Function, cancel.

All tasks are ``async`` (waiting awaits, so no worker thread is held while a job runs). Await them in an
async flow; in a sync flow use ``.submit(...).result()``. Every task takes a ``SutroCredentials`` block
and calls the core client; none speaks HTTP, polls or writes parquet itself.

Example:
    >>> from prefect import flow
    >>> from prefect_sutro import SutroCredentials
    >>> from prefect_sutro.tasks import submit_batch_inference, wait_for_job, download_results_to_parquet
    >>> @flow
    ... async def embed_reviews(reviews: list[str]) -> dict:
    ...     creds = await SutroCredentials.load("sutro")
    ...     sub = await submit_batch_inference(reviews, "all-minilm-l6-v2", creds)
    ...     await wait_for_job(sub, creds)
    ...     return await download_results_to_parquet(sub, "out/reviews.parquet", creds)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.logging import get_run_logger
from sutro_core import (
    BatchJobRequest,
    FunctionResult,
    Job,
    JobError,
    JobStatus,
    PollPolicy,
    Submission,
)

from .artifacts import check_artifact_key, publish_results_artifacts, publish_submission_artifact
from .cancellation import register_job, unregister_job
from .credentials import SutroCredentials
from .idempotency import prefect_idempotency_key, root_flow_run_id
from .results import head_results

JobRef = Submission | Job | str

# Why NO_CACHE: the durable record of a submit is the job on the Sutro server, found again through the
# idempotency key. A Prefect result cache would replay a stale Submission, pinning a retry to a job that
# has since FAILED or been CANCELLED instead of submitting anew (and would hash whole DataFrames).
_TASK_DEFAULTS: dict[str, Any] = {"cache_policy": NO_CACHE}


def _job_id(job: JobRef) -> str:
    if isinstance(job, (Submission, Job)):
        return job.job_id
    if isinstance(job, str) and job.strip():
        return job.strip()
    raise ValueError(
        f"job must be a job id string, a Submission or a Job (from submit_batch_inference/wait_for_job), "
        f"got {type(job).__name__}"
    )


def _check_credentials(sutro_credentials: Any) -> SutroCredentials:
    if not isinstance(sutro_credentials, SutroCredentials):
        raise TypeError(
            "sutro_credentials must be a SutroCredentials block, e.g. SutroCredentials.load('sutro') or "
            f"SutroCredentials(api_key=..., api_url=...); got {type(sutro_credentials).__name__}"
        )
    return sutro_credentials


async def _flow_run_ids() -> list[str]:
    """This flow run and its root: the runs whose cancellation should cancel a job submitted here."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return []
    own = ctx.flow_run
    root = await root_flow_run_id(own.id, own.parent_task_run_id)
    return [str(own.id), str(root)]


async def _submit(
    request: BatchJobRequest,
    sutro_credentials: SutroCredentials,
    *,
    max_cost_usd: float | None,
    idempotency_key: str | None,
    idempotency_scope: str | None,
    artifact_key: str | None,
) -> Submission:
    logger = get_run_logger()
    creds = _check_credentials(sutro_credentials)
    check_artifact_key(artifact_key)
    key = idempotency_key or await prefect_idempotency_key(request.fingerprint, idempotency_scope)
    # Looked up before submitting, so nothing slow stands between the job's creation and its registration.
    run_ids = await _flow_run_ids()
    async with creds.get_async_client() as client:
        # The core dry-runs against max_cost_usd only for a job it is about to submit, never on a reattach.
        submission = await client.submit_job(request, idempotency_key=key, max_cost_usd=max_cost_usd)
        job_url = client.job_url(submission.job_id)
    if submission.cost_estimate is not None:
        logger.info("Cost estimate $%.6g is within max_cost_usd=$%.6g", submission.cost_estimate, max_cost_usd)
    register_job(run_ids, submission.job_id, creds)
    if submission.reattached:
        logger.info(
            "Reattached to Sutro job %s (%s) with idempotency key %s: not submitting again",
            submission.job_id,
            submission.status.value,
            key,
        )
    else:
        logger.info(
            "Submitted Sutro job %s on %s (%s rows): %s",
            submission.job_id,
            request.model,
            request.num_rows,
            job_url,
        )
    await publish_submission_artifact(
        submission,
        job_url,
        request.model,
        key=artifact_key,
        credentials_block_id=getattr(creds, "_block_document_id", None),
    )
    return submission


@task(name="submit_batch_inference", task_run_name="submit-{model}", **_TASK_DEFAULTS)
async def submit_batch_inference(
    data: Any,
    model: str,
    sutro_credentials: SutroCredentials,
    column: str | Sequence[str] | None = None,
    system_prompt: str | None = None,
    output_schema: Any = None,
    sampling_params: dict[str, Any] | None = None,
    job_priority: int = 0,
    random_seed_per_input: bool = False,
    truncate_rows: bool = True,
    name: str | None = None,
    description: str | None = None,
    max_cost_usd: float | None = None,
    idempotency_key: str | None = None,
    idempotency_scope: str | None = None,
    artifact_key: str | None = None,
) -> Submission:
    """Submit a batch inference job, or reattach to the one an earlier try of this step submitted.

    ``data`` is a list of strings, a polars/pandas DataFrame (with ``column``), a local csv/parquet/txt
    file, or an http(s) URL of a csv/parquet file. The idempotency key is scoped on the root flow run,
    flow and task names and the job's fingerprint, so task and flow retries reattach instead of paying
    twice; pass ``idempotency_scope`` to run two identical jobs on purpose in one flow run. With
    ``max_cost_usd`` a dry run gates the submit. Returns the ``Submission`` (``job_id``, ``reattached``).

    Example:
        >>> sub = await submit_batch_inference(["great product", "arrived broken"], "all-minilm-l6-v2",
        ...                                    creds)   # doctest: +SKIP
        >>> sub.job_id                                   # doctest: +SKIP
    """
    request = BatchJobRequest.for_inference(
        data,
        model,
        column=column,
        system_prompt=system_prompt,
        output_schema=output_schema,
        sampling_params=sampling_params,
        job_priority=job_priority,
        random_seed_per_input=random_seed_per_input,
        truncate_rows=truncate_rows,
        name=name,
        description=description,
    )
    return await _submit(
        request,
        sutro_credentials,
        max_cost_usd=max_cost_usd,
        idempotency_key=idempotency_key,
        idempotency_scope=idempotency_scope,
        artifact_key=artifact_key,
    )


@task(name="submit_batch_function", task_run_name="submit-{function_name}", **_TASK_DEFAULTS)
async def submit_batch_function(
    function_name: str,
    data: Any,
    sutro_credentials: SutroCredentials,
    columns: Sequence[str] | None = None,
    job_priority: int = 0,
    name: str | None = None,
    description: str | None = None,
    max_cost_usd: float | None = None,
    idempotency_key: str | None = None,
    idempotency_scope: str | None = None,
    artifact_key: str | None = None,
) -> Submission:
    """Submit a Sutro Function over many rows as a batch job (retry-safe, like ``submit_batch_inference``).

    ``data`` is a list of dicts keyed by the Function's inputs, or a DataFrame whose ``columns`` are them.

    Example:
        >>> sub = await submit_batch_function("ticket-triage", [{"text": "I was charged twice"}],
        ...                                   creds)   # doctest: +SKIP
    """
    request = BatchJobRequest.for_function(
        function_name, data, columns=columns, job_priority=job_priority, name=name, description=description
    )
    return await _submit(
        request,
        sutro_credentials,
        max_cost_usd=max_cost_usd,
        idempotency_key=idempotency_key,
        idempotency_scope=idempotency_scope,
        artifact_key=artifact_key,
    )


@task(name="wait_for_job", **_TASK_DEFAULTS)
async def wait_for_job(
    job: JobRef,
    sutro_credentials: SutroCredentials,
    timeout: float | None = 7200,
    poll_interval_seconds: float = 1.0,
    max_poll_interval_seconds: float = 30.0,
) -> Job:
    """Wait for a job to finish (core backoff polling, awaited, with a wall-clock ``timeout`` in seconds).

    Polls start every ``poll_interval_seconds`` and back off to ``max_poll_interval_seconds``.
    Returns the SUCCEEDED ``Job``. A FAILED job raises ``JobFailedError`` carrying the server's reason; a
    CANCELLED job raises ``JobCancelledError`` (cancelled is never success); running past ``timeout``
    raises ``JobTimeoutError`` and leaves the job running (``timeout=None`` waits as long as it takes).

    Example:
        >>> done = await wait_for_job(sub, creds, timeout=3600)   # doctest: +SKIP
        >>> done.output_tokens                                     # doctest: +SKIP
    """
    logger = get_run_logger()
    job_id = _job_id(job)
    creds = _check_credentials(sutro_credentials)
    if poll_interval_seconds <= 0 or max_poll_interval_seconds < poll_interval_seconds:
        raise ValueError(
            "poll_interval_seconds must be > 0 and max_poll_interval_seconds >= poll_interval_seconds "
            f"(got {poll_interval_seconds} and {max_poll_interval_seconds})"
        )
    poll = PollPolicy(initial_interval=poll_interval_seconds, max_interval=max_poll_interval_seconds)
    async with creds.get_async_client(poll=poll) as client:
        try:
            finished = await client.await_job_completion(
                job_id,
                timeout=timeout,
                obtain_results=False,
                # Status changes go to the task run's log, so the Prefect UI shows the job's progress.
                on_status=lambda status: logger.info("Sutro job %s is %s", job_id, status.value),
            )
        except JobError as exc:
            if exc.status in (JobStatus.FAILED.value, JobStatus.CANCELLED.value):
                unregister_job(job_id)
            logger.error("Sutro job %s did not succeed: %s", job_id, exc)
            raise
    unregister_job(job_id)
    logger.info(
        "Sutro job %s SUCCEEDED (%s rows, %s input / %s output tokens)",
        job_id,
        finished.num_rows,
        finished.input_tokens,
        finished.output_tokens,
    )
    return finished


@task(name="download_results_to_parquet", **_TASK_DEFAULTS)
async def download_results_to_parquet(
    job: JobRef,
    path: str,
    sutro_credentials: SutroCredentials,
    include_inputs: bool = False,
    create_artifacts: bool = True,
    preview_rows: int = 10,
    artifact_key: str | None = None,
) -> dict[str, Any]:
    """Stream a SUCCEEDED job's results to parquet at ``path`` (local path or any fsspec URI).

    Returns the manifest dict (``uri, format, rows, bytes, job_id, model, columns, input_tokens,
    output_tokens, cost, created_at``), never the DataFrame; read it back with ``load_results``. Creates
    a preview table, a link to the file and a markdown summary artifact unless ``create_artifacts=False``.

    Example:
        >>> manifest = await download_results_to_parquet(
        ...     sub, "s3://bucket/reviews.parquet", creds)   # doctest: +SKIP
        >>> manifest["rows"]                                 # doctest: +SKIP
    """
    logger = get_run_logger()
    job_id = _job_id(job)
    creds = _check_credentials(sutro_credentials)
    check_artifact_key(artifact_key)
    if not isinstance(path, str) or not path.strip():
        raise ValueError("path must be a local file path or an fsspec URI such as 's3://bucket/out.parquet'")
    async with creds.get_async_client() as client:
        manifest = await client.download_results(job_id, path, include_inputs=include_inputs)
        details = await client.get_job(job_id) if create_artifacts else None
        job_url = client.job_url(job_id)
    logger.info(
        "Wrote %s rows of Sutro job %s to %s (%s bytes)", manifest.rows, job_id, manifest.uri, manifest.bytes
    )
    if create_artifacts:
        preview = head_results(manifest, preview_rows) if preview_rows > 0 else None
        await publish_results_artifacts(
            manifest, details, preview, job_url=job_url, preview_rows_count=preview_rows, key=artifact_key
        )
    return manifest.to_dict()


@task(name="run_function", task_run_name="run-{function_name}", **_TASK_DEFAULTS)
async def run_function(
    function_name: str,
    input_data: dict[str, Any],
    sutro_credentials: SutroCredentials,
) -> FunctionResult:
    """Run a Sutro Function on one input, synchronously on the server (no batch job).

    Example:
        >>> r = await run_function("ticket-triage", {"text": "I was charged twice"}, creds)  # doctest: +SKIP
        >>> r.label, r.confidence                                                             # doctest: +SKIP
    """
    creds = _check_credentials(sutro_credentials)
    async with creds.get_async_client() as client:
        result = await client.run_function(function_name, input_data)
    get_run_logger().info(
        "Function %s answered %r (confidence %s)",
        function_name,
        result.label if result.is_classification else result.output,
        result.confidence,
    )
    return result


@task(name="cancel_job", **_TASK_DEFAULTS)
async def cancel_job(job: JobRef, sutro_credentials: SutroCredentials) -> JobStatus:
    """Cancel a Sutro job; returns its new status (CANCELLING or CANCELLED).

    Example:
        >>> await cancel_job(sub, creds)   # doctest: +SKIP
        <JobStatus.CANCELLED: 'CANCELLED'>
    """
    job_id = _job_id(job)
    creds = _check_credentials(sutro_credentials)
    async with creds.get_async_client() as client:
        status = await client.cancel_job(job_id)
    unregister_job(job_id)
    get_run_logger().info("Cancelled Sutro job %s (now %s)", job_id, status.value)
    return status
