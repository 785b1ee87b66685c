"""Prefect tasks for Sutro: submit (retry-safe), wait, download to parquet, run a Function, cancel.

Each is the core lifecycle (``client.start`` / ``wait`` / ``finish`` / ``cancel``) plus what Prefect adds:
the key's scope, the job-link artifact that records the handle, the run's job table and
``retry_condition_fn``. All are ``async``; in a sync flow use ``.submit(...).result()``.

Example:
    >>> from prefect_sutro import SutroCredentials, sutro_flow
    >>> @sutro_flow
    ... async def embed_reviews(reviews: list[str]) -> dict:
    ...     creds = await SutroCredentials.load("sutro")
    ...     handle = await submit_batch_inference(reviews, "all-minilm-l6-v2", creds)
    ...     await wait_for_job(handle, creds)
    ...     return await download_results_to_parquet(handle, "out/reviews.parquet", creds)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging import get_run_logger
from sutro_core import (
    AsyncSutroClient,
    FunctionResult,
    Job,
    JobCancelledError,
    JobError,
    JobFailedError,
    JobHandle,
    JobSpec,
    JobStatus,
    Submission,
    is_retryable,
    load_results,
)
from sutro_core.retrying import poll_policy
from sutro_core.spec import DEFAULT_TIMEOUT_S, job_id_of

from .artifacts import check_artifact_key, publish_results_artifacts, publish_submission_artifact
from .cancellation import OPT_OUT_PARAMETER, track_job, untrack_job
from .credentials import SutroCredentials
from .flow_decorators import check_runner_cancellation
from .idempotency import current_root, prefect_idempotency_key
from .lineage import emit_job_event, job_step, materialize_results
from .storage import check_storage_options, resolve_storage_options
from .summary import record_job

JobRef = JobHandle | Submission | Job | dict | str


def retry_unless_permanent(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn``: retry only what a retry can fix (``sutro_core.is_retryable``).

    Example:
        >>> from sutro_core import JobFailedError
        >>> from prefect.states import Failed
        >>> retry_unless_permanent(None, None, Failed(data=JobFailedError("job-1", "bad prompt")))
        False
    """
    exc = getattr(state, "data", None)
    return not isinstance(exc, BaseException) or is_retryable(exc)


# Why NO_CACHE: the durable record of a submit is the job on the Sutro server, found again through the
# idempotency key. A Prefect result cache would replay a stale handle, pinning a retry to a job that has
# since FAILED or been CANCELLED instead of submitting anew (and would hash whole DataFrames).
_TASK_DEFAULTS: dict[str, Any] = {"cache_policy": NO_CACHE, "retry_condition_fn": retry_unless_permanent}


def _check_credentials(sutro_credentials: Any) -> SutroCredentials:
    if not isinstance(sutro_credentials, SutroCredentials):
        raise TypeError(
            "sutro_credentials must be a SutroCredentials block, e.g. SutroCredentials.load('sutro') or "
            f"SutroCredentials(api_key=..., api_url=...); got {type(sutro_credentials).__name__}")
    return sutro_credentials


def _client(sutro_credentials: Any) -> AsyncSutroClient:
    return _check_credentials(sutro_credentials).get_async_client()


async def _handle(job: JobRef, client: AsyncSutroClient) -> JobHandle:
    """The job's handle: as recorded, or rebuilt from a job id (a job submitted elsewhere)."""
    if isinstance(job, (JobHandle, dict)):
        return JobHandle.from_dict(job)
    job_id = job_id_of(job)
    model = job.model if isinstance(job, Job) else (await client.get_job(job_id)).model
    return JobHandle.watching(job_id, client.api_url, client.job_url(job_id), model=model)


async def _record(job_id: str, settled: bool = False, **fields: Any) -> None:
    """Update the flow run's job table; a settled job (terminal, or cancelled) is no longer tracked."""
    if settled:
        untrack_job(job_id)
    root = await current_root()
    if root is not None:
        await record_job(root[0], root[1], job_id, **fields)


