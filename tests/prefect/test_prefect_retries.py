"""Retry safety and cancellation under Prefect: retries reattach (one job on the server), cancelling a flow
run cancels its job."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from prefect import flow, task
from prefect._internal import control_listener
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.exceptions import TerminationSignal
from prefect.settings import get_current_settings
from sutro_core import JobStatus, JobTimeoutError
from sutro_core.idempotency import key_in_description

from prefect_sutro import SutroCredentials, submit_batch_inference, sutro_batch_job, wait_for_job

REVIEWS = ["Great blender, crushes ice easily.", "Stopped working after a week.", "Okay for the price."]
FAST = {"poll_interval_seconds": 0.2, "max_poll_interval_seconds": 0.5}


async def test_retried_task_reattaches_to_the_submitted_job(sutro_credentials, sutro_client):
    attempts: list = []

    @task(retries=1, retry_delay_seconds=0)
    async def embed_step():
        sub = await submit_batch_inference(REVIEWS, "all-minilm-l6-v2", sutro_credentials)
        attempts.append(sub)
        if len(attempts) == 1:
            raise RuntimeError("worker lost right after submitting")  # the wait step fails once
        return await wait_for_job(sub, sutro_credentials, **FAST)

    @flow
    async def pipeline():
        return await embed_step()

    job = await pipeline()
    assert [a.reattached for a in attempts] == [False, True]
    assert attempts[0].job_id == attempts[1].job_id == job.job_id
    jobs = sutro_client.list_jobs()
    assert len(jobs) == 1 and jobs[0].status is JobStatus.SUCCEEDED
    assert key_in_description(jobs[0].description) == attempts[0].idempotency_key


async def test_retried_flow_reattaches_subflow_job(sutro_credentials, sutro_client, tmp_path: Path):
    """A parent flow retry re-creates the sutro_batch_job subflow run; the job is still found and reused."""
    timeouts = iter([0.3, 60.0])  # first try gives up waiting (leaving the job running) while it still runs

    @flow(retries=1, retry_delay_seconds=0)
    async def parent():
        return await sutro_batch_job(
            REVIEWS,
            str(tmp_path / "r.parquet"),
            sutro_credentials,
            model="slow-embed",
            timeout=next(timeouts),
            cancel_on_timeout=False,
            **FAST,
        )

    state = await parent(return_state=True)
    assert state.is_completed(), state.message
    manifest = await state.result()
    jobs = sutro_client.list_jobs()
    assert [j.job_id for j in jobs] == [manifest["job_id"]], "a flow retry must not submit a second job"
    assert jobs[0].status is JobStatus.SUCCEEDED and manifest["rows"] == 3

    async with get_client() as client:
        run = await client.read_flow_run(state.state_details.flow_run_id)
        subflow_runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
        )
    assert run.run_count == 2  # the flow really was retried...
    assert len({r.id for r in subflow_runs}) == 2  # ...and the subflow ran under a new flow run id


async def test_timeout_cancels_the_job_and_fails_the_flow(sutro_credentials, sutro_client, tmp_path: Path):
    state = await sutro_batch_job(
        [f"row {i}" for i in range(30)],
        str(tmp_path / "t.parquet"),
        sutro_credentials,
        model="slow-embed",
        timeout=0.5,
        return_state=True,
        **FAST,
    )
    assert state.is_failed()
    with pytest.raises(JobTimeoutError) as info:
        await state.result()
    (job,) = sutro_client.list_jobs()
    assert info.value.cancelled and job.status in (JobStatus.CANCELLING, JobStatus.CANCELLED)


async def test_timeout_with_opt_out_leaves_the_job_running(sutro_credentials, sutro_client, tmp_path: Path):
    state = await sutro_batch_job(
        [f"row {i}" for i in range(30)], str(tmp_path / "t.parquet"), sutro_credentials, model="slow-embed",
        timeout=0.5, cancel_on_timeout=False, return_state=True, **FAST,
    )
    with pytest.raises(JobTimeoutError):
        await state.result()
    (job,) = sutro_client.list_jobs()
    assert not job.status.is_terminal
    sutro_client.cancel_job(job.job_id)


def _cancel_when_running(sutro_client, seen: dict) -> None:
    """Act like a Prefect runner cancelling the flow run: commit the cancel intent, then SIGTERM."""
    deadline = time.time() + 240  # the job may queue behind the previous tests' jobs on a loaded machine
    while time.time() < deadline:
        jobs = sutro_client.list_jobs()
        if jobs and jobs[0].status in (JobStatus.RUNNING, JobStatus.STARTING):
            seen["job_id"] = jobs[0].job_id
            control_listener._set_intent("cancel")
            # A signal that lands inside an asyncio socket write is logged there as a "Fatal write error"
            # instead of propagating; a runner escalates, and so does this stand-in, until the flow stops.
            for _ in range(5):
                os.kill(os.getpid(), signal.SIGTERM)
                if seen["stopped"].wait(20):
                    return
            return
        time.sleep(0.1)


@pytest.mark.parametrize("opt_out", [False, True])
def test_cancelling_the_flow_run_cancels_the_remote_job(
    sutro_credentials, sutro_client, tmp_path: Path, opt_out
):
    seen: dict = {"stopped": threading.Event()}
    killer = threading.Thread(target=_cancel_when_running, args=(sutro_client, seen), daemon=True)
    killer.start()
    try:
        with pytest.raises(TerminationSignal):
            asyncio.run(
                sutro_batch_job(
                    [f"row {i}" for i in range(200)],  # ~60 s: still running when the cancel lands, under load too
                    str(tmp_path / "c.parquet"),
                    sutro_credentials,
                    model="slow-embed",
                    cancel_on_cancellation=not opt_out,
                    **FAST,
                )
            )
    finally:
        seen["stopped"].set()
        killer.join(5)
        control_listener.clear_intent()
    job = sutro_client.get_job(seen["job_id"])
    if opt_out:
        assert job.status in (JobStatus.RUNNING, JobStatus.STARTING, JobStatus.QUEUED)
        sutro_client.cancel_job(job.job_id)
    else:
        assert job.status in (JobStatus.CANCELLING, JobStatus.CANCELLED)
    assert len(sutro_client.list_jobs()) == 1


@pytest.mark.parametrize("child_opts_out", [False, True])
async def test_cancellation_hook_in_a_runner_process_finds_jobs_through_artifacts(
    sutro_server, sutro_key, sutro_client, child_opts_out
):
    """A Prefect runner/worker runs on_cancellation hooks in its own process: there, only the durable
    record (job-link artifacts + the saved credentials block) can say which jobs to cancel. A subflow run
    with cancel_on_cancellation=False keeps its job even when its parent's hook runs."""
    block_name = f"sutro-{uuid.uuid4().hex[:8]}"
    await SutroCredentials(api_key=sutro_key, api_url=sutro_server.url).save(block_name)

    @flow
    async def child(cancel_on_cancellation: bool = True):
        creds = await SutroCredentials.load(block_name)
        return await submit_batch_inference([f"row {i}" for i in range(60)], "slow-embed", creds)

    @flow
    async def parent():
        return await child(cancel_on_cancellation=not child_opts_out)

    state = await parent(return_state=True)
    sub = await state.result()
    script = (
        "import sys, uuid\n"
        "from prefect.client.orchestration import get_client\n"
        "from prefect_sutro import cancel_sutro_jobs\n"
        "with get_client(sync_client=True) as c:\n"
        "    run = c.read_flow_run(uuid.UUID(sys.argv[1]))\n"
        "cancel_sutro_jobs(None, run, None)\n"
    )
    env = dict(os.environ, PREFECT_API_URL=str(get_current_settings().api.url))
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script, str(state.state_details.flow_run_id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    status = sutro_client.get_job(sub.job_id).status
    if child_opts_out:
        assert not status.is_terminal, status
        sutro_client.cancel_job(sub.job_id)
    else:
        assert status in (JobStatus.CANCELLING, JobStatus.CANCELLED)
    assert len(sutro_client.list_jobs()) == 1


async def test_identical_calls_share_a_job_unless_scoped_apart(
    sutro_credentials, sutro_client, tmp_path: Path
):
    @flow
    async def twice():
        a = await sutro_batch_job(
            REVIEWS, str(tmp_path / "a.parquet"), sutro_credentials, model="all-minilm-l6-v2", **FAST
        )
        b = await sutro_batch_job(
            REVIEWS, str(tmp_path / "b.parquet"), sutro_credentials, model="all-minilm-l6-v2", **FAST
        )
        c = await sutro_batch_job(
            REVIEWS,
            str(tmp_path / "c.parquet"),
            sutro_credentials,
            model="all-minilm-l6-v2",
            idempotency_scope="second-pass",
            **FAST,
        )
        return a, b, c

    a, b, c = await twice()
    assert a["job_id"] == b["job_id"] != c["job_id"]
    assert len(sutro_client.list_jobs()) == 2
    assert Path(b["uri"]).exists() and Path(c["uri"]).exists()
