"""What flows through the house: ``JobSpec`` (what to run, where its results go), ``JobHandle`` (a started job,
as an orchestrator records it) and ``JobOutcome`` (what a finished step returns). All serializable.

The operations on them (start, wait, finish, cancel, and the whole step) are in ``lifecycle``.

Example:
    >>> spec = JobSpec.for_inference(["I love it"], "all-minilm-l6-v2", output_uri="out/emb.parquet")
    >>> JobSpec.from_dict(spec.to_dict()).fingerprint == spec.fingerprint
    True
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict

from .results import row_status
from .results.shape import schema_fields
from .results.targets import RESULT_FORMATS
from .errors import InputValidationError
from .idempotency import idempotency_key as make_key, scope_id as make_scope_id
from . import storage
from .inputs import NormalisedInputs, _is_pandas, is_url, read_input_file, to_polars
from .models import Job, JobStatus, ResultsManifest, Submission
from .request import BatchJobRequest
from .retrying import PollPolicy

#: Version 2 keeps the output settings in ``output``; version 1 handles (flat fields) are still read.
HANDLE_VERSION = 2
#: A step's default deadline: a day (every adapter's default too).
DEFAULT_TIMEOUT_S = 24 * 60 * 60.0
_V1_OUTPUT_FIELDS = {"output_uri": "uri", "output_format": "format", "output_column": "column",
                     "include_inputs": "include_inputs", "json_schema": "json_schema"}


class JobOutput(BaseModel):
    """Where and how a job's results are written: the part of a ``JobSpec`` its ``JobHandle`` keeps, so
    ``finish`` needs nothing else (the spec's ``output_uri``, ``output_format``, ``output_column``,
    ``include_inputs``, and the request's JSON schema for typed columns).

    Example:
        >>> JobOutput(uri="out/r.parquet").column
        'inference_result'
    """

    model_config = ConfigDict(frozen=True)

    uri: str | None = None
    format: str = "parquet"
    column: str = "inference_result"
    include_inputs: bool = False
    json_schema: dict[str, Any] | None = None
    repair_rounds: int = 0
    max_failed_rows: int | float | None = None  # int: a count; float below 1: a fraction (kept apart)
    #: The row store's URI (never its credentials) when the step reuses rows.
    row_store: str | None = None

    def failed_rows_allowed(self, rows: int) -> float:
        """How many rows may be not ``ok`` in an artifact of ``rows`` rows (inf without a limit)."""
        limit = self.max_failed_rows
        if limit is None:
            return float("inf")
        return limit * rows if isinstance(limit, float) else limit


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
    """A .csv/.parquet path or object-storage URI (``s3://...``, with the filesystem's own credentials, e.g.
    the AWS environment) read once, so the rows sent and the rows carried are the same."""
    if isinstance(data, (str, os.PathLike)) and not is_url(str(data)):
        name = storage.safe_uri(os.fspath(data))
        if Path(name.rsplit("/", 1)[-1]).suffix.lower() in (".csv", ".parquet"):
            return read_input_file(data, field="data")
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
        # An upstream step's artifact as data: its row status and job ids describe that step, not this one.
        cols = [c for c in frame.columns if c not in (row_status.ROW_STATUS, row_status.ROW_JOB_ID)] \
            if carry_columns is None else list(carry_columns)
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
    #: Follow-up jobs of only the rows that are not ``ok`` (cut rows with twice the ``max_tokens``), merged
    #: back in input order. 0 by default: a repair is another paid job, so a step opts in.
    repair_rounds: int = 0
    #: Rows that may be not ``ok`` after the repairs: a count (int) or a fraction of the rows (a float
    #: below 1); past it the step fails with ``RowsFailedError``, after writing the artifact. None: no limit.
    max_failed_rows: int | float | None = None
    #: Reuse rows across runs: a folder or fsspec URI of paid ``ok`` row results (``row_store.RowStore``).
    #: Only the rows it has no result for are sent (each distinct row once); the ones this step pays for
    #: are added to it. Needs the rows themselves (not a URL input) and a parquet output.
    row_store: str | None = None
    #: fsspec options for a remote ``row_store`` (credentials, endpoint). Never serialized by ``to_dict``.
    row_store_options: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_max_cost(self.max_cost_usd)
        if self.row_store is not None:
            if isinstance(self.row_store, os.PathLike):
                object.__setattr__(self, "row_store", os.fspath(self.row_store))
            if not isinstance(self.row_store, str) or not self.row_store.strip():
                raise InputValidationError("row_store", "give a folder or URI such as 'rows/' or 's3://bucket/rows'")
            if self.output_format != "parquet":
                raise InputValidationError("row_store", f"row reuse writes parquet artifacts; output_format is "
                                                        f"{self.output_format!r}: use 'parquet' or drop row_store")
            if self.request.inputs.inline is None:
                raise InputValidationError(
                    "row_store", "row reuse needs the rows themselves (a DataFrame, a list or a .csv/.parquet "
                    "file), not a URL the server reads; read the file first or drop row_store")
        if isinstance(self.repair_rounds, bool) or not isinstance(self.repair_rounds, int) \
                or not 0 <= self.repair_rounds <= 10:
            raise InputValidationError("repair_rounds", f"must be an integer from 0 to 10, got {self.repair_rounds!r}")
        limit = self.max_failed_rows
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float))
                                  or limit < 0 or (isinstance(limit, float) and not limit < 1)):
            raise InputValidationError(
                "max_failed_rows", f"give a row count (an integer >= 0) or a fraction below 1 (e.g. 0.01), "
                f"got {limit!r}")
        if self.timeout is not None and (isinstance(self.timeout, bool) or not self.timeout > 0):
            raise InputValidationError("timeout", f"must be a positive number of seconds or None, got {self.timeout!r}")
        if self.output_format not in RESULT_FORMATS:
            raise InputValidationError("output_format", f"{self.output_format!r} is not one of {RESULT_FORMATS}")
        if not isinstance(self.output_column, str) or not self.output_column:
            raise InputValidationError("output_column", "give a column name such as 'inference_result'")
        if self.carry is not None and self.request.num_rows is not None and self.carry.height != self.request.num_rows:
            raise InputValidationError(
                "carry", f"{self.carry.height} carried rows for {self.request.num_rows} input rows; they must match")
        clash = sorted(set(self.carry.columns) & self.written_columns()) if self.carry is not None else []
        if clash:  # found now, not after the job is paid for, when the artifact is shaped
            raise InputValidationError(
                "carry_columns", f"carried input columns {clash} are also columns this step writes; carry the "
                "others (carry_columns=[...]) or rename them" + (
                    f", or choose another output_column than {self.output_column!r}"
                    if self.output_column in clash and not schema_fields(self.request.json_schema) else ""))

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

    def written_columns(self) -> set[str]:
        """The artifact columns the job itself writes: the output column (or, with a JSON schema, its fields),
        ``inputs`` with ``include_inputs``, the row status and the job id.

        Example:
            >>> sorted(JobSpec.for_inference(["hi"], "qwen-3-4b").written_columns())
            ['inference_result', 'sutro_job_id', 'sutro_row_status']
        """
        fields = schema_fields(self.request.json_schema)
        names = set(fields) if fields else {self.output_column}
        return names | {row_status.ROW_STATUS, row_status.ROW_JOB_ID} | ({"inputs"} if self.include_inputs else set())

    @property
    def output(self) -> JobOutput:
        """The output settings a handle of this spec keeps."""
        return JobOutput(uri=self.output_uri, format=self.output_format, column=self.output_column,
                         include_inputs=self.include_inputs, json_schema=self.request.json_schema,
                         repair_rounds=self.repair_rounds, max_failed_rows=self.max_failed_rows,
                         row_store=self.row_store)

    def with_(self, **changes: Any) -> "JobSpec":
        """A copy with some fields changed (validated again).

        Example:
            >>> spec.with_(output_uri="/tmp/out.parquet", timeout=600)  # doctest: +SKIP
        """
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (rows included; the carried columns keep their dtypes; ``row_store_options`` left out:
        they may hold credentials).

        Example:
            >>> JobSpec.from_dict(spec.to_dict()).fingerprint == spec.fingerprint  # doctest: +SKIP
            True
        """
        request = dataclasses.asdict(self.request)
        return {
            "request": request,
            "carry": None if self.carry is None else self.carry.serialize(format="json"),
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) 
               if f.name not in ("request", "carry", "poll", "row_store_options")},
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
    #: None when nothing had to be sent: every row's result came from the row store.
    job_id: str | None
    idempotency_key: str | None = None
    scope: str | None = None
    api_url: str
    url: str | None
    reattached: bool = False
    status: str = JobStatus.QUEUED.value
    started_at: float
    deadline: float | None = None
    poll: dict[str, Any] | None = None
    cost_estimate: float | None = None
    model: str | None = None
    is_function: bool = False
    output: JobOutput = JobOutput()
    cancel_on_timeout: bool = True
    cancel_on_interrupt: bool = True
    #: With a row store: the distinct rows the job was sent, and the input rows whose results are stored.
    rows_submitted: int | None = None
    rows_from_store: int | None = None

    @property
    def has_job(self) -> bool:
        """False when no job was needed (every row came from the row store): there is nothing to wait for."""
        return self.job_id is not None

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
        if version < 2:  # written before the output settings moved into ``output``
            data = {k: v for k, v in data.items() if k not in _V1_OUTPUT_FIELDS}  | {
                "version": HANDLE_VERSION,
                "output": {new: data[old] for old, new in _V1_OUTPUT_FIELDS.items() if old in data}}
        return cls.model_validate(data)

    @classmethod
    def from_json(cls, text: str) -> "JobHandle":
        """A handle from ``to_json``."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def watching(cls, job_id: str, api_url: str, url: str, **rules: Any) -> "JobHandle":
        """A handle for a job this step did not start (a job id from elsewhere), to wait on from now;
        ``rules`` as ``with_overrides`` takes them, and other fields (``model``, ``cancel_on_interrupt``).

        Example:
            >>> JobHandle.watching("job-1", "http://h/v1", "http://h/jobs/job-1", timeout=60).deadline is not None
            True
        """
        wait = {k: rules.pop(k) for k in ("timeout", "poll") if k in rules}
        return cls(job_id=job_id, api_url=api_url, url=url, started_at=time.time(), **rules).with_overrides(**wait)

    def with_overrides(self, *, timeout: float | None | object = ..., poll: PollPolicy | None | object = ...,
                        cancel_on_timeout: bool | None = None, include_inputs: bool | None = None) -> "JobHandle":
        """This handle with a step's own waiting rules: ``timeout`` seconds from now (None: no deadline), a
        ``poll`` policy, whether the deadline cancels the job, whether the results carry the inputs. What is
        not given stays as it was.

        Example:
            >>> handle.with_overrides(timeout=3600, poll=PollPolicy(max_interval=5.0))  # doctest: +SKIP
        """
        changes: dict[str, Any] = {}
        if timeout is not ...:
            changes["deadline"] = None if timeout is None else time.time() + float(timeout)  # type: ignore[arg-type]
        if poll is not ...:
            changes["poll"] = None if poll is None else poll.to_dict()  # type: ignore[union-attr]
        if cancel_on_timeout is not None:
            changes["cancel_on_timeout"] = cancel_on_timeout
        if include_inputs is not None:
            changes["output"] = self.output.model_copy(update={"include_inputs": include_inputs})
        return self.model_copy(update=changes)

    def is_for(self, spec: "JobSpec", scope: Sequence[Any] | None) -> bool:
        """Whether this handle's job is the one ``spec`` run in ``scope`` would start: False once the step's
        inputs changed since the handle was recorded (its idempotency key no longer matches).

        Example:
            >>> handle.is_for(spec, ("airflow", "dag", "task", "run-1", -1))  # doctest: +SKIP
            True
        """
        return not self.idempotency_key or step_key(spec, scope, None)[0] == self.idempotency_key

    def poll_policy(self) -> PollPolicy | None:
        """The poll policy the spec asked for (None: the client's)."""
        return None if self.poll is None else PollPolicy(**self.poll)

    def seconds_left(self) -> float | None:
        """Seconds before the deadline (None without one; negative once past)."""
        return None if self.deadline is None else self.deadline - time.time()


@dataclass(frozen=True)
class JobOutcome:
    """What ``run`` returns: the handle, the SUCCEEDED job (None when every row came from the row store)
    and the artifact's manifest."""

    handle: JobHandle
    job: Job | None
    manifest: ResultsManifest


def job_id_of(ref: Any, field: str = "job") -> str:
    """The job id of a handle (or its dict), a ``Submission``, a ``Job`` or a job id string.

    Example:
        >>> job_id_of(" job-1 ")
        'job-1'
    """
    if isinstance(ref, (JobHandle, Submission, Job)):
        return ref.job_id
    if isinstance(ref, dict) and isinstance(ref.get("job_id"), str):
        return ref["job_id"]
    if isinstance(ref, str) and ref.strip():
        return ref.strip()
    raise InputValidationError(
        field, f"give the handle a submit returned, a job id string, or a Job; got {type(ref).__name__}")


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