async def _start(make_spec: Callable[[str | None], JobSpec], sutro_credentials: Any, key: str | None,
                 idempotency_scope: str | None, artifact_key: str | None) -> JobHandle:
    check_artifact_key(artifact_key)
    creds = _check_credentials(sutro_credentials)
    root, ctx, task_ctx = await current_root(), FlowRunContext.get(), TaskRunContext.get()
    # Jobs are named "<root flow name>/<step>" (45 characters at most) to be found again in the Sutro UI.
    step = artifact_key or (task_ctx.task_run.name if task_ctx else None)
    spec = make_spec("/".join(p for p in (root[1] if root else None, step) if p)[:45] or None)
    key = key or await prefect_idempotency_key(spec.fingerprint, idempotency_scope)
    # Only the key, no scope: a Prefect task called many times in one flow run (map, gather, several
    # sutro_batch_job subflows) shares one (flow, task) scope, and core cancels a scope's other live jobs.
    async with creds.get_async_client() as client:
        handle = await client.start(spec, idempotency_key=key)
    # An opted-out run's job must not be cancelled by its parent's hook either.
    cancel = not (ctx is not None and (ctx.parameters or {}).get(OPT_OUT_PARAMETER) is False)
    if cancel and ctx is not None and ctx.flow_run is not None and root is not None:
        track_job(handle.job_id, [str(ctx.flow_run.id), str(root[0])], creds)
    block_id = getattr(creds, "_block_document_id", None)
    # The durable record first: the runner-side cancellation hook finds the job through it.
    await publish_submission_artifact(handle, artifact_key, block_id, cancel)
    logger = get_run_logger()
    if handle.cost_estimate is not None:
        limit = "" if spec.max_cost_usd is None else f", within max_cost_usd=${spec.max_cost_usd:.6g}"
        logger.info("Dry run (before the submit) estimated $%.6g%s", handle.cost_estimate, limit)
    if handle.reattached:
        logger.info("Reattached to Sutro job %s (%s) with idempotency key %s: not submitting again",
                    handle.job_id, handle.status, key)
    else:
        logger.info("Submitted Sutro job %s on %s (%s rows): %s", handle.job_id, handle.model,
                    spec.request.num_rows, handle.url)
    if root is not None:
        await check_runner_cancellation(logger, root[0], handle.job_id, block_id is not None)
    await _record(handle.job_id, step=artifact_key or spec.request.name, url=handle.url, status=handle.status,
                  rows=spec.request.num_rows)
    emit_job_event("submitted", job_step(handle), **{"sutro.input.rows": spec.request.num_rows})
    return handle


def _job_fields(fields: dict[str, Any], default_name: str | None) -> dict[str, Any]:
    # Carried columns travel with the download (download_results_to_parquet(carry=...)), not the handle.
    return {"carry_columns": [], **fields, "name": fields.get("name") or default_name}


@task(name="submit_batch_inference", task_run_name="submit-{model}", **_TASK_DEFAULTS)
async def submit_batch_inference(data: Any, model: str, sutro_credentials: SutroCredentials, *,
                                 idempotency_key: str | None = None, idempotency_scope: str | None = None,
                                 artifact_key: str | None = None, **job_fields: Any) -> JobHandle:
    """Submit a batch inference job, or reattach to the one an earlier try of this step submitted; returns
    its ``JobHandle``. ``data``: strings, a DataFrame (with ``column``), a csv/parquet/txt file or an http(s)
    URL; ``job_fields`` are ``JobSpec.for_inference``'s (``column``, ``output_schema``, ``max_cost_usd``,
    ...); ``idempotency_scope`` runs two identical jobs on purpose in one flow run.

    Example:
        >>> handle = await submit_batch_inference(["great product", "arrived broken"], "all-minilm-l6-v2",
        ...                                       creds, max_cost_usd=1.0)   # doctest: +SKIP
    """
    return await _start(lambda name: JobSpec.for_inference(data, model, **_job_fields(job_fields, name)),
                        sutro_credentials, idempotency_key, idempotency_scope, artifact_key)


@task(name="submit_batch_function", task_run_name="submit-{function_name}", **_TASK_DEFAULTS)
async def submit_batch_function(function_name: str, data: Any, sutro_credentials: SutroCredentials, *,
                                idempotency_key: str | None = None, idempotency_scope: str | None = None,
                                artifact_key: str | None = None, **job_fields: Any) -> JobHandle:
    """Submit a Sutro Function over many rows as a batch job (retry-safe, like ``submit_batch_inference``);
    ``job_fields`` are ``JobSpec.for_function``'s (``columns``, ``job_priority``, ``max_cost_usd``, ...).

    Example:
        >>> handle = await submit_batch_function("ticket-triage", [{"text": "I was charged twice"}],
        ...                                      creds)   # doctest: +SKIP
    """
    return await _start(lambda name: JobSpec.for_function(function_name, data,
                                                          **_job_fields(job_fields, name)),
                        sutro_credentials, idempotency_key, idempotency_scope, artifact_key)


@task(name="wait_for_job", **_TASK_DEFAULTS)
async def wait_for_job(job: JobRef, sutro_credentials: SutroCredentials, timeout: float | None = DEFAULT_TIMEOUT_S,
                       poll_interval_seconds: float = 1.0, max_poll_interval_seconds: float = 30.0,
                       cancel_on_timeout: bool = True) -> Job:
    """``client.wait`` for at most ``timeout`` seconds from now; returns the SUCCEEDED ``Job``. FAILED raises
    ``JobFailedError``, CANCELLED ``JobCancelledError``; a timeout cancels the job (unless
    ``cancel_on_timeout=False``) and raises ``JobTimeoutError``.

    Example:
        >>> done = await wait_for_job(handle, creds, timeout=3600)   # doctest: +SKIP
    """
    logger = get_run_logger()
    async with _client(sutro_credentials) as client:
        handle = (await _handle(job, client)).with_overrides(
            timeout=timeout, cancel_on_timeout=cancel_on_timeout,
            poll=poll_policy(poll_interval_seconds, max_poll_interval_seconds))
        try:
            # Status changes go to the run's log, so the Prefect UI shows the job's progress.
            finished = await client.wait(
                handle, on_status=lambda st: logger.info("Sutro job %s is %s", handle.job_id, st.value))
        except JobError as exc:
            ended = isinstance(exc, (JobFailedError, JobCancelledError))
            if ended or getattr(exc, "cancelled", False):  # cancelled: the timeout cancelled it
                await _record(handle.job_id, True, status=exc.status if ended else "CANCELLED (timeout)")
                failed = isinstance(exc, JobFailedError)
                emit_job_event("failed" if failed else "cancelled",
                               job_step(handle, status="FAILED" if failed else "CANCELLED"), reason=str(exc))
            logger.error("Sutro job %s did not succeed: %s", handle.job_id, exc)
            raise
    await _record(handle.job_id, True, status=finished.status.value, rows=finished.num_rows,
                  cost=finished.job_cost)
    emit_job_event("succeeded", job_step(handle, finished))
    logger.info("Sutro job %s SUCCEEDED (%s rows, %s input / %s output tokens)", handle.job_id,
                finished.num_rows, finished.input_tokens, finished.output_tokens)
    return finished


