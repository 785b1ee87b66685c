"""prefect_sutro: Sutro batch inference and Sutro Functions as Prefect tasks, flows, blocks and artifacts.

Register the credentials block for the UI with ``prefect block register -m prefect_sutro``. Write the
top-level flow with ``@sutro_flow`` (a drop-in for ``@flow``) so that cancelling a deployed run, even one
whose process is frozen or gone, cancels its Sutro jobs.

Example:
    >>> import asyncio
    >>> from prefect_sutro import SutroCredentials, sutro_batch_job, sutro_flow, load_results
    >>> creds = SutroCredentials(api_key="...", api_url="http://127.0.0.1:8484")
    >>> @sutro_flow
    ... async def hello() -> dict:
    ...     return await sutro_batch_job(["hello", "world"], "out/hello.parquet", creds,
    ...                                  model="all-minilm-l6-v2")
    >>> load_results(asyncio.run(hello()))                                  # doctest: +SKIP
"""

from __future__ import annotations

from .cancellation import cancel_sutro_jobs
from .credentials import SutroCredentials
from .flows import sutro_batch_job
from .hooks import sutro_flow, with_sutro_cancellation
from .results import load_results
from .tasks import (
    cancel_job,
    download_results_to_parquet,
    run_function,
    submit_batch_function,
    submit_batch_inference,
    wait_for_job,
)

__all__ = [
    "SutroCredentials",
    "cancel_job",
    "cancel_sutro_jobs",
    "download_results_to_parquet",
    "load_results",
    "run_function",
    "submit_batch_function",
    "submit_batch_inference",
    "sutro_batch_job",
    "sutro_flow",
    "wait_for_job",
    "with_sutro_cancellation",
]
