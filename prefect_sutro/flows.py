"""``sutro_batch_job``: a flow that submits (or reattaches), waits, and writes the results to parquet.

It returns the results manifest (a small dict), not the DataFrame; ``load_results`` reads it back.
Cancelling the flow run cancels the remote job unless ``cancel_on_cancellation=False``.

Example:
    >>> import asyncio
    >>> from prefect_sutro import SutroCredentials, sutro_batch_job, load_results
    >>> creds = SutroCredentials(api_key="...", api_url="http://127.0.0.1:8000")
    >>> manifest = asyncio.run(sutro_batch_job(["I love it", "Broken on arrival"], "out/reviews.parquet",
    ...                                        creds, model="all-minilm-l6-v2"))   # doctest: +SKIP
    >>> load_results(manifest).height                                              # doctest: +SKIP
    2
"""

# No `from __future__ import annotations` here: Prefect validates flow parameters from the annotations,
# and a deployment loads this file under a synthetic module name where string annotations cannot be
# resolved (pydantic: "Sutro_Batch_JobModel is not fully defined").
from collections.abc import Sequence
from typing import Any

from prefect import flow
from sutro_core import InputValidationError

from .cancellation import cancel_sutro_jobs
from .credentials import SutroCredentials
from .tasks import download_results_to_parquet, submit_batch_function, submit_batch_inference, wait_for_job


@flow(name="sutro-batch-job", on_cancellation=[cancel_sutro_jobs])
async def sutro_batch_job(
    data: Any,
    output_path: str,
    sutro_credentials: SutroCredentials,
    model: str | None = None,
    function_name: str | None = None,
    column: str | Sequence[str] | None = None,
    system_prompt: str | None = None,
    output_schema: Any = None,
    sampling_params: dict[str, Any] | None = None,
    job_priority: int = 0,
    truncate_rows: bool = True,
    name: str | None = None,
    description: str | None = None,
    max_cost_usd: float | None = None,
    timeout: float | None = 7200,
    poll_interval_seconds: float = 1.0,
    max_poll_interval_seconds: float = 30.0,
    include_inputs: bool = False,
    preview_rows: int = 10,
    artifact_key: str | None = None,
    idempotency_scope: str | None = None,
    cancel_on_cancellation: bool = True,
) -> dict[str, Any]:
    """Run one Sutro batch job end to end: submit (retry-safe) -> wait -> parquet -> manifest dict.

    Give exactly one of ``model`` (batch inference) or ``function_name`` (a Sutro Function; ``column`` then
    lists the Function's input columns). ``output_path`` is a local path or an fsspec URI. Retrying the
    flow run (or a parent flow that calls it) reattaches to the job already submitted; identical calls
    in one flow run share one job unless ``idempotency_scope`` tells them apart.

    Example:
        >>> manifest = await sutro_batch_job(tickets_df, "s3://bucket/triage.parquet", creds,
        ...     function_name="ticket-triage", column=["text"])   # doctest: +SKIP
    """
    if (model is None) == (function_name is None):
        raise InputValidationError(
            "model/function_name",
            "give exactly one: model='all-minilm-l6-v2' for batch inference, "
            "or function_name='ticket-triage' for a Sutro Function",
        )
    common: dict[str, Any] = {
        "sutro_credentials": sutro_credentials,
        "job_priority": job_priority,
        "name": name,
        "description": description,
        "max_cost_usd": max_cost_usd,
        "artifact_key": artifact_key,
        "idempotency_scope": idempotency_scope,
    }
    if model is not None:
        submission = await submit_batch_inference(
            data,
            model,
            column=column,
            system_prompt=system_prompt,
            output_schema=output_schema,
            sampling_params=sampling_params,
            truncate_rows=truncate_rows,
            **common,
        )
    else:
        columns = [column] if isinstance(column, str) else column
        submission = await submit_batch_function(function_name, data, columns=columns, **common)
    await wait_for_job(
        submission,
        sutro_credentials,
        timeout=timeout,
        poll_interval_seconds=poll_interval_seconds,
        max_poll_interval_seconds=max_poll_interval_seconds,
    )
    return await download_results_to_parquet(
        submission,
        output_path,
        sutro_credentials,
        include_inputs=include_inputs,
        preview_rows=preview_rows,
        artifact_key=artifact_key,
    )
