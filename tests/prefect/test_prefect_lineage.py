"""Prefect lineage (issue 25) against the session's real Prefect server: after a flow run, the results asset's
materialization and the ``sutro.job.*`` events are read back through the server's events API, the way an
automation's trigger selects them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter
from prefect.types._datetime import now

from prefect_sutro import cancel_job, submit_batch_inference, sutro_batch_job
from prefect_sutro.lineage import asset_key

FAST = {"poll_interval_seconds": 0.2, "max_poll_interval_seconds": 0.5}


async def _events(names: list[str], since: Any, resource_prefix: str | None = None, want: int = 1,
                  timeout: float = 30) -> list[Any]:
    """Events named ``names`` since ``since`` (an automation's ``expect``/``match``), waiting for ``want``."""
    import inspect

    from prefect.events.worker import EventsWorker

    drained = EventsWorker.drain_all()  # what this process emitted is sent before the query
    if inspect.isawaitable(drained):
        await drained
    event_filter = EventFilter(
        occurred=EventOccurredFilter(since=since), event=EventNameFilter(name=names),
        resource=EventResourceFilter(id_prefix=[resource_prefix]) if resource_prefix else None)
    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while True:
            page = await client.read_events(filter=event_filter, limit=50)
            if len(page.events) >= want or time.monotonic() > deadline:
                return page.events
            await asyncio.sleep(0.5)


async def test_the_results_asset_and_the_job_events_are_visible_through_the_api(
    sutro_credentials, sutro_client, tmp_path: Path
):
    since = now("UTC")
    tickets = tmp_path / "tickets.csv"
    pl.DataFrame({"id": [1, 2, 3], "text": ["charged twice", "app crashes", "dark mode"]}).write_csv(tickets)
    out = tmp_path / "out" / "embeddings.parquet"
    state = await sutro_batch_job(str(tickets), str(out), sutro_credentials, model="all-minilm-l6-v2",
                                  column="text", return_state=True, **FAST)
    assert state.is_completed(), state.message
    [job] = sutro_client.list_jobs()
    flow_run = f"prefect.flow-run.{state.state_details.flow_run_id}"

    # The asset: a materialization of the artifact's URI, with the step's description and its input upstream.
    [mat] = await _events(["prefect.asset.materialization.succeeded"], since, resource_prefix=f"file://{tmp_path}")
    assert mat.resource.id == asset_key(str(out)) == f"file://{out}"
    assert mat.resource.get("prefect.resource.name") == "embeddings.parquet"
    meta = mat.payload
    assert meta["gen_ai.request.model"] == "all-minilm-l6-v2" and meta["sutro.job.id"] == job.job_id
    assert meta["gen_ai.usage.input_tokens"] == job.input_tokens and meta["sutro.cost.usd"] == job.job_cost
    assert meta["sutro.output.rows"] == 3 and meta["sutro.input.uri"] == str(tickets)
    assert [(c["name"], c["type"]) for c in meta["sutro.output.schema"]] == [
        ("inference_result", "list<element: float>"), ("sutro_row_status", "large_string"),
        ("sutro_job_id", "large_string")]
    related = {(r.id, r.role) for r in mat.related}
    assert (f"file://{tickets}", "asset") in related and ("sutro", "asset-materialized-by") in related
    assert any(r.id == flow_run for r in mat.related)

    # The job events, found as an automation would: expect sutro.job.succeeded, match sutro.job.*.
    [succeeded] = await _events(["sutro.job.succeeded"], since, resource_prefix="sutro.job.")
    assert succeeded.resource.id == f"sutro.job.{job.job_id}"
    labels = dict(succeeded.resource.root)
    assert labels["sutro.job.id"] == job.job_id and labels["gen_ai.request.model"] == "all-minilm-l6-v2"
    assert float(labels["sutro.cost.usd"]) == job.job_cost and labels["sutro.job.status"] == "SUCCEEDED"
    assert any(r.id == flow_run for r in succeeded.related)
    [submitted] = await _events(["sutro.job.submitted"], since, resource_prefix=f"sutro.job.{job.job_id}")
    assert submitted.payload["sutro.input.rows"] == 3 and submitted.occurred <= succeeded.occurred


async def test_failed_and_cancelled_jobs_emit_their_events(sutro_credentials, sutro_client, tmp_path: Path):
    since = now("UTC")
    failed = await sutro_batch_job(["fine row", "word " * 2000], str(tmp_path / "x.parquet"), sutro_credentials,
                                   model="all-minilm-l6-v2", truncate_rows=False, return_state=True, **FAST)
    assert failed.is_failed()

    @flow
    async def start_and_cancel() -> str:
        handle = await submit_batch_inference([f"row {i}" for i in range(40)], "slow-embed", sutro_credentials)
        await cancel_job(handle, sutro_credentials)
        return handle.job_id

    cancelled_id = await start_and_cancel()
    [failed_job] = [j for j in sutro_client.list_jobs() if j.job_id != cancelled_id]
    [ended] = await _events(["sutro.job.failed"], since, resource_prefix=f"sutro.job.{failed_job.job_id}")
    assert ended.resource["sutro.job.status"] == "FAILED" and failed_job.failure_reason in ended.payload["reason"]
    [cancelled] = await _events(["sutro.job.cancelled"], since, resource_prefix=f"sutro.job.{cancelled_id}")
    assert cancelled.resource["gen_ai.request.model"] == "slow-embed"
    # No results were written, so no asset was materialized for either.
    assert await _events(["prefect.asset.materialization.succeeded"], since,
                         resource_prefix=f"file://{tmp_path}", timeout=1) == []
