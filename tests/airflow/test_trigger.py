"""SutroJobTrigger against a real sutro-local server: serialization, every outcome, transient errors, on_kill."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from sutro_core import AsyncSutroClient, BatchJobRequest, JobHandle, JobStatus, RetryPolicy, SutroClient

from airflow_provider_sutro.kill import GOES_ON, decide
from airflow_provider_sutro.triggers.sutro import SutroJobTrigger

LONG_ROW = "word " * 2000  # beyond all-minilm-l6-v2's context: the job fails on the server


def _submit(client: SutroClient, rows: list[str], model: str = "all-minilm-l6-v2", **kwargs: Any) -> str:
    return client.submit_job(
        BatchJobRequest.for_inference(rows, model=model, **kwargs), idempotency_key=None
    ).job_id


def _trigger(job_id: str, client: SutroClient | None = None, end_in: float = 60, cancel_on_timeout: bool = False,
             api_url: str | None = None, api_key: str | None = None, max_transient_errors: int = 10,
             **kwargs: Any) -> SutroJobTrigger:
    """A trigger as the operator builds it: a handle, and the key already resolved (no connection lookup)."""
    now = time.time()
    handle = JobHandle(job_id=job_id, api_url=api_url or client.api_url, url="", started_at=now,
                       deadline=now + end_in, cancel_on_timeout=cancel_on_timeout,
                       poll={"initial_interval": 0.2, "max_interval": 0.5, "max_transient_errors": max_transient_errors})
    return SutroJobTrigger(handle=handle.to_dict(), api_key=api_key or client.api_key, **kwargs)


async def _events(trigger: SutroJobTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


def test_serialize_round_trip() -> None:
    handle = JobHandle(job_id="job-1", api_url="http://127.0.0.1:8484/v1", url="u", started_at=1.0, deadline=2.0)
    trigger = SutroJobTrigger(handle=handle.to_dict(), api_key="sk-secret-value", cancel_on_kill=False)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_sutro.triggers.sutro.SutroJobTrigger"
    assert kwargs == {"handle": handle.to_dict(), "api_key": "sk-secret-value", "cancel_on_kill": False}
    assert "sk-secret-value" not in repr(trigger)
    # What the triggerer does: import the class path and rebuild from the kwargs (through Airflow's serde).
    from airflow.sdk.serde import deserialize, serialize

    rebuilt = SutroJobTrigger(**deserialize(serialize(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)


async def test_triggers_of_one_api_and_key_share_one_client(sutro_client: SutroClient) -> None:
    """1,000 deferred tasks in one triggerer: one connection pool per API and key, not one per trigger."""
    from sutro_core.shared_clients import _SHARED, shared_client

    async with shared_client(sutro_client.api_url, sutro_client.api_key) as a, \
            shared_client(sutro_client.api_url, sutro_client.api_key) as b, \
            shared_client(sutro_client.api_url, "other-key") as c:
        assert a is b and a is not c
    assert not _SHARED  # closed after the last user
    job_ids = [_submit(sutro_client, [f"row {i}"]) for i in range(3)]
    events = await asyncio.gather(*(_events(_trigger(j, sutro_client)) for j in job_ids))
    assert [e[0]["status"] for e in events] == ["success"] * 3 and not _SHARED


async def test_success_event(sutro_conn: str, sutro_client: SutroClient) -> None:
    job_id = _submit(sutro_client, ["hello", "world"])
    events = await _events(_trigger(job_id, sutro_client))
    assert len(events) == 1
    assert events[0]["status"] == "success"
    assert events[0]["job_id"] == job_id
    assert sutro_client.get_job_status(job_id) is JobStatus.SUCCEEDED


async def test_failed_job_event_carries_the_server_reason(sutro_conn: str, sutro_client: SutroClient) -> None:
    job_id = _submit(sutro_client, ["fine", LONG_ROW], truncate_rows=False)
    [event] = await _events(_trigger(job_id, sutro_client))
    assert event["status"] == "failed"
    server_reason = sutro_client.get_job(job_id).failure_reason
    assert server_reason and event["reason"] == server_reason


async def test_cancelled_job_event(sutro_conn: str, sutro_client: SutroClient) -> None:
    job_id = _submit(sutro_client, [f"row {i}" for i in range(40)], model="slow-embed")
    trigger_task = asyncio.ensure_future(_events(_trigger(job_id, sutro_client)))
    await asyncio.sleep(0.5)
    await asyncio.to_thread(sutro_client.cancel_job, job_id)
    [event] = await asyncio.wait_for(trigger_task, timeout=30)
    assert event["status"] == "cancelled"
    assert event["job_id"] == job_id


async def test_timeout_event_without_cancel_leaves_the_job_running(sutro_client: SutroClient) -> None:
    job_id = _submit(sutro_client, [f"row {i}" for i in range(40)], model="slow-embed")
    started = time.monotonic()
    [event] = await _events(_trigger(job_id, sutro_client, end_in=1.0))
    assert event["status"] == "timeout" and not event["cancelled"]
    assert time.monotonic() - started < 10
    assert not sutro_client.get_job_status(job_id).is_terminal  # the sensor's case: someone else's job
    sutro_client.cancel_job(job_id)


async def test_timeout_cancels_first_and_says_so(sutro_client: SutroClient) -> None:
    """The operator's trigger cancels at the deadline; the message must not claim the job keeps running."""
    job_id = _submit(sutro_client, [f"row {i}" for i in range(40)], model="slow-embed")
    [event] = await _events(_trigger(job_id, sutro_client, end_in=1.0, cancel_on_timeout=True))
    assert event["status"] == "timeout" and event["cancelled"] is True
    assert "was cancelled" in event["message"] and "keeps running" not in event["message"]
    assert sutro_client.get_job_status(job_id) in (JobStatus.CANCELLING, JobStatus.CANCELLED)


