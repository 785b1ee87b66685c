"""A real Prefect runner cancels a deployed sutro_batch_job run: the runner kills the flow's process and
runs the on_cancellation hook in its own process, which must still find and cancel the Sutro job. A
normal cancel reads as a cancel: no task run Crashed, no red "Crash detected!" in the run's log."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, TaskRunFilter, TaskRunFilterFlowRunId
from prefect.runner import Runner
from prefect.states import Cancelling
from sutro_core import JobStatus

from prefect_sutro import SutroCredentials, sutro_batch_job
from prefect_waits import wait_for

pytestmark = pytest.mark.slow


async def test_runner_cancellation_cancels_the_sutro_job(
    sutro_server, sutro_key, sutro_client, tmp_path: Path
):
    block_name = f"sutro-{uuid.uuid4().hex[:8]}"
    block_id = await SutroCredentials(api_key=sutro_key, api_url=sutro_server.url).save(block_name)

    runner = Runner(name=f"runner-{uuid.uuid4().hex[:6]}", query_seconds=1, pause_on_shutdown=False)
    deployment_id = await runner.aadd_flow(sutro_batch_job, name="cancel-test")
    async with get_client() as client:
        flow_run = await client.create_flow_run_from_deployment(
            deployment_id,
            parameters={
                "data": [f"row {i}" for i in range(80)],
                "output_path": str(tmp_path / "never.parquet"),
                "sutro_credentials": {"$ref": {"block_document_id": str(block_id)}},
                "model": "slow-embed",
                "poll_interval_seconds": 0.2,
                "max_poll_interval_seconds": 0.5,
            },
        )
    runner_task = asyncio.create_task(runner.start())
    try:

        async def running_job():
            jobs = await asyncio.to_thread(sutro_client.list_jobs)
            return jobs[0] if jobs and jobs[0].status is JobStatus.RUNNING else None

        job = await wait_for(running_job, 120, "the deployed flow run to start its Sutro job")

        async def submit_task_completed():
            # Cancelled while the submit task still runs (its job-link artifact, under load), the task is
            # Crashed: Prefect's engine marks any task in flight so. This test cancels the wait.
            async with get_client() as client:
                runs = await client.read_task_runs(
                    task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run.id])))
            return any(t.state is not None and t.state.is_completed() for t in runs)

        await wait_for(submit_task_completed, 60, "the submit task run to complete")
        async with get_client() as client:
            await client.set_flow_run_state(flow_run.id, Cancelling(), force=True)

        async def job_cancelled():
            j = await asyncio.to_thread(sutro_client.get_job, job.job_id)
            return j.status in (JobStatus.CANCELLING, JobStatus.CANCELLED)

        await wait_for(job_cancelled, 90, "the runner's on_cancellation hook to cancel the Sutro job")

        async def run_cancelled():
            async with get_client() as client:
                run = await client.read_flow_run(flow_run.id)
            return run.state is not None and run.state.is_cancelled()

        await wait_for(run_cancelled, 60, "the flow run to be Cancelled")
        await asyncio.sleep(3)  # the killed process's last logs
        async with get_client() as client:
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
            task_runs = await client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run.id]))
            )
        assert not [log.message for log in logs if "Crash detected" in log.message]
        assert not [t.name for t in task_runs if t.state and t.state.is_crashed()]
        assert job.name == "sutro-batch-job/submit-slow-embed"
    finally:
        await runner.astop()
        runner_task.cancel()
        await asyncio.gather(runner_task, return_exceptions=True)
    assert len(sutro_client.list_jobs()) == 1
