"""``sutro_batch_job``: one Sutro job as a flow (submit or reattach, wait, parquet) returning the manifest.

Example:
    >>> manifest = asyncio.run(sutro_batch_job(["I love it", "Broken on arrival"], "out/reviews.parquet",
    ...                                        creds, model="all-minilm-l6-v2"))   # doctest: +SKIP
    >>> load_results(manifest).height                                              # doctest: +SKIP
    2
"""

# No `from __future__ import annotations` here: Prefect validates flow parameters from the annotations,
# and a deployment loads this file under a synthetic module name where string annotations cannot be
# resolved (pydantic: "Sutro_Batch_JobModel is not fully defined").
import logging
import os
from collections.abc import Sequence
from typing import Any

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from sutro_core import InputValidationError, JobSpec
from sutro_core.inputs import is_url, read_input_file
from sutro_core.spec import DEFAULT_TIMEOUT_S, carry_frame
from sutro_core.storage import is_remote

from .credentials import SutroCredentials
from .flow_decorators import sutro_flow
from .lineage import asset_key
from .storage import check_storage_options, masked, resolve_storage_options
from .tasks import download_results_to_parquet, submit_batch_function, submit_batch_inference, wait_for_job

logger = logging.getLogger(__name__)


async def _rename_run(name: str) -> None:
    """Name this flow run (a readable subflow name instead of a random one); best effort."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    try:
        async with get_client() as client:
            await client.update_flow_run(ctx.flow_run.id, name=name[:200])
    except Exception as exc:  # noqa: BLE001 - a name is cosmetic; the job must go on
        logger.debug("could not rename flow run %s: %s", ctx.flow_run.id, exc)


async def _unstore_secrets(parameter: str, value: Any) -> None:
    """Prefect stored this flow run's parameters before the body ran: overwrite the plain-text secrets there
    (best effort) before refusing them."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None or not isinstance(value, dict):
        return
    try:
        async with get_client() as client:
            run = await client.read_flow_run(ctx.flow_run.id)
            await client.update_flow_run(ctx.flow_run.id, parameters={**run.parameters, parameter: masked(value)})
    except Exception as exc:  # noqa: BLE001 - the refusal below is what matters
        logger.warning("could not mask the refused %s in flow run %s: %s", parameter, ctx.flow_run.id,
                       type(exc).__name__)


@sutro_flow(name="sutro-batch-job")
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
    timeout: float | None = DEFAULT_TIMEOUT_S,
    poll_interval_seconds: float = 1.0,
    max_poll_interval_seconds: float = 30.0,
    include_inputs: bool = False,
    preview_rows: int = 10,
    artifact_key: str | None = None,
    idempotency_scope: str | None = None,
    cancel_on_cancellation: bool = True,
    cancel_on_timeout: bool = True,
    carry_columns: list[str] | None = None,
    repair_rounds: int = 0,
    max_failed_rows: int | float | None = None,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one Sutro batch job end to end: submit (retry-safe) -> wait -> parquet -> manifest dict.

    Give exactly one of ``model`` or ``function_name`` (``column`` then lists the Function's inputs). A
    DataFrame input's columns are carried into the results (``carry_columns`` picks them, ``[]`` none);
    docs/prefect.md lists every parameter. ``output_path`` may be object storage (``s3://bucket/x.parquet``):
    credentials from ``storage_options`` with secrets as ``Secret`` blocks or ``SecretStr`` (a plain-text
    secret is refused: Prefect stores a flow run's parameters), else the worker's AWS environment.

    Example:
        >>> manifest = await sutro_batch_job(tickets_df, "s3://bucket/triage.parquet", creds,
        ...     function_name="ticket-triage", column=["text"])   # doctest: +SKIP
    """
    if (model is None) == (function_name is None):
        raise InputValidationError(
            "model/function_name", "give exactly one: model='all-minilm-l6-v2' for batch inference, "
            "or function_name='ticket-triage' for a Sutro Function")
    try:
        check_storage_options(storage_options)
    except InputValidationError:
        await _unstore_secrets("storage_options", storage_options)
        raise
    given = data
    if isinstance(data, (str, os.PathLike)) and is_remote(os.fspath(data)) and not is_url(os.fspath(data)):
        # An object-storage input (s3://...) is read here, with the same credentials as the output.
        data = read_input_file(data, resolve_storage_options(storage_options), field="data")
    carry = carry_frame(data, carry_columns)  # checked before anything is billed
    step = artifact_key or name or function_name or model or "sutro-job"
    await _rename_run(step)
    rows = {"repair_rounds": repair_rounds, "max_failed_rows": max_failed_rows, "max_cost_usd": max_cost_usd}
    job = {"job_priority": job_priority, "name": name, "description": description, **rows}
    columns = [column] if isinstance(column, str) else column
    if model is not None:
        what = {"column": column, "system_prompt": system_prompt, "output_schema": output_schema,
                "sampling_params": sampling_params, "truncate_rows": truncate_rows}
        handle = await submit_batch_inference(data, model, sutro_credentials, artifact_key=artifact_key,
                                              idempotency_scope=idempotency_scope, **what, **job)
        # The same job, for the repair rounds: its rows go again (its fingerprint keys the repair jobs).
        spec = JobSpec.for_inference(data, model, **what, **rows) if repair_rounds else None
    else:
        handle = await submit_batch_function(function_name, data, sutro_credentials, columns=columns,
                                             artifact_key=artifact_key, idempotency_scope=idempotency_scope, **job)
        spec = JobSpec.for_function(function_name, data, columns=columns, **rows) if repair_rounds else None
    await _rename_run(f"{step} · {handle.job_id}")
    # Waited in the flow body, not as a task run: when the run is cancelled Prefect marks every task
    # still in flight Crashed and logs "Crash detected!" in red (its engine does that for any task); a
    # wait here lets the cancel read as what it is, the flow run Cancelled.
    await wait_for_job.fn(
        handle, sutro_credentials, timeout=timeout, poll_interval_seconds=poll_interval_seconds,
        max_poll_interval_seconds=max_poll_interval_seconds, cancel_on_timeout=cancel_on_timeout)
    # A file or URL input is the results asset's upstream asset (inline rows are none).
    source = asset_key(os.fspath(given)) if isinstance(given, (str, os.PathLike)) else None
    download = (download_results_to_parquet.with_options(asset_deps=[source]) if source
                else download_results_to_parquet)
    return await download(
        handle, output_path, sutro_credentials, include_inputs=include_inputs, preview_rows=preview_rows,
        artifact_key=artifact_key, carry=carry, spec=spec, storage_options=storage_options)
