"""Runs one Prefect flow run in its own process (the process a test may SIGKILL), against the Prefect
API at PREFECT_API_URL (a server the test owns, so a second process can run the same flow run again
and a killed driver leaves no server behind).

``main("first")`` creates the flow run, writes its id to RELIABILITY_FLOW_RUN_FILE, and runs it;
``main("rerun")`` puts that flow run back to Scheduled (what a retry after a crash does) and runs it
again. The last output line is JSON: {"state", "manifest"}.

Example:
    $ PREFECT_API_URL=http://127.0.0.1:4200/api PREFECT_HOME=/tmp/ph SUTRO_API_KEY=... SUTRO_API_URL=... RELIABILITY_OUTPUT=/tmp/o.parquet \
      RELIABILITY_FLOW_RUN_FILE=/tmp/run-id python -c "from reliability.prefect_driver import main; main('first')"
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from prefect import flow

from prefect_sutro import SutroCredentials, sutro_batch_job

ROWS = [f"prefect crash row {i}" for i in range(16)]


@flow(name="reliability-embed")
async def embed_flow(output: str) -> dict:
    """Embed ROWS with the slow model into ``output`` (credentials from the environment)."""
    creds = SutroCredentials(api_key=os.environ["SUTRO_API_KEY"], api_url=os.environ["SUTRO_API_URL"])
    return await sutro_batch_job(ROWS, output, creds, model="slow-embed", poll_interval_seconds=0.2,
                                 max_poll_interval_seconds=0.5)


async def _main(mode: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import Scheduled

    if not os.environ.get("PREFECT_API_URL"):  # never start an ephemeral server a kill would orphan
        raise SystemExit("PREFECT_API_URL must point at the test's Prefect server")
    run_file = Path(os.environ["RELIABILITY_FLOW_RUN_FILE"])
    async with get_client() as client:
        if mode == "first":
            flow_run = await client.create_flow_run(embed_flow, parameters={"output": os.environ["RELIABILITY_OUTPUT"]})
            run_file.write_text(str(flow_run.id))
        else:
            flow_run = await client.read_flow_run(run_file.read_text().strip())
            await client.set_flow_run_state(flow_run.id, Scheduled(), force=True)
            flow_run = await client.read_flow_run(flow_run.id)
    state = await run_flow(embed_flow, flow_run=flow_run, parameters=flow_run.parameters, return_type="state")
    manifest = await state.result() if state.is_completed() else None
    print(json.dumps({"state": state.type.value, "message": state.message, "manifest": manifest}, default=str))


def main(mode: str) -> None:
    """Entry point for the test's subprocess."""
    asyncio.run(_main(mode))
