"""The job lifecycle, once for every orchestrator: a job spec, a job handle, and start / wait / finish / cancel.

- ``JobSpec``: what to run (rows or their URI, model or Function, prompt, schema, sampling, priority, names,
  cost budget, output URI/format, the input columns to carry). Serializable.
- ``JobHandle``: a started job (id, idempotency key, deadline, poll policy, URL, whether reattached).
  Versioned and JSON-serializable: an orchestrator records it (XCom, metadata, task result) before waiting.
- The operations are generators (see ``operations``) that both clients drive: ``start_op`` (reattach or
  cost-gate and submit once, close the same-key race, cancel a superseded job), ``wait_op`` (deadline-bound,
  cancels at the deadline), ``finish_op`` (the one results shape, see ``results.shape``) and ``cancel_op``.

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
import io
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel

from . import operations as ops, protocol
from .errors import InputValidationError, JobTimeoutError
from .idempotency import idempotency_key as make_key, scope_id as make_scope_id
from .inputs import NormalisedInputs, _is_pandas, is_url, to_polars
from .models import Job, JobStatus, ResultsManifest
from .operations import Blocking, Op
from .request import BatchJobRequest
from .results.shape import shape_file
from .results.targets import RESULT_FORMATS, finalize, job_metadata, prepare_target
from .retrying import DeadlineReached, PollPolicy, RetryPolicy

LIFECYCLE_READY = True
HANDLE_VERSION = 1
#: How long a cancel may take (an interrupted step has little time: Airflow gives on_kill 30 s).
CANCEL_TIMEOUT_S = 20.0
DEFAULT_TIMEOUT_S = 24 * 60 * 60.0
DEFAULT_DOWNLOAD_TIMEOUT_S = 3600.0


def check_max_cost(value: Any) -> None:
    """The one rule for a cost budget, for adapters that check it when a step is defined: a dollar amount
    >= 0 (0 allows only free jobs), or None for no gate.

    Example:
        >>> check_max_cost(0)
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0):
        raise InputValidationError(
            "max_cost_usd", f"must be a dollar amount >= 0 (e.g. 5.0), got {value!r}; None disables the gate")


def _read_table(data: Any) -> Any:
    """A .csv/.parquet path read once, so the rows sent and the rows carried are the same."""
    if isinstance(data, (str, os.PathLike)) and not is_url(str(data)):
        suffix = Path(str(data)).suffix.lower()
        if suffix in (".csv", ".parquet"):
            path = Path(data)
            if not path.exists():
                raise InputValidationError("data", f"file {path} does not exist")
            return pl.read_parquet(path) if suffix == ".parquet" else pl.read_csv(path, infer_schema_length=10_000)
    return data


def carry_frame(data: Any, carry_columns: Sequence[str] | None) -> pl.DataFrame | None:
    """The input columns a job's artifact carries (all of a DataFrame's by default; none for other inputs).

    Raises ``InputValidationError`` naming ``carry_columns`` before anything is submitted.

    Example:
        >>> carry_frame(pl.DataFrame({"id": [1], "text": ["a"]}), ["id"]).columns
        ['id']
    """
    if isinstance(data, pl.DataFrame) or (_is_pandas(data) and hasattr(data, "columns")):
        frame = to_polars(data)
        cols = list(frame.columns) if carry_columns is None else list(carry_columns)
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise InputValidationError(
                "carry_columns", f"columns {missing} are not in the data; available: {frame.columns}")
        return frame.select(cols) if cols else None
    if carry_columns:
        raise InputValidationError(
            "carry_columns", "only DataFrame (or .csv/.parquet file) inputs have columns to carry; "
            "URL inputs carry their ids with id_column=")
    return None


