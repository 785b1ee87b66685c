"""The job lifecycle, once for every orchestrator and both clients: start, wait, finish, cancel, and the
whole step (``step_op``) with its interrupt-cancel rule.

Every operation is a generator of effects (see ``operations``) that ``SutroClient`` and
``AsyncSutroClient`` drive the same way; what flows through them (``JobSpec``, ``JobHandle``,
``JobOutcome``) is in ``spec``.

- ``start_op``: reattach to a live job under the step's key (no dry run, no submit), or cost-gate
  (``max_cost_usd``: a dry run first), cancel a live job of the same scope whose inputs changed, submit
  once (never auto-retried; a lost answer is looked up by key), and close the same-key race.
- ``wait_op``: deadline-bound; at the deadline cancels (unless the spec opted out) and raises.
- ``finish_op``: the one results shape, written atomically; ``cancel_op``: bounded, never raises.
- ``step_op``: start, hand over the handle (``Started``: the orchestrator records it), wait, finish. An
  interruption (a ``BaseException`` that is not an ``Exception``: kill, termination, task cancellation)
  cancels the job unless ``cancel_on_interrupt`` is off; ordinary errors leave it for the retry.

Rules (docs/architecture.md states them for users): a retry with unchanged inputs reattaches and never
cancels; a kill, termination, timeout or flow cancellation cancels; changed inputs submit anew and cancel the
old live job; a cancelled job is never success; errors a retry cannot fix are not retried (``is_retryable``).

Example:
    >>> spec = JobSpec.for_inference(["I love it"], "all-minilm-l6-v2", output_uri="out/emb.parquet")
    >>> outcome = client.run(spec, scope=("my-pipeline", "embed", "2026-12-01"))     # doctest: +SKIP
    >>> outcome.manifest.rows                                                        # doctest: +SKIP
    1
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from . import operations as ops, protocol, row_reuse
from .errors import (
    CostLimitExceededError,
    InputValidationError,
    JobError,
    JobTimeoutError,
    RateLimitError,
    RowsFailedError,
    ServerError,
    SubmitOutcomeUnknownError,
    SutroAPIError,
    SutroConnectionError,
    SutroError,
)
from .idempotency import idempotency_key as make_key, key_in_description, scope_in_description
from .models import Job, JobStatus, ResultsManifest, Submission
from .operations import Blocking, Op, Sleep, Started, log
from .request import BatchJobRequest
from .results import row_status
from .results.shape import FINISH_REASON, OUTPUTS, shape_file
from .results.targets import METADATA_PREFIX, discard, finalize, job_metadata, prepare_target
from .retrying import DeadlineReached, PollPolicy, RetryPolicy
from .spec import JobHandle, JobOutcome, JobSpec, carry_frame, check_max_cost, step_key

#: How long a cancel may take (an interrupted step has little time: Airflow gives on_kill 30 s).
CANCEL_TIMEOUT_S = 20.0
DEFAULT_DOWNLOAD_TIMEOUT_S = 3600.0
#: How long a dry run (the cost gate's estimate) may take.
ESTIMATE_TIMEOUT_S = 600.0


# ---- start: reattach, or cost-gate and submit once --------------------------------------------------

def submit_op(
    policy: RetryPolicy,
    request: BatchJobRequest,
    idempotency_key: str | None,
    reattach: bool = True,
    *,
    poll: PollPolicy | None = None,
    max_cost_usd: float | None = None,
    estimate_cost: bool = False,
    scope: str | None = None,
) -> Op[Submission]:
    """Submit once, or reattach to the job an earlier try submitted under the same key.

    A QUEUED/STARTING/RUNNING/SUCCEEDED job with the key is reattached to; none, or only FAILED or
    CANCELLED ones, means submit. Only a job about to be submitted is dry-run first, when
    ``max_cost_usd`` is set (``CostLimitExceededError`` above it, before anything billed) or
    ``estimate_cost`` asks for the estimate: a reattaching retry was gated when its job was submitted.
    The submit itself is never retried: when its response is lost (5xx/524 or a dropped connection
    after sending), the key is looked up again; if no new job shows up, ``SubmitOutcomeUnknownError``
    is raised and nothing is resubmitted. A fresh submit then closes the same-key race (``close_race``);
    with ``scope``, live jobs of the same step under another key (its inputs changed) are cancelled.
    """
    check_max_cost(max_cost_usd)
    payload = request.payload(idempotency_key, scope)  # validates before any request
    known: set[str] = set()
    if idempotency_key and reattach:
        for job in (yield from ops.jobs_with_key(policy, idempotency_key)):
            if job.status.is_reattachable:
                log.info("reattaching to job %s (%s) for key %s: nothing submitted", job.job_id, job.status.value,
                         idempotency_key)
                return Submission(job_id=job.job_id, reattached=True, status=job.status,
                                  idempotency_key=idempotency_key)
            known.add(job.job_id)
    estimate: float | None = None
    if max_cost_usd is not None or estimate_cost:
        estimate = yield from estimate_op(policy, poll or PollPolicy(), request)
        if max_cost_usd is not None and estimate > max_cost_usd:
            raise CostLimitExceededError(estimate, max_cost_usd)
    if scope and idempotency_key:
        for old in (yield from live_jobs_of_scope(policy, scope, idempotency_key)):
            yield from ops.cancel_quietly(policy, old.job_id, "the step's inputs changed (a new job replaces it)")
    try:
        job_id, deduped = yield from ops.send(policy, protocol.submit_call(payload))
    except SutroConnectionError as exc:
        if isinstance(exc.__cause__, ops.NOT_SENT):
            raise
        lost: Exception = exc
    except ServerError as exc:
        lost = exc
    else:
        if deduped:
            log.info("the server answered with job %s, which already carries key %s: reattached", job_id,
                     idempotency_key)
            return Submission(job_id=job_id, reattached=True, status=JobStatus.QUEUED,
                              idempotency_key=idempotency_key)
        if request.dry_run:
            log.info("dry run %s submitted to estimate the cost of %s rows on %s", job_id, request.num_rows,
                     request.model)
        else:
            log.info("submitted job %s (%s, %s rows)", job_id, request.model, request.num_rows)
        if idempotency_key and reattach:
            kept = yield from close_race(policy, idempotency_key, job_id)
            if kept != job_id:
                log.info("a concurrent try submitted job %s first; reattaching to it", kept)
                return Submission(job_id=kept, reattached=True, status=JobStatus.QUEUED,
                                  idempotency_key=idempotency_key)
        return Submission(job_id=job_id, reattached=False, status=JobStatus.QUEUED, idempotency_key=idempotency_key,
                          cost_estimate=estimate)
    if not idempotency_key:
        raise SubmitOutcomeUnknownError(
            f"the submit's response was lost ({lost}); a job may have been created. "
            "Check list_jobs() before submitting again (pass idempotency_key= to recover automatically)",
            idempotency_key=None,
        ) from lost
    log.warning("submit response lost (%s); looking the job up by idempotency key %s", lost, idempotency_key)
    for attempt in range(1, 6):  # about 15 s with the default policy
        yield Sleep(policy.delay(attempt, jitter=False))
        try:
            matches = yield from ops.jobs_with_key(policy, idempotency_key)
        except (SutroConnectionError, ServerError):
            continue
        fresh = [j for j in matches if j.job_id not in known]
        if fresh:
            log.info("recovered job %s from a lost submit response", fresh[0].job_id)
            return Submission(job_id=fresh[0].job_id, reattached=True, status=fresh[0].status,
                              idempotency_key=idempotency_key, cost_estimate=estimate)
    raise SubmitOutcomeUnknownError(
        f"the submit's response was lost ({lost}) and no job with idempotency key {idempotency_key} appeared; "
        "nothing was resubmitted. Retry the step: it looks the key up again before submitting",
        idempotency_key=idempotency_key,
    ) from lost


def estimate_op(policy: RetryPolicy, poll: PollPolicy, request: BatchJobRequest,
                timeout: float = ESTIMATE_TIMEOUT_S) -> Op[float]:
    """Run the request as a dry run and return its cost estimate in dollars (nothing is billed)."""
    submission = yield from submit_op(policy, request.as_dry_run(), None)
    job = yield from ops.poll_until_done(policy, poll, submission.job_id, timeout=timeout)
    if job.cost_estimate is None:
        raise SutroAPIError(200, f"dry run {job.job_id} finished without a cost_estimate")
    estimate = float(job.cost_estimate)
    log.info("dry run %s: cost estimate $%.6g", job.job_id, estimate)
    return estimate


def close_race(policy: RetryPolicy, key: str, job_id: str) -> Op[str]:
    """After a submit under ``key``: keep the earliest live job with that key, cancel later duplicates.

    Two tries that submitted at the same moment both see both jobs and agree on the earliest; the later
    one cancels its own job and reattaches. Residual window: a listing that does not show a job created
    a moment ago (an eventually consistent list) lets both survive; sutro-local closes it server-side.
    """
    live = [j for j in (yield from ops.jobs_with_key(policy, key)) if j.status.is_reattachable]
    if not live:
        return job_id
    keep = min(live, key=ops.created_order)
    for dup in live:
        if dup.job_id != keep.job_id:
            yield from ops.cancel_quietly(policy, dup.job_id, f"it duplicates job {keep.job_id} (same idempotency key)")
    return keep.job_id


def live_jobs_of_scope(policy: RetryPolicy, scope: str, other_than_key: str) -> Op[list[Job]]:
    """Live (not terminal) jobs of a step ``scope`` submitted under another key: an earlier try's job whose
    inputs have changed since."""
    jobs = yield from ops.send(policy, protocol.list_jobs_call())
    return [j for j in jobs if scope_in_description(j.description) == scope and not j.is_terminal
            and key_in_description(j.description) != other_than_key]


class LifecycleClient(Protocol):
    """What the lifecycle needs of a client (``SutroClient`` and ``AsyncSutroClient`` both are one)."""

    retry: RetryPolicy
    poll: PollPolicy
    api_url: str

    def job_url(self, job_id: str) -> str: ...


def start_op(client: LifecycleClient, spec: JobSpec, scope: Sequence[Any] | None,
             idempotency_key: str | None) -> Op[JobHandle]:
    """Find/reattach, cost-gate, submit once, close the race, cancel a superseded job -> the handle."""
    key, sid = step_key(spec, scope, idempotency_key)
    return (yield from _start_op(client, spec, key, sid))


def _start_op(client: LifecycleClient, spec: JobSpec, key: str, scope: str | None) -> Op[JobHandle]:
    request, counts = spec.request, {}
    if spec.row_store is not None:
        plan = yield Blocking(lambda: row_reuse.plan(spec, key))
        request = plan.request(spec.request)
        counts = {"rows_submitted": plan.submitted.len(), "rows_from_store": plan.from_store()}
        log.info("row store %s: %d of %d rows stored, %d distinct rows to send", spec.row_store,
                 counts["rows_from_store"], plan.keys.len(), plan.submitted.len())
        del plan  # its keys are not needed while the rows are sent
    now = time.time()
    fields: dict[str, Any] = dict(
        idempotency_key=key, scope=scope, api_url=client.api_url, started_at=now,
        deadline=None if spec.timeout is None else now + spec.timeout,
        poll=None if spec.poll is None else spec.poll.to_dict(), model=spec.request.model,
        is_function=spec.request.is_function, output=spec.output, cancel_on_timeout=spec.cancel_on_timeout,
        cancel_on_interrupt=spec.cancel_on_interrupt, **counts)
    if counts and not counts["rows_submitted"]:  # every row is stored: nothing to send, nothing to pay
        return JobHandle(job_id=None, url=None, status=JobStatus.SUCCEEDED.value, **fields)
    sub = yield from submit_op(client.retry, request, key, poll=client.poll, max_cost_usd=spec.max_cost_usd,
                               estimate_cost=spec.estimate_cost, scope=scope)
    return JobHandle(job_id=sub.job_id, url=client.job_url(sub.job_id), reattached=sub.reattached,
                     status=sub.status.value, cost_estimate=sub.cost_estimate, **fields)


# ---- wait, finish, cancel -----------------------------------------------------------------------------

class RepairPending(Exception):
    """``finish(..., defer_repairs=True)``: a repair round's job was just submitted (or is still running);
    wait for ``handle`` (the repair job's) the orchestrator's own way, then call ``finish`` again, which
    replays the rounds done (reattaching to their jobs) and goes on. Not an error: a step in a deferral.

    Example:
        >>> try:
        ...     manifest = client.finish(handle, spec=spec, defer_repairs=True)
        ... except RepairPending as pending:
        ...     defer_on(pending.handle)   # doctest: +SKIP
    """

    def __init__(self, handle: JobHandle, round_: int) -> None:
        super().__init__(f"repair round {round_}: job {handle.job_id} is running")
        self.handle = handle
        self.round = round_


def wait_op(client: LifecycleClient, handle: JobHandle | dict[str, Any],
            on_status: Callable[[JobStatus], None] | None) -> Op[Job | None]:
    """Wait until SUCCEEDED within the handle's deadline; at the deadline cancel (unless opted out) and raise.
    A handle without a job (every row stored) returns None at once."""
    handle = JobHandle.from_dict(handle)
    if handle.job_id is None:
        return None
    retry, poll = client.retry, client.poll
    try:
        return (yield from ops.poll_until_done(retry, handle.poll_policy() or poll, handle.job_id, timeout=None,
                                            deadline=handle.deadline, on_status=on_status))
    except JobTimeoutError as exc:
        if not handle.cancel_on_timeout:
            raise
        cancelled = yield from ops.cancel_quietly(retry, handle.job_id, "it did not finish before its deadline",
                                                  time.time() + CANCEL_TIMEOUT_S)
        raise JobTimeoutError(handle.job_id, exc.status, exc.waited, cancelled=cancelled) from exc


def _shape_in_place(path: Path, carry: pl.DataFrame | None, handle: JobHandle, job: Job | None,
                    job_id: str | None) -> dict[str, Any]:
    out = path.with_suffix(".shaped.part")
    metadata = job_metadata(job) if job is not None else {
        f"{METADATA_PREFIX}model": str(handle.model), f"{METADATA_PREFIX}rows_from_store": str(handle.rows_from_store)}
    try:
        counts = shape_file(path, out, carry=carry, output_column=handle.output.column,
                            json_schema=handle.output.json_schema, metadata=metadata, job_id=job_id)
        os.replace(out, path)
    finally:
        out.unlink(missing_ok=True)
    return {"row_status_counts": counts}


def finish_op(client: LifecycleClient, handle: JobHandle | dict[str, Any], carry: Any, destination: Any,
              storage_options: dict[str, Any] | None, timeout: float | None,
              spec: JobSpec | None = None, defer_repairs: bool = False) -> Op[ResultsManifest]:
    """Download the SUCCEEDED job's results once, put in the rows the row store holds (``row_store``),
    repair the rows that are not ``ok`` (``repair_rounds``), add the rows this step paid for to the store,
    and write the one results shape (with ``carry``'s columns, row-aligned), atomically. Row reuse and
    repairs need ``spec`` (the step's rows). Past ``max_failed_rows`` it raises ``RowsFailedError`` after
    writing. ``defer_repairs``: raise ``RepairPending`` instead of waiting for a repair job here."""
    handle = JobHandle.from_dict(handle)
    if carry is not None and not isinstance(carry, pl.DataFrame):
        carry = carry_frame(carry, None)
    dest = destination if destination is not None else handle.output.uri
    if dest is None:
        raise InputValidationError("output_uri", "say where the results go: JobSpec(output_uri=...) or destination=")
    if handle.output.row_store is not None and (spec is None or spec.row_store != handle.output.row_store):
        raise InputValidationError(
            "spec", f"this step reuses rows from {handle.output.row_store}: finish(handle, spec=spec) with the "
            "step's spec, which holds its rows")
    fmt = handle.output.format
    target = prepare_target(dest, fmt, storage_options)
    job: Job | None = None
    if handle.job_id is not None:
        job = yield from ops.download(client.retry, handle.job_id, target, timeout, result_format=fmt,
                                      include_inputs=handle.output.include_inputs and handle.output.row_store is None)
    extra: dict[str, Any] = {"job_ids": [] if job is None else [job.job_id]}
    if fmt == "parquet" and (handle.output.repair_rounds or handle.output.row_store):
        try:
            extra = yield from _rows_op(client, handle, spec, target.tmp_path, job, defer_repairs)
        except BaseException:
            discard(target)
            raise
    transform = ((lambda path: _shape_in_place(path, carry, handle, job, handle.job_id)) if fmt == "parquet"
                 else None)
    manifest = yield Blocking(lambda: finalize(target, job, fmt, transform))
    manifest = manifest.model_copy(update={"model": manifest.model or handle.model, **extra})
    if manifest.row_status_counts is not None and manifest.failed_rows > handle.output.failed_rows_allowed(manifest.rows):
        raise RowsFailedError(manifest, handle.output.max_failed_rows)
    return manifest


def _total(values: list[Any]) -> Any:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _rows_op(client: LifecycleClient, handle: JobHandle, spec: JobSpec | None, raw_path: Path,
             main: Job | None, defer_repairs: bool = False) -> Op[dict[str, Any]]:
    """The per-row part of ``finish``: rewrite ``raw_path`` (the main job's raw results, when there is a job)
    as the step's raw results with a ``sutro_job_id`` column: stored rows put in (``row_store``), rows that are
    not ``ok`` repaired (``repair_rounds``), the new ``ok`` rows added to the store. Returns the manifest's
    extra fields (every job, their cost and tokens, rows sent and reused)."""
    rows = None if spec is None else spec.request.inputs.inline
    if rows is None:
        log.warning("job %s: repair_rounds needs the step's inline rows (the spec; not a URL input); its rows "
                    "that are not ok stay as they are", handle.job_id)
        return {}
    plan = store = None
    if handle.output.row_store is not None:
        assert spec is not None and handle.idempotency_key is not None
        store = row_reuse.open_store(spec)
        plan = yield Blocking(lambda: row_reuse.plan(spec, handle.idempotency_key))
        # The job's results are read inside assemble and referenced nowhere else: the table shares their
        # strings, and a reference held here would keep the whole frame alive beside it.
        table = yield Blocking(lambda: row_reuse.assemble(
            plan, None if main is None else pl.read_parquet(raw_path), store, handle.job_id))
    else:
        table = yield Blocking(lambda: pl.read_parquet(raw_path))
        table = table.with_columns(pl.lit(handle.job_id).alias(row_status.ROW_JOB_ID))
    status = _statuses_of(table, handle.output.json_schema, _expects_objects(handle, table))
    repairs: list[Job] = []
    if handle.output.repair_rounds:
        assert spec is not None
        distinct_rows = rows if plan is None else [rows[i] for i in plan.first_rows]
        table, status, repairs = yield from _repair_op(client, handle, spec, table, distinct_rows, status, main,
                                                       defer_repairs)
    every = [j for j in [main, *repairs] if j is not None]
    extra: dict[str, Any] = {"job_ids": [j.job_id for j in every]}
    if repairs:
        extra |= {"cost": _total([j.job_cost if j.job_cost is not None else j.cost_estimate for j in every]),
                 "input_tokens": _total([j.input_tokens for j in every]),
                 "output_tokens": _total([j.output_tokens for j in every])}
    if plan is None:
        yield Blocking(lambda: table.write_parquet(raw_path))
        return extra
    assert store is not None
    paid_by = {j.job_id for j in every}
    added = yield Blocking(lambda: row_reuse.remember(store, table, status, paid_by))
    yield Blocking(lambda: row_reuse.fan_out(plan, table, rows, handle.output.include_inputs, raw_path))
    from_store = yield Blocking(lambda: row_reuse.reused(raw_path, paid_by))
    log.info("row store %s: %d rows reused, %d distinct rows paid for, %d added to the store",
             handle.output.row_store, from_store, plan.submitted.len(), added)
    if not every:
        extra.update(cost=0.0, input_tokens=0, output_tokens=0)
    return {**extra, "rows_submitted": plan.submitted.len(), "rows_from_store": from_store}


def _repair_op(client: LifecycleClient, handle: JobHandle, spec: JobSpec, table: pl.DataFrame, rows: list[Any],
               status: pl.Series, main: Job | None,
               defer: bool = False) -> Op[tuple[pl.DataFrame, pl.Series, list[Job]]]:
    """Up to ``repair_rounds`` follow-up jobs of only the rows of ``table`` (one raw results row per row of
    ``rows``, with ``sutro_job_id``) whose ``status`` is not ``ok``, each merged back in place (a row keeps
    the better of its outputs: a paid row is never thrown away). Returns the table, its statuses and the
    repair jobs.

    Retry-safe: round r's rows are the rows not ok after round r-1 (what immutable results say), and its
    key derives from the step's key, r and those rows, so a retry at any point reattaches to the same jobs.
    A cut row goes again with twice the ``max_tokens``. The cost gate covers repairs: each is dry-run
    against what ``max_cost_usd`` leaves after the main job's cost, and one over it ends the repairs.
    ``defer``: a round whose job this call submitted, or which is still running, raises ``RepairPending``.
    """
    request = spec.request
    schema, objects = handle.output.json_schema, _expects_objects(handle, table)
    sampling = dict(request.sampling_params or {})
    # What the main job cost (its estimate when the server has not priced it; a reattached retry has no
    # estimate of its own) comes off the budget first.
    costs = () if main is None else (main.job_cost, main.cost_estimate, handle.cost_estimate)
    spent = next((c for c in costs if c is not None), 0.0)
    budget = None if spec.max_cost_usd is None else max(0.0, spec.max_cost_usd - spent)
    repairs: list[Job] = []
    for round_ in range(1, handle.output.repair_rounds + 1):
        bad = status.ne(row_status.OK).arg_true()
        if bad.is_empty():
            break
        if isinstance(sampling.get("max_tokens"), int) and (status.gather(bad) == row_status.CUT).any():
            sampling["max_tokens"] *= 2
        again = dataclasses.replace(request, inputs=dataclasses.replace(request.inputs, inline=[rows[i] for i in bad]),
                                    sampling_params=sampling or None)
        key = make_key(handle.idempotency_key or handle.job_id, f"repair-{round_}", fingerprint=again.fingerprint)
        sub: Submission | None = None
        try:
            sub = yield from submit_op(client.retry, again, key, poll=client.poll, max_cost_usd=budget)
            if defer and (not sub.reattached or not sub.status.is_terminal):
                raise RepairPending(handle.model_copy(update={
                    "job_id": sub.job_id, "idempotency_key": key, "url": client.job_url(sub.job_id),
                    "reattached": sub.reattached, "status": sub.status.value, "cost_estimate": sub.cost_estimate,
                    "rows_submitted": len(again.inputs.inline or []), "rows_from_store": None}), round_)
            job = yield from ops.poll_until_done(client.retry, handle.poll_policy() or client.poll, sub.job_id,
                                                 timeout=None, deadline=handle.deadline)
        except (CostLimitExceededError, JobError, SutroAPIError) as exc:
            # What a retry cannot change ends the repairs (the artifact keeps the rows as they are); a
            # transient error fails the step, whose retry reattaches to this round's job.
            if isinstance(exc, SutroAPIError) and (not 400 <= exc.status_code < 500 or isinstance(exc, RateLimitError)):
                raise
            if isinstance(exc, JobTimeoutError) and sub is not None and handle.cancel_on_timeout:
                yield from ops.cancel_quietly(client.retry, sub.job_id, "the step's deadline passed",
                                              time.time() + CANCEL_TIMEOUT_S)
            log.warning("job %s: repair round %d ended the repairs (%s); %d rows stay not ok", handle.job_id,
                        round_, exc, bad.len())
            break
        log.info("job %s: repair round %d, job %s, re-ran %d rows", handle.job_id, round_, job.job_id, bad.len())
        if budget is not None:
            budget = max(0.0, budget - (sub.cost_estimate or 0))  # 0 still allows free repairs
        fixed = yield from _download_frame(client, job.job_id)
        fixed_status = _statuses_of(fixed, schema, objects)
        # A row takes the repair's output unless it is worse (a cut row's longer try is kept over the first).
        better = _rank(fixed_status) <= _rank(status.gather(bad))
        where = bad.filter(better)
        columns = [c for c in table.columns if c in fixed.columns]
        table = table.with_columns(
            *[table[c].scatter(where, fixed[c].filter(better).cast(table[c].dtype)) for c in columns],
            table[row_status.ROW_JOB_ID].scatter(where, job.job_id))
        status = status.scatter(where, fixed_status.filter(better))
        repairs.append(job)
    return table, status, repairs


def _expects_objects(handle: JobHandle, table: pl.DataFrame) -> bool:
    first = table[OUTPUTS].drop_nulls().head(1).to_list() if table[OUTPUTS].dtype == pl.String else []
    return handle.is_function and bool(first) and first[0].lstrip().startswith("{")


def _statuses_of(table: pl.DataFrame, schema: dict[str, Any] | None, objects: bool) -> pl.Series:
    finish = table[FINISH_REASON] if FINISH_REASON in table.columns else None
    return row_status.statuses(table[OUTPUTS], finish, schema, expect_objects=objects)


def _rank(status: pl.Series) -> pl.Series:
    return status.replace_strict(list(row_status.STATUSES), list(range(len(row_status.STATUSES))))


def _download_frame(client: LifecycleClient, job_id: str) -> Op[pl.DataFrame]:
    """A SUCCEEDED job's raw results as a DataFrame (through a temp file, removed after)."""
    fd, tmp = tempfile.mkstemp(prefix="sutro-repair-", suffix=".parquet.part")
    os.close(fd)
    try:
        yield from ops.send(client.retry, protocol.results_file_call(job_id, stream_to=tmp))
        return (yield Blocking(lambda: pl.read_parquet(tmp)))
    finally:
        os.unlink(tmp)


def cancel_op(client: LifecycleClient, target: JobHandle | dict[str, Any] | str, reason: str) -> Op[bool]:
    """Cancel the job of a handle (or a job id) unless it is terminal, within ``CANCEL_TIMEOUT_S``; never
    raises a ``SutroError``."""
    job_id = target if isinstance(target, str) else JobHandle.from_dict(target).job_id
    return (yield from _cancel_op(client.retry, job_id, None, reason))


def _cancel_op(retry: RetryPolicy, job_id: str | None, key: str | None, reason: str) -> Op[bool]:
    """Cancel a job (or, with only a key, every live job carrying it: an interrupt mid-submit)."""
    deadline = time.time() + CANCEL_TIMEOUT_S
    try:
        if job_id is None:
            if key is None:
                return False
            targets = [j.job_id for j in (yield from ops.jobs_with_key(retry, key, deadline)) if not j.is_terminal]
        else:
            status = yield from ops.send(retry, protocol.get_job_status_call(job_id), deadline)
            targets = [] if status.is_terminal else [job_id]
    except (SutroError, DeadlineReached) as exc:
        log.warning("could not look up job %s to cancel it (%s); it may still be running: %s",
                    job_id or f"with key {key}", reason, exc)
        return False
    accepted = False
    for target in targets:
        accepted = (yield from ops.cancel_quietly(retry, target, reason, deadline)) or accepted
    return accepted


# ---- the whole step ---------------------------------------------------------------------------------

def interrupted(exc: BaseException, spec: JobSpec | JobHandle) -> bool:
    """Whether ``exc`` is an interruption that cancels the job: a kill, a termination or a task
    cancellation (any BaseException that is not an Exception), unless ``cancel_on_interrupt`` is off.
    Ordinary errors never cancel: the retry reattaches."""
    return not isinstance(exc, Exception) and spec.cancel_on_interrupt


def step_op(client: LifecycleClient, spec: JobSpec, scope: Sequence[Any] | None, idempotency_key: str | None,
            on_status: Callable[[JobStatus], None] | None, destination: Any,
            storage_options: dict[str, Any] | None) -> Op[JobOutcome]:
    """The whole step: start, ``Started(handle)`` (the driver hands the handle to the orchestrator, which
    records it), wait, finish. An interruption anywhere, the orchestrator's own included (the driver throws
    it in at ``Started``), cancels the job unless ``spec.cancel_on_interrupt`` is False, then re-raises;
    ordinary errors and a generator closed unfinished cancel nothing."""
    key, sid = step_key(spec, scope, idempotency_key)
    handle: JobHandle | None = None
    try:
        handle = yield from _start_op(client, spec, key, sid)
        yield Started(handle)
        job = yield from wait_op(client, handle, on_status)
        manifest = yield from finish_op(client, handle, spec.carry, destination, storage_options,
                                        DEFAULT_DOWNLOAD_TIMEOUT_S, spec)
    except GeneratorExit:
        raise
    except BaseException as exc:
        if interrupted(exc, spec):
            yield from _cancel_op(client.retry, None if handle is None else handle.job_id, key,
                                  "the step was interrupted")
        raise
    return JobOutcome(handle=handle, job=job, manifest=manifest)
