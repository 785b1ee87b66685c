"""Typed records the client returns: job status and details, quotas, Function results, manifests.

Example:
    >>> job = client.get_job(job_id)
    >>> job.status is JobStatus.SUCCEEDED, job.num_rows, job.duration_seconds
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import ended_error


class JobStatus(str, enum.Enum):
    """A job's lifecycle state, as the service names it."""

    UNKNOWN = "UNKNOWN"
    QUEUED = "QUEUED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"

    @classmethod
    def parse(cls, value: Any) -> "JobStatus":
        """Map a wire value (any case) to a status; unknown strings become UNKNOWN."""
        try:
            return cls(str(value).upper())
        except ValueError:
            return cls.UNKNOWN

    @property
    def is_terminal(self) -> bool:
        """True for SUCCEEDED, FAILED and CANCELLED."""
        return self in TERMINAL_STATUSES

    @property
    def is_reattachable(self) -> bool:
        """True when a retried step should attach to this job instead of submitting a new one."""
        return self in REATTACHABLE_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
REATTACHABLE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.STARTING, JobStatus.RUNNING, JobStatus.SUCCEEDED})


class _WireMapping:
    """Read-only ``Mapping`` access to a record, so SDK-style code (``jobs[0]["job_id"]``) works.

    The keys are the fields the server sent (declared ones and extras such as ``datetime_created``);
    the values are the typed ones (``JobStatus``, ``datetime``), which compare equal to the wire
    strings where the type is a ``str`` enum. Attribute access is unchanged.

    Example:
        >>> job = Job.model_validate({"job_id": "job-1", "status": "RUNNING"})
        >>> job["status"] == "RUNNING", job.get("cost_estimate"), sorted(job)
        (True, None, ['job_id', 'status'])
    """

    def _wire_keys(self) -> list[str]:
        model: Any = self
        declared = [f for f in type(model).model_fields if f in model.model_fields_set]
        return declared + list(model.model_extra or {})

    def __getitem__(self, key: str) -> Any:
        if key not in self._wire_keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  # keys, as a Mapping iterates
        return iter(self._wire_keys())

    def __len__(self) -> int:
        return len(self._wire_keys())

    def __contains__(self, key: object) -> bool:
        return key in self._wire_keys()

    def keys(self) -> list[str]:
        """The keys the server sent."""
        return self._wire_keys()

    def values(self) -> list[Any]:
        """The values, in key order."""
        return [getattr(self, k) for k in self._wire_keys()]

    def items(self) -> list[tuple[str, Any]]:
        """(key, value) pairs, in key order."""
        return [(k, getattr(self, k)) for k in self._wire_keys()]

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when the server did not send it."""
        return getattr(self, key) if key in self._wire_keys() else default


class Job(_WireMapping, BaseModel):
    """One job's record from ``jobs/{id}`` or ``list-jobs``. Unknown fields are kept in ``extra``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    job_id: str
    status: JobStatus = JobStatus.UNKNOWN
    num_rows: int | None = None
    model: str | None = None
    name: str | None = None
    description: str | None = None
    job_priority: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    job_cost: float | None = None
    cost_estimate: float | None = None
    failure_reason: str | None = None
    rows_processed: int | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> JobStatus:
        return JobStatus.parse(value)

    @field_validator("failure_reason", mode="before")
    @classmethod
    def _reason(cls, value: Any) -> str | None:
        # The wire shape is {"message": ...}; some records carry a bare string.
        if isinstance(value, dict):
            return str(value.get("message") or value.get("detail") or value) if value else None
        return None if value is None else str(value)

    @property
    def is_terminal(self) -> bool:
        """True once the job can no longer change."""
        return self.status.is_terminal

    def raise_if_ended(self) -> None:
        """Raise ``JobFailedError`` / ``JobCancelledError`` when the job ended FAILED / CANCELLED.

        Example:
            >>> Job(job_id="job-1", status="RUNNING").raise_if_ended()
        """
        error = ended_error(self.job_id, self.status.value, self.failure_reason)
        if error is not None:
            raise error

    @property
    def duration_seconds(self) -> float | None:
        """Seconds from start (or creation) to finish, when both are known."""
        start = self.started_at or self.created_at
        if start is None or self.finished_at is None:
            return None
        return (self.finished_at - start).total_seconds()


class Quota(_WireMapping, BaseModel):
    """Row and token quota for one priority."""

    model_config = ConfigDict(extra="allow")

    job_priority: int
    row_quota: int | None = None
    token_quota: int | None = None


class Prediction(_WireMapping, BaseModel):
    """One label's score from a classification Function."""

    model_config = ConfigDict(extra="allow")

    label: str
    confidence: float | None = None


