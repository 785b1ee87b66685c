"""Prefect as production runs it: a Prefect server, a ``process`` work pool served by two workers (standing
for two machines, one flow run at a time each), and a deployment whose flow writes Sutro results to S3
(credentials from ``SutroCredentials`` and ``Secret`` blocks; the workers have no AWS variables) and
persists its own result on S3 (a ``RemoteFileSystem`` block).

The kill: while the flow run runs on one worker and its Sutro job runs on sutro-local, that worker's whole
process tree (worker and flow-run process) is SIGKILLed. Nothing is left to report the crash, so the
deployment uses Prefect's own recipe for that: flow-run heartbeats and two automations, one marking a run
Crashed when its heartbeats stop ("zombie" detection), one putting a crashed run back to Scheduled. The
other worker picks the same flow run up and reattaches to the job: one billed job.

Repetitions: one per run (heartbeats are at least 30 s apart, so detecting the dead run alone takes about
a minute); ``SUTRO_DEPLOY_KILL_REPS=N`` repeats it.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from sutro_core import JobStatus
from support.services import Service

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
FLOWS = Path(__file__).parent / "prefect_flows"
ROWS = 60  # slow-embed: >= 0.3 s a row, so the job still runs when the worker is killed
KILL_REPS = int(os.environ.get("SUTRO_DEPLOY_KILL_REPS", "1"))
WORKERS = ("worker-a", "worker-b")
HEARTBEAT_S = 30  # Prefect's minimum flow-run heartbeat interval
ZOMBIE_AFTER_S = 75  # a run is a zombie after this long without a heartbeat (2.5 intervals: slack for load)


async def _wait(predicate, timeout: float, what: str, interval: float = 0.5):
    """Await ``predicate()`` until it returns something truthy; fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


async def _automations(client, deployment_id: uuid.UUID) -> None:
    """Prefect's recipe for runs whose infrastructure died: heartbeats stop -> Crashed -> Scheduled again."""
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.client.schemas.objects import StateType

    flow_runs_of_deployment = {"prefect.resource.id": "prefect.flow-run.*"}
    related = {"prefect.resource.id": f"prefect.deployment.{deployment_id}", "prefect.resource.role": "deployment"}
    await client.create_automation(AutomationCore(
        name="crash zombie flow runs",
        trigger=EventTrigger(
            match=flow_runs_of_deployment, match_related=related, after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
            within=timedelta(seconds=ZOMBIE_AFTER_S)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message="no heartbeat: its worker is gone")],
    ))
    await client.create_automation(AutomationCore(
        name="reschedule crashed flow runs",
        trigger=EventTrigger(match=flow_runs_of_deployment, match_related=related,
                             expect={"prefect.flow-run.Crashed"}, posture=Posture.Reactive, threshold=1),
        # force: Crashed is a terminal state, which only a forced transition leaves
        actions=[ChangeFlowRunState(state=StateType.SCHEDULED, name="AwaitingRetry", force=True,
                                    message="rescheduled after its infrastructure crashed")],
    ))


def _worker(name: str, pool: str, api_url: str, env: dict[str, str], log: Path) -> Service:
    return Service(name, [str(Path(sys.executable).with_name("prefect")), "worker", "start", "--pool", pool,
                          "--name", name, "--type", "process", "--limit", "1"],
                   log, env={**env, "DEPLOY_WORKER_NAME": name, "PREFECT_API_URL": api_url}, cwd=log.parent).start()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("rep", range(KILL_REPS))
