"""Run one Sutro job inside a Dagster step: cost gate, submit-or-reattach, record, wait, cancel on kill.

Everything that touches the network is a call into ``sutro_core``; this module only decides *when*
to call it and translates outcomes into Dagster concepts (events, ``Failure``).

Example:
    >>> from sutro_core import BatchJobRequest
    >>> req = BatchJobRequest.for_inference(["hello"], model="all-minilm-l6-v2")
    >>> outcome = yield from run_sutro_job(context, sutro, req)  # doctest: +SKIP
    >>> outcome.job.job_id, outcome.reattached  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import dataclass

from dagster import AssetExecutionContext, AssetObservation, DagsterExecutionInterruptedError, Failure, MetadataValue

from sutro_core import (
    BatchJobRequest,
    CostLimitExceededError,
    Job,
    JobCancelledError,
    JobFailedError,
    JobTimeoutError,
    SubmitOutcomeUnknownError,
    SutroClient,
    SutroError,
    idempotency_key,
)

from .resources import SutroResource

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOutcome:
    """A SUCCEEDED job and how the step got it."""

    job: Job
    job_url: str
    idempotency_key: str
    reattached: bool
    cost_estimate: float | None


def step_idempotency_key(context: AssetExecutionContext, fingerprint: str) -> str:
    """The key that stays the same across retries and re-executions of this asset partition.

    Scope: asset key, partition key, the run's *root* run id (so "re-execute from failure" finds the
    original job) and the request fingerprint (so changed inputs or prompts submit a new job).

    Example:
        >>> step_idempotency_key(context, req.fingerprint)  # doctest: +SKIP
        'dagster:...'
    """
    partition = context.partition_key if context.has_partition_key else ""
    root_run_id = context.run.root_run_id or context.run.run_id
    return idempotency_key(
        "dagster", context.asset_key.to_user_string(), partition, root_run_id, fingerprint=fingerprint
    )


def _observation(context: AssetExecutionContext, url: str, job_id: str, key: str, reattached: bool) -> AssetObservation:
    """The event that makes the job id durable in Dagster's event log before any waiting happens."""
    verb = "Reattached to" if reattached else "Submitted"
    context.log.info(f"{verb} Sutro job {job_id} ({url}); idempotency key {key}")
    return AssetObservation(
        asset_key=context.asset_key,
        partition=context.partition_key if context.has_partition_key else None,
        metadata={
            "sutro/job_id": MetadataValue.text(job_id),
            "sutro/job_url": MetadataValue.url(url),
            "sutro/idempotency_key": MetadataValue.text(key),
            "sutro/reattached": MetadataValue.bool(reattached),
        },
    )


def _cancel(context: AssetExecutionContext, client: SutroClient, job_id: str | None, key: str) -> None:
    """Best-effort cancel after a termination; the interrupt is re-raised by the caller regardless."""
    try:
        if job_id is None:
            # Interrupted mid-submit: the job may exist without us knowing its id.
            found = client.find_job(key)
            if found is None or found.is_terminal:
                return
            job_id = found.job_id
        status = client.cancel_job(job_id)
        context.log.warning(f"Run terminated: cancelled Sutro job {job_id} (now {getattr(status, 'value', status)})")
    except SutroError as exc:
        context.log.error(f"Run terminated but cancelling Sutro job {job_id} failed: {exc}")


def run_sutro_job(
    context: AssetExecutionContext,
    sutro: SutroResource,
    request: BatchJobRequest,
    *,
    max_cost_usd: float | None = None,
    estimate_cost: bool = False,
    timeout_seconds: float | None = None,
) -> Generator[AssetObservation, None, JobOutcome]:
    """Submit (or reattach to) the job for this step and wait until it SUCCEEDED.

    A generator for use with ``yield from`` inside an asset: it yields the ``AssetObservation``
    that records the job id (Dagster stores it at once, before the wait starts) and returns the
    ``JobOutcome``.

    Raises ``dagster.Failure`` (with the job id, link and the server's reason) when the job fails,
    is cancelled, times out, or the cost gate blocks it; re-raises Dagster's interrupt after
    cancelling the job when the run is terminated (unless ``cancel_on_termination=False``).

    Example:
        >>> @asset
        ... def scores(context, sutro: SutroResource):
        ...     outcome = yield from run_sutro_job(context, sutro, req, max_cost_usd=5.0)
        ...     yield Output(sutro.get_client().get_job_results(outcome.job.job_id))
    """
    client = sutro.get_client()
    key = step_idempotency_key(context, request.fingerprint)
    job_id: str | None = None
    try:
        try:
            # The core dry-runs (max_cost_usd / estimate_cost) only for a job it is about to submit:
            # a retry that reattaches was gated when its job was submitted and is not billed again.
            submission = client.submit_job(
                request, idempotency_key=key, max_cost_usd=max_cost_usd, estimate_cost=estimate_cost
            )
        except CostLimitExceededError as exc:
            raise Failure(
                description=f"Sutro cost gate: {exc}. No billed job was submitted.",
                metadata={
                    "sutro/cost_estimate_usd": MetadataValue.float(float(exc.estimate)),
                    "sutro/max_cost_usd": MetadataValue.float(float(exc.limit)),
                },
                allow_retries=False,
            ) from exc
        except SubmitOutcomeUnknownError as exc:
            # Never resubmitted here: a step retry looks the key up again first.
            raise Failure(description=f"Sutro submit outcome unknown: {exc}", allow_retries=True) from exc
        estimate = submission.cost_estimate
        if estimate is not None:
            limit = f" (limit ${max_cost_usd:.6g})" if max_cost_usd is not None else ""
            context.log.info(f"Sutro dry-run estimate: ${estimate:.6g}{limit}")
        job_id = submission.job_id
        url = client.job_url(job_id)
        yield _observation(context, url, job_id, key, submission.reattached)
        job = _wait(context, client, sutro, job_id, url, timeout_seconds)
    except (DagsterExecutionInterruptedError, KeyboardInterrupt):
        if sutro.cancel_on_termination:
            _cancel(context, client, job_id, key)
        else:
            context.log.info(f"Run terminated; leaving Sutro job {job_id} running (cancel_on_termination=False)")
        raise
    return JobOutcome(job=job, job_url=url, idempotency_key=key, reattached=submission.reattached, cost_estimate=estimate)


def _wait(
    context: AssetExecutionContext,
    client: SutroClient,
    sutro: SutroResource,
    job_id: str,
    url: str,
    timeout_seconds: float | None,
) -> Job:
    meta = {"sutro/job_id": MetadataValue.text(job_id), "sutro/job_url": MetadataValue.url(url)}
    try:
        return client.await_job_completion(
            job_id, timeout=timeout_seconds or sutro.timeout_seconds, obtain_results=False
        )
    except JobFailedError as exc:
        raise Failure(
            description=f"Sutro job {job_id} FAILED: {exc.reason or 'no reason given'}",
            metadata={**meta, "sutro/failure_reason": MetadataValue.text(exc.reason or "")},
        ) from exc
    except JobCancelledError as exc:
        raise Failure(
            description=f"Sutro job {job_id} was CANCELLED outside this run; a cancelled job is never a success",
            metadata=meta,
        ) from exc
    except JobTimeoutError as exc:
        raise Failure(
            description=f"Sutro job {job_id} did not finish in time: {exc}. A retry or re-execution of this "
            "step reattaches to it instead of submitting again.",
            metadata=meta,
        ) from exc
