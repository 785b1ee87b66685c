"""Issue 12, item 4, in its real runtime: a Prefect server, a flow served by a real ``Runner``, the
flow-run process frozen with SIGSTOP, then the run cancelled through the API.

A frozen process runs no hook of its own; the runner SIGTERMs it, SIGKILLs it 30 s later, and runs the
``on_cancellation`` hooks of the deployed (top-level) flow only. Written with ``@sutro_flow`` the job
ends CANCELLED; with a plain ``@flow`` it runs on (and the run's log said so with a WARNING at submit).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.runner import Runner
from prefect.states import Cancelling
from sutro_core import JobStatus

from frozen_flows import protected, unprotected
from prefect_sutro import SutroCredentials
from prefect_waits import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

ROWS = 300  # slow-embed: >= 0.3 s a row, so the job outlives the runner's 30 s SIGTERM->SIGKILL grace


async def _run_tree(flow_run_id) -> list:
    async with get_client() as client:
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )
    return [flow_run_id, *(c.id for c in children)]


async def _logs(run_ids: list) -> list[str]:
    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids)))
    return [log.message for log in logs]


async def _job_recorded(run_ids: list) -> bool:
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids))
        )
    return any("sutro_job_id" in (a.metadata_ or {}) for a in artifacts)


def _kill(pid: int | None) -> None:
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize(
    ("flow_obj", "credentials"),
    [(protected, "env"), (protected, "block"), (unprotected, "block")],
    ids=["sutro_flow-env-credentials", "sutro_flow-saved-block", "plain-flow"],
)
async def test_cancelling_a_frozen_served_run(
    flow_obj, credentials, sutro_server, sutro_key, sutro_client, tmp_path: Path, monkeypatch
):
    block = None
    if credentials == "block":
        block = f"sutro-{uuid.uuid4().hex[:8]}"
        await SutroCredentials(api_key=sutro_key, api_url=sutro_server.url).save(block)
    else:
        monkeypatch.setenv("SUTRO_API_KEY", sutro_key)
        monkeypatch.setenv("SUTRO_API_URL", sutro_server.url)
    pid_file = tmp_path / "flow-run.pid"
    runner = Runner(name=f"runner-{uuid.uuid4().hex[:6]}", query_seconds=1, pause_on_shutdown=False)
    deployment_id = await runner.aadd_flow(flow_obj, name=f"frozen-{uuid.uuid4().hex[:6]}")
    async with get_client() as client:
        flow_run = await client.create_flow_run_from_deployment(
            deployment_id,
            parameters={"rows": ROWS, "output_path": str(tmp_path / "never.parquet"),
                        "pid_file": str(pid_file), "block": block},
        )
    runner_task = asyncio.create_task(runner.start())
    pid = None
    try:

        async def running_job():
            jobs = await asyncio.to_thread(sutro_client.list_jobs)
            return jobs[0] if jobs and jobs[0].status is JobStatus.RUNNING else None

        job = await wait_for(running_job, 150, "the served flow run to start its Sutro job")
        assert job.name == f"{flow_obj.name}/frozen-embed", "Prefect-created jobs are named flow/step"
        run_ids = await _run_tree(flow_run.id)
        await wait_for(lambda: _job_recorded(run_ids), 30, "the job-link artifact (the durable record)")
        warning = "has no Sutro cancellation hook"
        if flow_obj is unprotected:
            async def warned():
                return any(warning in m for m in await _logs(run_ids))

            await wait_for(warned, 30, "the submit's WARNING that a cancel would lose the job")

        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGSTOP)  # frozen: it can run nothing of its own from here on
        async with get_client() as client:
            await client.set_flow_run_state(flow_run.id, Cancelling(), force=True)

        async def run_cancelled():
            async with get_client() as client:
                run = await client.read_flow_run(flow_run.id)
            return run.state is not None and run.state.is_cancelled()

        await wait_for(run_cancelled, 120, "the runner to kill the frozen process and mark the run Cancelled")
        status = (await asyncio.to_thread(sutro_client.get_job, job.job_id)).status
        if flow_obj is protected:
            assert status in (JobStatus.CANCELLING, JobStatus.CANCELLED), status
            assert not any(warning in m for m in await _logs(run_ids))
            done = await asyncio.to_thread(sutro_client.get_job, job.job_id)
            deadline = time.monotonic() + 30
            while done.status is JobStatus.CANCELLING and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
                done = await asyncio.to_thread(sutro_client.get_job, job.job_id)
            assert done.status is JobStatus.CANCELLED
        else:
            # The bug the decorator prevents: the run is Cancelled, the paid job runs on.
            assert status is JobStatus.RUNNING, status
            await asyncio.to_thread(sutro_client.cancel_job, job.job_id)
    finally:
        _kill(pid)
        await runner.astop()
        runner_task.cancel()
        await asyncio.gather(runner_task, return_exceptions=True)
    assert len(sutro_client.list_jobs()) == 1
