"""prefect_sutro: Sutro batch inference and Sutro Functions as Prefect tasks, flows, blocks and artifacts.

Register the credentials block for the UI with ``prefect block register -m prefect_sutro``.

Example:
    >>> import asyncio
    >>> from prefect_sutro import SutroCredentials, sutro_batch_job, load_results
    >>> creds = SutroCredentials(api_key="...", api_url="http://127.0.0.1:8000")
    >>> manifest = asyncio.run(sutro_batch_job(["hello", "world"], "out/hello.parquet", creds,
    ...                                        model="all-minilm-l6-v2"))   # doctest: +SKIP
    >>> load_results(manifest)                                              # doctest: +SKIP
"""

from __future__ import annotations

from .cancellation import cancel_sutro_jobs
from .credentials import SutroCredentials
from .flows import sutro_batch_job
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
    "wait_for_job",
]
