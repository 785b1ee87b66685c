"""sutro_core: the shared Sutro client behind the Dagster, Airflow and Prefect adapters.

Example:
    >>> from sutro_core import JobSpec, SutroClient
    >>> client = SutroClient()                      # SUTRO_API_KEY / SUTRO_API_URL
    >>> spec = JobSpec.for_inference(["hello"], "all-minilm-l6-v2", output_uri="results.parquet")
    >>> handle = client.start(spec, scope=("my-pipeline", "embed", "2026-12-01"))  # reattaches on a retry
    >>> job = client.wait(handle)
    >>> manifest = client.finish(handle)

Names are loaded on first use (PEP 562), so a DAG file or a CLI that imports one name does not
pay for polars, pyarrow and httpx until it uses them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "load_results": "results.reading",
    "iter_results": "results.reading",
    "AsyncSutroClient": "async_client",
    "SutroClient": "client",
    "idempotency_key": "idempotency",
    "BatchJobRequest": "request",
    **{name: "lineage" for name in ("StepLineage", "describe_step")},
    "ResultsShapeError": "results.shape",
    **{name: "spec" for name in ("JobHandle", "JobOutcome", "JobOutput", "JobSpec")},
    "is_retryable": "errors",
    "PollPolicy": "retrying",
    "RetryPolicy": "retrying",
    **{name: "models" for name in (
        "CancelResult", "FunctionResult", "Job", "JobStatus", "Prediction", "Quota", "ResultsManifest", "Submission")},
    **{name: "errors" for name in (
        "AuthenticationError", "CostLimitExceededError", "DryRunResultsError", "InputValidationError", "JobCancelledError", "JobError",
        "JobFailedError", "JobNotSucceededError", "JobTimeoutError", "NotFoundError", "RateLimitError",
        "ResultsFormatError", "RowsFailedError", "ServerError", "SubmitOutcomeUnknownError", "SutroAPIError", "SutroConnectionError",
        "SutroError")},
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sutro_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # static names for type checkers and IDEs
    from .async_client import AsyncSutroClient
    from .client import SutroClient
    from .errors import (
        AuthenticationError,
        CostLimitExceededError,
        DryRunResultsError,
        InputValidationError,
        JobCancelledError,
        JobError,
        JobFailedError,
        JobNotSucceededError,
        JobTimeoutError,
        NotFoundError,
        RateLimitError,
        ResultsFormatError,
        RowsFailedError,
        ServerError,
        SubmitOutcomeUnknownError,
        SutroAPIError,
        SutroConnectionError,
        SutroError,
        is_retryable,
    )
    from .idempotency import idempotency_key
    from .lineage import StepLineage, describe_step
    from .spec import JobHandle, JobOutcome, JobOutput, JobSpec
    from .models import CancelResult, FunctionResult, Job, JobStatus, Prediction, Quota, ResultsManifest, Submission
    from .request import BatchJobRequest
    from .results.reading import iter_results, load_results
    from .results.shape import ResultsShapeError
    from .retrying import PollPolicy, RetryPolicy