async def test_unknown_job_fails_fast_with_the_4xx(sutro_client: SutroClient) -> None:
    started = time.monotonic()
    [event] = await _events(_trigger("job-that-does-not-exist", sutro_client))
    assert event["status"] == "error"
    assert event["http_status"] == 404
    assert time.monotonic() - started < 5  # no retries on a 4xx


async def test_bad_api_key_fails_fast(sutro_api_url: str) -> None:
    [event] = await _events(_trigger("job-1", api_url=sutro_api_url, api_key="wrong"))
    assert event["status"] == "error"
    assert event["http_status"] in (401, 403)


class _FlakyTransport(httpx.AsyncBaseTransport):
    """Forwards to the real server but answers 503 to the first ``failures`` requests: an outage a real
    server cannot be asked to produce."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen = 0
        self._real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen += 1
        if self.seen <= self.failures:
            return httpx.Response(503, json={"detail": "service unavailable (injected)"})
        return await self._real.handle_async_request(request)


def _flaky_client(monkeypatch: pytest.MonkeyPatch, transport: _FlakyTransport) -> None:
    from contextlib import asynccontextmanager

    import airflow_provider_sutro.triggers.sutro as trigger_module

    @asynccontextmanager
    async def client(api_url: str, api_key: str):  # type: ignore[no-untyped-def]
        # One attempt per request, so each injected 503 is one failed poll against the trigger's budget.
        async with AsyncSutroClient(api_key=api_key, api_url=api_url, retry=RetryPolicy(max_retries=0),
                                    transport=transport) as flaky:
            yield flaky

    monkeypatch.setattr(trigger_module, "shared_client", client)


async def test_transient_errors_within_the_budget_are_tolerated(
    monkeypatch: pytest.MonkeyPatch, sutro_conn: str, sutro_client: SutroClient
) -> None:
    job_id = _submit(sutro_client, ["hello"])
    transport = _FlakyTransport(failures=3)
    _flaky_client(monkeypatch, transport)
    [event] = await _events(_trigger(job_id, sutro_client, max_transient_errors=5))
    assert event["status"] == "success"
    assert transport.seen > 3


async def test_transient_errors_beyond_the_budget_give_up(
    monkeypatch: pytest.MonkeyPatch, sutro_conn: str, sutro_client: SutroClient
) -> None:
    job_id = _submit(sutro_client, ["hello"])
    transport = _FlakyTransport(failures=1000)
    _flaky_client(monkeypatch, transport)
    [event] = await _events(_trigger(job_id, sutro_client, max_transient_errors=2))
    assert event["status"] == "error"
    assert event["http_status"] == 503
    assert transport.seen == 3  # the first failure plus a budget of two


async def test_on_kill_outside_a_triggerer_cancels_the_job(sutro_client: SutroClient) -> None:
    """No supervisor to ask for the task's state: the user's kill is honoured."""
    job_id = _submit(sutro_client, [f"row {i}" for i in range(40)], model="slow-embed")
    await _trigger(job_id, sutro_client).on_kill()
    assert sutro_client.get_job_status(job_id) in (JobStatus.CANCELLING, JobStatus.CANCELLED)


@pytest.mark.parametrize("state", sorted(GOES_ON, key=str))
def test_rule_keeps_the_job_of_a_cleared_or_running_task(state: str | None) -> None:
    assert decide(True, state).cancel is False


@pytest.mark.parametrize("state", ["failed", "success", "skipped", "upstream_failed", "removed", "<gone>"])
def test_rule_cancels_the_job_of_an_ended_task(state: str) -> None:
    assert decide(True, state).cancel is True


def test_rule_cancels_when_the_state_is_unknown() -> None:
    assert decide(False, None).cancel is True


class _Comms:
    """Stands in for the triggerer's supervisor comms: answers GetTaskStates with one state."""

    def __init__(self, state: str | None) -> None:
        self.state = state
        self.asked: list[Any] = []

    async def asend(self, msg: Any) -> Any:
        from airflow.sdk.execution_time.comms import TaskStatesResult

        self.asked.append(msg)
        return TaskStatesResult(task_states={"run-1": {"embed": self.state}})