@task(name="download_results_to_parquet", **_TASK_DEFAULTS)
async def download_results_to_parquet(job: JobRef, path: str, sutro_credentials: SutroCredentials,
                                      include_inputs: bool = False, create_artifacts: bool = True,
                                      preview_rows: int = 10, artifact_key: str | None = None,
                                      carry: Any = None, spec: JobSpec | None = None,
                                      storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``client.finish``: a SUCCEEDED job's results at ``path`` (local path or fsspec URI) in the one results
    shape, with ``carry``'s columns (row-aligned with the inputs, e.g. their ids), and each row's
    ``sutro_row_status``. ``spec`` (the submitted job's) lets its ``repair_rounds`` re-run the rows that are not
    ok. Returns the manifest dict; creates the preview, parquet link and summary artifacts unless
    ``create_artifacts=False``. ``storage_options``: fsspec's for an object-storage ``path``, secrets as
    ``Secret`` blocks or ``SecretStr`` (``prefect_sutro.storage``); without them the worker's AWS environment.

    Example:
        >>> manifest = await download_results_to_parquet(
        ...     handle, "s3://bucket/reviews.parquet", creds, carry=df.select("id"))  # doctest: +SKIP
    """
    check_artifact_key(artifact_key)
    if not isinstance(path, str) or not path.strip():
        raise ValueError("path must be a local file path or an fsspec URI such as 's3://bucket/out.parquet'")
    check_storage_options(storage_options)
    options = resolve_storage_options(storage_options)
    async with _client(sutro_credentials) as client:
        handle = (await _handle(job, client)).with_overrides(include_inputs=include_inputs)
        manifest = await client.finish(handle, carry=carry, destination=path, spec=spec, storage_options=options)
        details = await client.get_job(handle.job_id) if create_artifacts else None
    get_run_logger().info("Wrote %s rows of Sutro job %s to %s (%s bytes)", manifest.rows, handle.job_id,
                          manifest.uri, manifest.bytes)
    # The artifact is this task run's asset (its input: asset_deps, or the upstream step's artifact).
    materialize_results(handle, manifest, details, storage_options=options)
    if create_artifacts:
        preview = load_results(manifest, n_rows=preview_rows, storage_options=options) if preview_rows > 0 else None
        await publish_results_artifacts(manifest, details, preview, job_url=handle.url, key=artifact_key)
    await _record(handle.job_id, status="SUCCEEDED", rows=manifest.rows, cost=manifest.cost, uri=manifest.uri)
    return manifest.to_dict()


@task(name="run_function", task_run_name="run-{function_name}", **_TASK_DEFAULTS)
async def run_function(function_name: str, input_data: dict[str, Any],
                       sutro_credentials: SutroCredentials) -> FunctionResult:
    """Run a Sutro Function on one input, synchronously on the server (no batch job).

    Example:
        >>> r = await run_function("ticket-triage", {"text": "I was charged twice"}, creds)  # doctest: +SKIP
    """
    async with _client(sutro_credentials) as client:
        result = await client.run_function(function_name, input_data)
    get_run_logger().info("Function %s answered %r (confidence %s)", function_name,
                          result.label if result.is_classification else result.output, result.confidence)
    return result


@task(name="cancel_job", **_TASK_DEFAULTS)
async def cancel_job(job: JobRef, sutro_credentials: SutroCredentials) -> JobStatus:
    """Cancel a Sutro job unless it is already terminal; returns its status after the cancel.

    Example:
        >>> await cancel_job(handle, creds)   # doctest: +SKIP
        <JobStatus.CANCELLED: 'CANCELLED'>
    """
    async with _client(sutro_credentials) as client:
        handle = await _handle(job, client)
        await client.cancel(handle, reason="cancel_job was called")
        status = (await client.get_job(handle.job_id)).status
    await _record(handle.job_id, True, status=status.value)
    if status in (JobStatus.CANCELLING, JobStatus.CANCELLED):
        emit_job_event("cancelled", job_step(handle, status=status.value), reason="cancel_job was called")
    get_run_logger().info("Cancelled Sutro job %s (now %s)", handle.job_id, status.value)
    return status
