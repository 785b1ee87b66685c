"""sutro_core: the shared Sutro client behind the Dagster, Airflow and Prefect adapters.

Example:
    >>> from sutro_core import SutroClient, BatchJobRequest, idempotency_key
    >>> client = SutroClient()                      # SUTRO_API_KEY / SUTRO_API_URL
    >>> req = BatchJobRequest.for_inference(["hello"], model="all-minilm-l6-v2")
    >>> sub = client.submit_job(req, idempotency_key("my-run", fingerprint=req.fingerprint))
    >>> client.await_job_completion(sub.job_id, obtain_results=False)
    >>> manifest = client.download_results(sub.job_id, "results.parquet")
"""

__version__ = "0.1.0"

from .artifacts import load_results
from .async_client import AsyncSutroClient
from .client import SutroClient
from .errors import (
    AuthenticationError,
    CostLimitExceededError,
    InputValidationError,
    JobCancelledError,
    JobError,
    JobFailedError,
    JobNotSucceededError,
    JobTimeoutError,
    NotFoundError,
    RateLimitError,
    ServerError,
    SubmitOutcomeUnknownError,
    SutroAPIError,
    SutroConnectionError,
    SutroError,
)
from .idempotency import idempotency_key
from .models import FunctionResult, Job, JobStatus, Prediction, Quota, ResultsManifest, Submission
from .request import BatchJobRequest
from .results import ResultsShapeError
from .retrying import PollPolicy, RetryPolicy

__all__ = [
    "AsyncSutroClient", "AuthenticationError", "BatchJobRequest", "CostLimitExceededError", "FunctionResult",
    "InputValidationError", "Job", "JobCancelledError", "JobError", "JobFailedError", "JobNotSucceededError",
    "JobStatus", "JobTimeoutError", "NotFoundError", "PollPolicy", "Prediction", "Quota", "RateLimitError",
    "ResultsManifest", "ResultsShapeError", "RetryPolicy", "ServerError", "SubmitOutcomeUnknownError",
    "Submission", "SutroAPIError", "SutroConnectionError", "SutroError", "SutroClient", "idempotency_key",
    "load_results", "__version__",
]