@pytest.mark.parametrize(("state", "cancelled"), [(None, False), ("running", False), ("failed", True)])
async def test_on_kill_asks_the_task_state(
    monkeypatch: pytest.MonkeyPatch, sutro_client: SutroClient, state: str | None, cancelled: bool
) -> None:
    from types import SimpleNamespace

    from airflow.sdk.execution_time import task_runner

    comms = _Comms(state)
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    job_id = _submit(sutro_client, [f"row {i}" for i in range(40)], model="slow-embed")
    trigger = _trigger(job_id, sutro_client)
    trigger.task_instance = SimpleNamespace(dag_id="d", task_id="embed", run_id="run-1", map_index=-1)
    await trigger.on_kill()
    assert [m.task_ids for m in comms.asked] == [["embed"]]
    status = sutro_client.get_job_status(job_id)
    assert (status in (JobStatus.CANCELLING, JobStatus.CANCELLED)) is cancelled, status
    if not cancelled:
        sutro_client.cancel_job(job_id)


async def test_on_kill_respects_cancel_on_kill_false(sutro_conn: str, sutro_client: SutroClient) -> None:
    job_id = _submit(sutro_client, [f"row {i}" for i in range(40)], model="slow-embed")
    await _trigger(job_id, sutro_client, cancel_on_kill=False).on_kill()
    assert not sutro_client.get_job_status(job_id).is_terminal
    sutro_client.cancel_job(job_id)


async def test_cleanup_does_not_cancel(sutro_conn: str, sutro_client: SutroClient) -> None:
    """A trigger moved to another triggerer is cleaned up, not killed: the job must keep running."""
    job_id = _submit(sutro_client, [f"row {i}" for i in range(40)], model="slow-embed")
    trigger = _trigger(job_id, sutro_client)
    await trigger.cleanup()
    assert not sutro_client.get_job_status(job_id).is_terminal
    sutro_client.cancel_job(job_id)