@dataclass(frozen=True)
class JobSpec:
    """What to run, and where its results go. Build with ``for_inference`` / ``for_function``.

    ``carry`` holds the input columns copied into the artifact (row-aligned; not part of the fingerprint).

    Example:
        >>> spec = JobSpec.for_function("ticket-triage", tickets_df, columns=["text"], carry_columns=["id"],
        ...                             output_uri="s3://bucket/triage.parquet", max_cost_usd=5)  # doctest: +SKIP
    """

    request: BatchJobRequest
    carry: pl.DataFrame | None = field(default=None, compare=False, repr=False)
    output_column: str = "inference_result"
    max_cost_usd: float | None = None
    estimate_cost: bool = False   # dry-run (and report) the cost even without a limit
    output_uri: str | None = None
    output_format: str = "parquet"
    include_inputs: bool = False
    timeout: float | None = DEFAULT_TIMEOUT_S
    poll: PollPolicy | None = None
    cancel_on_timeout: bool = True
    cancel_on_interrupt: bool = True

    def __post_init__(self) -> None:
        check_max_cost(self.max_cost_usd)
        if self.timeout is not None and (isinstance(self.timeout, bool) or not self.timeout > 0):
            raise InputValidationError("timeout", f"must be a positive number of seconds or None, got {self.timeout!r}")
        if self.output_format not in RESULT_FORMATS:
            raise InputValidationError("output_format", f"{self.output_format!r} is not one of {RESULT_FORMATS}")
        if not isinstance(self.output_column, str) or not self.output_column:
            raise InputValidationError("output_column", "give a column name such as 'inference_result'")
        if self.carry is not None and self.request.num_rows is not None and self.carry.height != self.request.num_rows:
            raise InputValidationError(
                "carry", f"{self.carry.height} carried rows for {self.request.num_rows} input rows; they must match")

    @classmethod
    def for_inference(
        cls,
        data: Any,
        model: str,
        *,
        column: str | Sequence[str] | None = None,
        id_column: str | None = None,
        carry_columns: Sequence[str] | None = None,
        job_priority: int = 0,
        output_schema: Any = None,
        system_prompt: str | None = None,
        sampling_params: dict[str, Any] | None = None,
        random_seed_per_input: bool = False,
        truncate_rows: bool = True,
        name: str | None = None,
        description: str | None = None,
        **settings: Any,
    ) -> "JobSpec":
        """A batch inference job. ``settings``: the other ``JobSpec`` fields (``output_uri``, ``max_cost_usd``,
        ``timeout``, ``poll``, ``output_column``, ...). ``carry_columns`` None carries every column of a
        DataFrame input; ``[]`` carries none.

        Example:
            >>> JobSpec.for_inference(df, "qwen-3-4b", column="body", output_uri="out/s.parquet").request.num_rows
        """
        data = _read_table(data)
        request = BatchJobRequest.for_inference(
            data, model, column=column, id_column=id_column, job_priority=job_priority, output_schema=output_schema,
            system_prompt=system_prompt, sampling_params=sampling_params, random_seed_per_input=random_seed_per_input,
            truncate_rows=truncate_rows, name=name, description=description,
        )
        return cls(request=request, carry=carry_frame(data, carry_columns), **settings)

    @classmethod
    def for_function(
        cls,
        function_name: str,
        data: Any,
        *,
        columns: Sequence[str] | None = None,
        carry_columns: Sequence[str] | None = None,
        job_priority: int = 0,
        name: str | None = None,
        description: str | None = None,
        **settings: Any,
    ) -> "JobSpec":
        """A batch Function job: each row's ``columns`` (default: all) are the Function's inputs.

        Example:
            >>> JobSpec.for_function("ticket-triage", [{"text": "I was charged twice"}]).request.is_function
            True
        """
        data = _read_table(data)
        request = BatchJobRequest.for_function(function_name, data, columns=columns, job_priority=job_priority,
                                               name=name, description=description)
        return cls(request=request, carry=carry_frame(data, carry_columns), **settings)

    @property
    def fingerprint(self) -> str:
        """What the job computes (the request's fingerprint); carried columns and outputs are left out."""
        return self.request.fingerprint

    def with_(self, **changes: Any) -> "JobSpec":
        """A copy with some fields changed (validated again).

        Example:
            >>> spec.with_(output_uri="/tmp/out.parquet", timeout=600)  # doctest: +SKIP
        """
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (rows included; the carried columns keep their dtypes).

        Example:
            >>> JobSpec.from_dict(spec.to_dict()).fingerprint == spec.fingerprint  # doctest: +SKIP
            True
        """
        request = dataclasses.asdict(self.request)
        return {
            "request": request,
            "carry": None if self.carry is None else self.carry.serialize(format="json"),
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("request", "carry", "poll")},
            "poll": None if self.poll is None else self.poll.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobSpec":
        """The spec ``to_dict`` wrote."""
        body = dict(data)
        request = dict(body.pop("request"))
        request["inputs"] = NormalisedInputs(**request["inputs"])
        carry = body.pop("carry", None)
        poll = body.pop("poll", None)
        return cls(
            request=BatchJobRequest(**request),
            carry=None if carry is None else pl.DataFrame.deserialize(io.StringIO(carry), format="json"),
            poll=None if poll is None else PollPolicy(**poll),
            **body,
        )


class JobHandle(BaseModel):
    """A started job, as an orchestrator records it. ``to_dict()`` is JSON-safe and versioned.

    Example:
        >>> handle = client.start(spec, scope=("airflow", "dag", "task", "run-1", -1))   # doctest: +SKIP
        >>> JobHandle.from_dict(handle.to_dict()).job_id == handle.job_id                 # doctest: +SKIP
        True
    """

    version: int = HANDLE_VERSION
    job_id: str
    idempotency_key: str | None = None
    scope: str | None = None
    api_url: str
    url: str
    reattached: bool = False
    status: str = JobStatus.QUEUED.value
    started_at: float
    deadline: float | None = None
    poll: dict[str, Any] | None = None
    cost_estimate: float | None = None
    model: str | None = None
    is_function: bool = False
    json_schema: dict[str, Any] | None = None
    output_column: str = "inference_result"
    output_uri: str | None = None
    output_format: str = "parquet"
    include_inputs: bool = False
    cancel_on_timeout: bool = True
    cancel_on_interrupt: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        """The handle as a JSON string."""
        return self.model_dump_json()

    @classmethod
    def from_dict(cls, data: "dict[str, Any] | JobHandle") -> "JobHandle":
        """A handle from ``to_dict`` (or a handle, returned as is); refuses a newer version it cannot read."""
        if isinstance(data, JobHandle):
            return data
        if not isinstance(data, dict) or "job_id" not in data:
            raise InputValidationError("handle", f"expected a JobHandle dict with a job_id, got {type(data).__name__}")
        version = data.get("version", HANDLE_VERSION)
        if not isinstance(version, int) or version > HANDLE_VERSION:
            raise InputValidationError(
                "handle", f"version {version!r} was written by a newer sutro_core (this one reads {HANDLE_VERSION}); "
                "upgrade sutro-pipelines where the job is waited for")
        return cls.model_validate(data)

    @classmethod
    def from_json(cls, text: str) -> "JobHandle":
        """A handle from ``to_json``."""
        import json

        return cls.from_dict(json.loads(text))

    def poll_policy(self) -> PollPolicy | None:
        """The poll policy the spec asked for (None: the client's)."""
        return None if self.poll is None else PollPolicy(**self.poll)

    def seconds_left(self) -> float | None:
        """Seconds before the deadline (None without one; negative once past)."""
        return None if self.deadline is None else self.deadline - time.time()


@dataclass(frozen=True)
class JobOutcome:
    """What ``run`` returns: the handle, the SUCCEEDED job and the artifact's manifest."""

    handle: JobHandle
    job: Job
    manifest: ResultsManifest


def step_key(spec: JobSpec, scope: Sequence[Any] | None, idempotency_key: str | None) -> tuple[str, str | None]:
    """The idempotency key (and scope id) of a step: from its scope plus the spec's fingerprint, or given."""
    if scope is not None and (isinstance(scope, (str, bytes)) or not isinstance(scope, Sequence) or not scope):
        raise InputValidationError("scope", "give the step's identity as a tuple, e.g. ('airflow', dag_id, task_id, run_id)")
    sid = make_scope_id(*scope) if scope else None
    if idempotency_key:
        return idempotency_key, sid
    if scope:
        return make_key(*scope, fingerprint=spec.fingerprint), sid
    raise InputValidationError(
        "scope", "give scope=(...) (what stays the same across retries of this step) or idempotency_key=: "
        "without a key a retried step could not find its job and would pay for it twice")


def start_op(retry: RetryPolicy, poll: PollPolicy, api_url: str, job_url: Callable[[str], str], spec: JobSpec,
             key: str, scope: str | None) -> Op[JobHandle]:
    """Find/reattach, cost-gate, submit once, close the race, cancel a superseded job -> the handle."""
    sub = yield from ops.submit_job(retry, spec.request, key, poll=poll, max_cost_usd=spec.max_cost_usd,
                                    estimate_cost=spec.estimate_cost, scope=scope)
    now = time.time()
    return JobHandle(
        job_id=sub.job_id, idempotency_key=key, scope=scope, api_url=api_url, url=job_url(sub.job_id),
        reattached=sub.reattached, status=sub.status.value, started_at=now,
        deadline=None if spec.timeout is None else now + spec.timeout,
        poll=None if spec.poll is None else spec.poll.to_dict(), cost_estimate=sub.cost_estimate,
        model=spec.request.model, is_function=spec.request.is_function, json_schema=spec.request.json_schema,
        output_column=spec.output_column, output_uri=spec.output_uri, output_format=spec.output_format,
        include_inputs=spec.include_inputs, cancel_on_timeout=spec.cancel_on_timeout,
        cancel_on_interrupt=spec.cancel_on_interrupt,
    )


def wait_op(retry: RetryPolicy, poll: PollPolicy, handle: JobHandle,
            on_status: Callable[[JobStatus], None] | None) -> Op[Job]:
    """Wait until SUCCEEDED within the handle's deadline; at the deadline cancel (unless opted out) and raise."""
    try:
        return (yield from ops.wait_for_job(retry, handle.poll_policy() or poll, handle.job_id, timeout=None,
                                            deadline=handle.deadline, on_status=on_status))
    except JobTimeoutError as exc:
        if not handle.cancel_on_timeout:
            raise
        cancelled = yield from ops.cancel_quietly(retry, handle.job_id, "it did not finish before its deadline",
                                                  time.time() + CANCEL_TIMEOUT_S)
        raise JobTimeoutError(handle.job_id, exc.status, exc.waited, cancelled=cancelled) from exc


def _shape_in_place(path: Path, carry: pl.DataFrame | None, handle: JobHandle, job: Job) -> None:
    out = path.with_suffix(".shaped.part")
    try:
        shape_file(path, out, carry=carry, output_column=handle.output_column, json_schema=handle.json_schema,
                   metadata=job_metadata(job))
        os.replace(out, path)
    finally:
        out.unlink(missing_ok=True)


def finish_op(retry: RetryPolicy, handle: JobHandle, carry: pl.DataFrame | None, destination: Any,
              storage_options: dict[str, Any] | None, timeout: float | None) -> Op[ResultsManifest]:
    """Download the SUCCEEDED job's results once and write the one results shape, atomically."""
    dest = destination if destination is not None else handle.output_uri
    if dest is None:
        raise InputValidationError("output_uri", "say where the results go: JobSpec(output_uri=...) or destination=")
    fmt = handle.output_format
    target = prepare_target(dest, fmt, storage_options)
    job = yield from ops.download(retry, handle.job_id, target, timeout, result_format=fmt,
                                  include_inputs=handle.include_inputs)
    transform = (lambda path: _shape_in_place(path, carry, handle, job)) if fmt == "parquet" else None
    return (yield Blocking(lambda: finalize(target, job, fmt, transform)))


def cancel_op(retry: RetryPolicy, job_id: str | None, key: str | None, reason: str) -> Op[bool]:
    """Cancel a job (or, with only a key, every live job carrying it: an interrupt mid-submit), within
    ``CANCEL_TIMEOUT_S``; skips terminal jobs; never raises a ``SutroError``."""
    from .errors import SutroError

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
        ops.log.warning("could not look up job %s to cancel it (%s); it may still be running: %s",
                        job_id or f"with key {key}", reason, exc)
        return False
    accepted = False
    for target in targets:
        accepted = (yield from ops.cancel_quietly(retry, target, reason, deadline)) or accepted
    return accepted
