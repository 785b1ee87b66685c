"""Flows a real Prefect Runner serves in test_prefect_frozen_cancel.py: the example's shape (a top-level
flow whose Sutro job runs in a ``sutro_batch_job`` subflow), once written with ``@sutro_flow`` and once
with a plain ``@flow`` (what issue 12 measured: the job outlived the cancelled run)."""

import os
from pathlib import Path

from prefect import flow

from prefect_sutro import SutroCredentials, sutro_batch_job, sutro_flow


async def _embed(rows: int, output_path: str, pid_file: str, block: str | None) -> dict:
    Path(pid_file).write_text(str(os.getpid()))  # the process the test freezes
    if block:
        creds = await SutroCredentials.load(block)
    else:  # like the example: credentials from the environment (the runner has the same environment)
        creds = SutroCredentials(api_key=os.environ["SUTRO_API_KEY"], api_url=os.environ["SUTRO_API_URL"])
    return await sutro_batch_job(
        [f"frozen row {i}" for i in range(rows)], output_path, creds, model="slow-embed",
        artifact_key="frozen-embed", poll_interval_seconds=0.2, max_poll_interval_seconds=0.5,
    )


@sutro_flow(name="frozen-protected")
async def protected(rows: int, output_path: str, pid_file: str, block: str | None = None) -> dict:
    """Written the documented way."""
    return await _embed(rows, output_path, pid_file, block)


@flow(name="frozen-unprotected")
async def unprotected(rows: int, output_path: str, pid_file: str, block: str | None = None) -> dict:
    """Written with a plain @flow: a runner-side cancel cannot reach the job."""
    return await _embed(rows, output_path, pid_file, block)