async def test_worker_killed_mid_run_the_rerun_on_the_other_worker_reattaches(
        rep, s3_server, s3_bucket, sutro_server, sutro_key, sutro_client, tmp_path):
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.filesystems import RemoteFileSystem
    from prefect.flows import Flow
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    from prefect_sutro import SutroCredentials
    from support.prefect_server import PrefectTestServer, drain_prefect_workers

    output = s3_bucket.uri("prefect/embeddings.parquet")
    s3 = {"key": s3_server.access_key, "endpoint_url": s3_server.endpoint_url,
          "client_kwargs": {"region_name": s3_server.region}}
    pool = f"deploy-{uuid.uuid4().hex[:6]}"
    # No AWS_* variables: the workers reach S3 only through the flow's storage options and Prefect's blocks.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT", "PYTEST_", "AWS_"))}
    env.update({
        "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
        "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_HEARTBEAT_SECONDS": "10",
        "DEPLOY_SUTRO_BLOCK": "sutro-deploy", "DEPLOY_S3_SECRET_BLOCK": "sutro-deploy-s3-secret",
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookups for credentials on a test box
        "PYTHONPATH": os.pathsep.join([str(REPO / "core"), str(REPO), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
    })
    workers: dict[str, Service] = {}
    with PrefectTestServer() as server, temporary_settings({PREFECT_API_URL: server.api_url}):
        try:
            async with PrefectClient(api=server.api_url) as client:
                await SutroCredentials(api_key=sutro_key, api_url=sutro_server.url).save("sutro-deploy")
                await Secret(value=s3_server.secret_key).save("sutro-deploy-s3-secret")
                await RemoteFileSystem(basepath=s3_bucket.uri("prefect-results"),
                                       settings=s3_server.storage_options).save("sutro-deploy-results")
                await client.create_work_pool(WorkPoolCreate(
                    name=pool, type="process", base_job_template=ProcessWorker.get_default_base_job_template()))
                flow = await Flow.afrom_source(str(FLOWS), "sutro_flow.py:embed_to_s3")
                deployment_id = await flow.adeploy("sutro-on-s3", work_pool_name=pool, build=False, push=False,
                                                   print_next_steps=False)
                await _automations(client, deployment_id)
                for name in WORKERS:
                    workers[name] = _worker(name, pool, server.api_url, env, tmp_path / f"{name}.log")
                run = await client.create_flow_run_from_deployment(deployment_id,
                                                                   parameters={"output": output, "s3": s3, "rows": ROWS})

                # Mid-run: the flow run runs in a worker's process and its Sutro job runs on sutro-local.
                async def running_job():
                    for w in workers.values():
                        assert w.running(), f"{w.name} exited:\n{w.log_tail()}"
                    jobs = await asyncio.to_thread(sutro_client.list_jobs)
                    return jobs[0] if jobs else None

                job = await _wait(running_job, 300, "the deployed flow run to submit its Sutro job")
                victim = await _wait(lambda: _runner_of(client, run.id, workers), 60, "the worker running the flow run")
                survivor = next(w for w in WORKERS if w != victim)
                workers[victim].kill()
                status_at_kill = await asyncio.to_thread(sutro_client.get_job_status, job.job_id)
                assert not status_at_kill.is_terminal, "the job ended before the worker was killed: nothing was tested"

                async def finished():
                    assert workers[survivor].running(), workers[survivor].log_tail()
                    fr = await client.read_flow_run(run.id)
                    return fr if fr.state and fr.state.is_final() and fr.state.name != "Crashed" else None

                final = await _wait(finished, 420, "the flow run to be rerun and finish", interval=1)
                history = [s.name for s in await client.read_flow_run_states(run.id)]
                assert final.state.is_completed(), f"{final.state}: {history}\n{workers[survivor].log_tail()}"
                result = await final.state.result()
        finally:
            for w in workers.values():
                w.stop()
            # this process's own Prefect events (block saves, the deployment) reach the server before it goes
            await asyncio.to_thread(drain_prefect_workers)

    assert s3_server.secret_key not in str(final.parameters), "the S3 secret is stored with the run"
    assert not [w.name for w in workers.values() if s3_server.secret_key in w.log_tail(10**8)], "secret logged"

    # The run crashed with its worker, was rescheduled, and the survivor ran it to completion.
    assert "Crashed" in history and history[-1] == "Completed", history
    assert final.run_count == 2, final.run_count
    assert _ran(final.name, workers[victim]) and _ran(final.name, workers[survivor])

    # Exactly one billed job, and the results on S3 are complete.
    jobs = sutro_client.list_jobs()
    assert [j.job_id for j in jobs] == [job.job_id] and jobs[0].status is JobStatus.SUCCEEDED, jobs
    manifest, seen = result["manifest"], result["seen"]
    assert manifest["uri"] == output and manifest["job_id"] == job.job_id and manifest["rows"] == ROWS, manifest
    df = pl.read_parquet(io.BytesIO(s3_bucket.read("prefect/embeddings.parquet")))
    assert df.height == ROWS and set(df["sutro_job_id"].to_list()) == {job.job_id}
    assert df["sutro_row_status"].to_list() == ["ok"] * ROWS
    assert seen == {"rows": ROWS, "job_ids": [job.job_id], "worker": survivor}, seen
    # Only the artifact and Prefect's persisted results: no stray objects from the killed run.
    assert [k for k in s3_bucket.keys() if not k.startswith("prefect-results/")] == ["prefect/embeddings.parquet"]
    assert s3_bucket.keys("prefect-results/"), "the flow's result was not persisted on S3"


def _ran(flow_run_name: str, worker: Service) -> bool:
    """Whether the worker's log says it started a process for this flow run (both workers may try to
    submit a run; the server lets one of them have it)."""
    return f"Flow run '{flow_run_name}' submitted to infrastructure" in worker.log_tail(200_000)


async def _runner_of(client, flow_run_id: uuid.UUID, workers: dict[str, Service]) -> str | None:
    """The name of the worker whose process tree holds the flow run's process (its infrastructure pid)."""
    run = await client.read_flow_run(flow_run_id)
    pid = int(str(run.infrastructure_pid or "0").rsplit(":", 1)[-1] or 0)
    for name, w in workers.items():
        if pid and pid in w.tree():
            return name
    return None
