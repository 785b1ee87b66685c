"""Run one Sutro job inside a Dagster step: the core lifecycle (``SutroClient.stages``) in Dagster terms.

What Dagster adds: the step's scope (asset key, partition, root run id), the ``AssetObservation`` that
records the job handle before the wait, and the mapping of errors onto ``Failure`` (retryable or not).

Example:
    >>> spec = JobSpec.for_inference(["hello"], "all-minilm-l6-v2")
    >>> outcome = yield from run_sutro_job(context, sutro, spec)  # doctest: +SKIP
    >>> outcome.manifest.uri, outcome.handle.reattached  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from dagster import AssetExecutionContext, AssetObservation, Failure, MetadataValue

from sutro_core import (
    CostLimitExceededError,
    JobFailedError,
    JobHandle,
    JobOutcome,
    JobSpec,
    SutroError,
    idempotency_key,
    is_retryable,
)
from sutro_core.errors import describe

from .metadata import attribute_metadata
from .resources import SutroResource


def step_scope(context: AssetExecutionContext) -> tuple[str, ...]:
    """What stays the same across retries and re-executions of this asset partition.

    Asset key, partition key and the run's *root* run id (so "re-execute from failure" finds the original
    job); the core adds the spec's fingerprint, so changed inputs or prompts submit a new job.

    Example:
        >>> step_scope(context)  # doctest: +SKIP
        ('dagster', 'ticket_labels', '2026-01-03', '5c1f...')
    """
    partition = context.partition_key if context.has_partition_key else ""
    root_run_id = context.run.root_run_id or context.run.run_id
    return ("dagster", context.asset_key.to_user_string(), partition, root_run_id)


def step_idempotency_key(context: AssetExecutionContext, fingerprint: str) -> str:
    """The idempotency key of this asset partition for a job with ``fingerprint`` (see ``step_scope``).

    Example:
        >>> step_idempotency_key(context, spec.fingerprint)  # doctest: +SKIP
    """
    return idempotency_key(*step_scope(context), fingerprint=fingerprint)


def _observation(context: AssetExecutionContext, handle: JobHandle) -> AssetObservation:
    """The event that makes the job handle durable in Dagster's event log before any waiting happens."""
    verb = "Reattached to" if handle.reattached else "Submitted"
    # The dry run (when the spec has a cost gate) ran before the submit, so it is said first, on one line.
    estimate = "" if handle.cost_estimate is None else f"after a dry run estimated ${handle.cost_estimate:.6g}: "
    reused = "" if handle.rows_from_store is None else (
        f"; {handle.rows_from_store} rows reused from the row store, {handle.rows_submitted} distinct rows sent")
    if handle.has_job:
        context.log.info(f"{estimate}{verb} Sutro job {handle.job_id} ({handle.url}); idempotency key "
                         f"{handle.idempotency_key}{reused}")
    else:
        context.log.info(f"Every row's result is in the row store {handle.output.row_store}: no Sutro job needed"
                         f"{reused}")
    return AssetObservation(
        asset_key=context.asset_key,
        partition=context.partition_key if context.has_partition_key else None,
        metadata=attribute_metadata({
            "sutro.job.id": handle.job_id, "sutro.job.url": handle.url,
            "sutro.job.idempotency_key": handle.idempotency_key or "",
            "sutro.job.reattached": handle.reattached, "sutro.job.handle": handle.to_dict(),
            "sutro.input.rows_submitted": handle.rows_submitted,
            "sutro.input.rows_from_store": handle.rows_from_store}),
    )


def _failure(exc: SutroError, handle: JobHandle | None) -> Failure:
    """The Dagster ``Failure`` for a core error: retryable only when a retry can help (``is_retryable``)."""
    meta: dict[str, Any] = (attribute_metadata({"sutro.job.id": handle.job_id, "sutro.job.url": handle.url})
                            if handle else {})
    if isinstance(exc, CostLimitExceededError):
        meta.update({"sutro.cost.estimate_usd": MetadataValue.float(float(exc.estimate)),
                     "sutro.cost.max_usd": MetadataValue.float(float(exc.limit))})
    elif isinstance(exc, JobFailedError):
        meta["sutro.job.failure_reason"] = MetadataValue.text(exc.reason or "")
    return Failure(description=describe(exc), metadata=meta, allow_retries=is_retryable(exc))


def prepare_spec(spec: JobSpec, sutro: SutroResource, *, output_uri: str,
                 timeout_seconds: float | None = None) -> JobSpec:
    """The spec with this resource's waiting settings and the step's artifact location.

    Example:
        >>> prepare_spec(spec, sutro, output_uri="/tmp/x.parquet").timeout  # doctest: +SKIP
    """
    return spec.with_(
        output_uri=output_uri, timeout=timeout_seconds or sutro.timeout_seconds, poll=sutro.poll_policy(),
        cancel_on_interrupt=sutro.cancel_on_termination, cancel_on_timeout=sutro.cancel_on_timeout,
    )


def run_sutro_job(
    context: AssetExecutionContext, sutro: SutroResource, spec: JobSpec
) -> Generator[AssetObservation, None, JobOutcome]:
    """Start (or reattach to) this step's job, record its handle, wait, and write the results artifact.

    A generator for ``yield from`` inside an asset: it yields the ``AssetObservation`` with the handle
    (Dagster stores it at once, before the wait) and returns the core's ``JobOutcome``. Raises
    ``dagster.Failure`` (``allow_retries`` only when a retry can help) for core errors; a terminated run
    cancels the job (unless ``cancel_on_termination=False``) and re-raises Dagster's interrupt.

    Example:
        >>> @asset
        ... def scores(context, sutro: SutroResource):
        ...     outcome = yield from run_sutro_job(context, sutro, prepare_spec(spec, sutro, output_uri=uri))
        ...     yield Output(None, metadata={"rows": outcome.manifest.rows})
    """
    started: list[JobHandle] = []

    def announce(handle: JobHandle) -> AssetObservation:
        started.append(handle)
        return _observation(context, handle)

    try:  # what Dagster throws in at the observation's yield (a termination) goes to the core's stages
        return (yield from sutro.get_client().stages(spec, scope=step_scope(context), announce=announce))
    except SutroError as exc:
        raise _failure(exc, started[0] if started else None) from exc
