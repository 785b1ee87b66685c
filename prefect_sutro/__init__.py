"""prefect_sutro: Sutro batch inference and Sutro Functions as Prefect tasks, flows, blocks and artifacts.

Write the top-level flow with ``@sutro_flow`` (a drop-in for ``@flow``) so that cancelling a deployed run,
even one whose process is frozen or gone, cancels its Sutro jobs. ``load_results`` is ``sutro_core``'s.

Example:
    >>> from prefect_sutro import SutroCredentials, sutro_batch_job, sutro_flow, load_results
    >>> @sutro_flow
    ... async def hello(creds: SutroCredentials) -> dict:
    ...     return await sutro_batch_job(["hello", "world"], "out/hello.parquet", creds,
    ...                                  model="all-minilm-l6-v2")
"""

from __future__ import annotations

from sutro_core import load_results

from .cancellation import cancel_sutro_jobs
from .credentials import SutroCredentials
from .flows import sutro_batch_job
from .flow_decorators import sutro_flow, with_sutro_cancellation
from .tasks import (
    cancel_job,
    download_results_to_parquet,
    run_function,
    submit_batch_function,
    submit_batch_inference,
    wait_for_job,
)

__all__ = [
    "SutroCredentials", "cancel_job", "cancel_sutro_jobs", "download_results_to_parquet", "load_results",
    "run_function", "submit_batch_function", "submit_batch_inference", "sutro_batch_job", "sutro_flow",
    "wait_for_job", "with_sutro_cancellation",
]
