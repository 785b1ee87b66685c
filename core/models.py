"""Typed records the client returns: job status and details, quotas, Function results, manifests.

Example:
    >>> job = client.get_job(job_id)
    >>> job.status is JobStatus.SUCCEEDED, job.num_rows, job.duration_seconds
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


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


class Job(BaseModel):
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

    @property
    def duration_seconds(self) -> float | None:
        """Seconds from start (or creation) to finish, when both are known."""
        start = self.started_at or self.created_at
        if start is None or self.finished_at is None:
            return None
        return (self.finished_at - start).total_seconds()


class Quota(BaseModel):
    """Row and token quota for one priority."""

    model_config = ConfigDict(extra="allow")

    job_priority: int
    row_quota: int | None = None
    token_quota: int | None = None


class Prediction(BaseModel):
    """One label's score from a classification Function."""

    model_config = ConfigDict(extra="allow")

    label: str
    confidence: float | None = None


class FunctionResult(BaseModel):
    """The result of ``run_function``: exposes both the classification and the extraction shape.

    Example:
        >>> r = client.run_function("ticket-triage", {"text": "I was charged twice"})
        >>> r.label, r.confidence, [p.label for p in r.predictions]
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
    job_id: str
    model: str | None = None
    columns: list[str] = Field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    created_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict."""
        return self.model_dump(mode="json")