class FunctionResult(_WireMapping, BaseModel):
    """The result of ``run_function``: exposes both the classification and the extraction shape.

    Reads as the SDK's dict too (``r["response"]``, ``r.get("output")``).

    Example:
        >>> r = client.run_function("ticket-triage", {"text": "I was charged twice"})
        >>> r.label, r.confidence, [p.label for p in r.predictions], r["response"]
    """

    model_config = ConfigDict(extra="allow")

    response: Any = None
    output: dict[str, Any] | None = None
    confidence: float | None = None
    predictions: list[Prediction] = Field(default_factory=list)
    rationale: str | None = None
    usage: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> Any:
        """The classification label (``response``)."""
        return self.response

    @property
    def is_classification(self) -> bool:
        """True when the result has the classification shape."""
        return self.output is None


for _record in (Job, Quota, Prediction, FunctionResult):
    Mapping.register(_record)


class CancelResult(dict):  # type: ignore[type-arg]
    """What ``cancel_job`` returns: the docs' dict (the server's JSON body) that also acts as the
    job's new ``JobStatus`` (compares equal to it, has ``.value``, ``.status``, ``.is_terminal``),
    so both SDK-style and older typed code keep working.

    Example:
        >>> r = CancelResult("job-1", {"job_id": "job-1", "status": "CANCELLING"})
        >>> r["status"], r == JobStatus.CANCELLING, r in (JobStatus.CANCELLED, JobStatus.CANCELLING), r.value
        ('CANCELLING', True, True, 'CANCELLING')
    """

    def __init__(self, job_id: str, body: Any) -> None:
        super().__init__(body if isinstance(body, dict) else {"job_id": job_id, "status": body})
        self.setdefault("job_id", job_id)
        self.status = status_of(job_id, body)

    @property
    def value(self) -> str:
        """The status as its wire string (``JobStatus.value``)."""
        return self.status.value

    @property
    def job_id(self) -> str:
        """The cancelled job's id."""
        return str(self["job_id"])

    @property
    def is_terminal(self) -> bool:
        """True when the job already ended (CANCELLED, or it had finished before the cancel)."""
        return self.status.is_terminal

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):  # JobStatus is a str enum
            return self.status.value == str(getattr(other, "value", other)).upper()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # a dict: compare with ==, not by hash

    def __str__(self) -> str:  # in log lines ("now %s") it reads as the status
        return self.status.value

    def __format__(self, spec: str) -> str:
        return format(self.status.value, spec)

    def __reduce__(self) -> Any:  # pickles (Prefect task results) with its status
        return (CancelResult, (self.job_id, dict(self)))


def status_of(job_id: str, body: Any) -> JobStatus:
    """The job status in a cancel answer: ``{"status": ...}``, ``{"job_status": {id: ...}}`` or a bare value."""
    if isinstance(body, dict):
        for key in ("status", "job_status"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get(job_id, next(iter(value.values()), None))
            if value is not None:
                return JobStatus.parse(value)
    return JobStatus.parse(body)


class Submission(BaseModel):
    """What ``submit_job`` did: the job id, whether it reattached to an existing job, and the cost estimate."""

    job_id: str
    reattached: bool = False
    status: JobStatus = JobStatus.QUEUED
    idempotency_key: str | None = None
    cost_estimate: float | None = None  # the dry-run estimate in dollars, when one ran before submitting


class ResultsManifest(BaseModel):
    """A small, JSON-serialisable description of a results artifact (what goes to XCom/metadata).

    Example:
        >>> manifest = client.download_results(job_id, "out/results.parquet")
        >>> manifest.rows, manifest.uri, manifest.to_dict()["bytes"]
    """

    uri: str
    format: str = "parquet"
    rows: int
    bytes: int
    #: The job that computed the rows (None when every row came from the row store).
    job_id: str | None
    model: str | None = None
    columns: list[str] = Field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    created_at: str | None = None
    #: Rows per ``sutro_row_status`` (ok / cut / invalid / missing); None for files without row status.
    row_status_counts: dict[str, int] | None = None
    #: The jobs this step paid for (the main job, then repair jobs; none when every row came from a row store).
    #: Rows reused from a row store name the earlier jobs that paid for them in ``sutro_job_id``.
    job_ids: list[str] = Field(default_factory=list)
    #: With a row store: the distinct rows the main job was sent (billed), and the rows whose results came
    #: from the store (reused); None without one.
    rows_submitted: int | None = None
    rows_from_store: int | None = None

    @property
    def failed_rows(self) -> int:
        """Rows that are not ``ok`` (0 without row status)."""
        return sum(n for status, n in (self.row_status_counts or {}).items() if status != "ok")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict."""
        return self.model_dump(mode="json")
