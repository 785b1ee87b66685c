"""SutroJobTrigger against a real sutro-local server: serialization, every outcome, transient errors, on_kill."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from sutro_core import AsyncSutroClient, BatchJobRequest, JobStatus, RetryPolicy, SutroClient

from airflow_provider_sutro.hooks.sutro import SutroHook
from airflow_provider_sutro.triggers.sutro import SutroJobTrigger

LONG_ROW = "word " * 2000  # beyond all-minilm-l6-v2's context: the job fails on the server


def _submit(client: SutroClient, rows: list[str], model: str = "all-minilm-l6-v2", **kwargs: Any) -> str:
    return client.submit_job(
        BatchJobRequest.for_inference(rows, model=model, **kwargs), idempotency_key=None
    ).job_id


def _trigger(job_id: str, end_in: float = 60, **kwargs: Any) -> SutroJobTrigger:
    kwargs.setdefault("poll_interval", 0.2)
    kwargs.setdefault("max_poll_interval", 0.5)
    return SutroJobTrigger(job_id=job_id, end_time=time.time() + end_in, **kwargs)


async def _events(trigger: SutroJobTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


def test_serialize_round_trip() -> None:
    trigger = SutroJobTrigger(
        job_id="job-1",
        end_time=1_900_000_000.5,
        sutro_conn_id="other",
        poll_interval=3,
        max_poll_interval=30,
        max_transient_errors=4,
        cancel_on_kill=False,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_sutro.triggers.sutro.SutroJobTrigger"
    assert kwargs == {
        "job_id": "job-1",
        "end_time": 1_900_000_000.5,
        "sutro_conn_id": "other",
        "poll_interval": 3.0,
        "max_poll_interval": 30.0,
        "max_transient_errors": 4,
        "cancel_on_kill": False,
    }
    # What the triggerer does: import the class path and rebuild from the kwargs (through Airflow's serde).
    from airflow.sdk.serde import deserialize, serialize

    rebuilt = SutroJobTrigger(**deserialize(serialize(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)


async def test_success_event(sutro_conn: str, sutro_client: SutroClient) -> None:
    job_id = _submit(sutro_client, ["hello", "world"])
    events = await _events(_trigger(job_id))
    assert len(events) == 1
    assert events[0]["status"] == "success"
    assert events[0]["job_id"] == job_id
    assert sutro_client.get_job_status(job_id) is JobStatus.SUCCEEDED


async def test_failed_job_event_carries_the_server_reason(sutro_conn: str, sutro_client: SutroClient) -> None:
    job_id = _submit(sutro_client, ["fine", LONG_ROW], truncate_rows=False)
    [event] = await _events(_trigger(job_id))
    assert event["status"] == "failed"
    server_reason = sutro_client.get_job(job_id).failure_reason
    assert server_reason and event["reason"] == server_reason


async def test_cancelled_job_event(sutro_conn: str, sutro_client: SutroClient) -> None:
    job_id = _submit(sutro_client, [f"row {i}" for i in range(40)], model="slow-embed")
    trigger_task = asyncio.ensure_future(_events(_trigger(job_id)))
    await asyncio.sleep(0.5)
    await asyncio.to_thread(sutro_client.cancel_job, job_id)
    [event] = await asyncio.wait_for(trigger_task, timeout=30)
    assert event["status"] == "cancelled"
    assert event["job_id"] == job_id


async def test_timeout_event_leaves_the_decision_to_the_operator(
    sutro_conn: str, sutro_client: SutroClient
) -> None:
    job_id = _submit(sutro_client, [f"row {i}" for i in range(40)], model="slow-embed")
    started = time.monotonic()
    [event] = await _events(_trigger(job_id, end_in=1.0))
    assert event["status"] == "timeout"
    assert time.monotonic() - started < 10
    assert not sutro_client.get_job_status(
        job_id
    ).is_terminal  # the operator cancels on timeout, not the trigger
    sutro_client.cancel_job(job_id)


async def test_unknown_job_fails_fast_with_the_4xx(sutro_conn: str) -> None:
    started = time.monotonic()
    [event] = await _events(_trigger("job-that-does-not-exist"))
    assert event["status"] == "error"
    assert event["http_status"] == 404
    assert time.monotonic() - started < 5  # no retries on a 4xx


async def test_bad_api_key_fails_fast(monkeypatch: pytest.MonkeyPatch, sutro_api_url: str) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SUTRO_DEFAULT",
        f'{{"conn_type": "sutro", "host": "{sutro_api_url}", "password": "wrong"}}',
    )
    [event] = await _events(_trigger("job-1"))
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


def _flaky_hook(monkeypatch: pytest.MonkeyPatch, transport: _FlakyTransport) -> None:
    async def get_async_conn(self: SutroHook, **options: Any) -> AsyncSutroClient:
        conn = await self.aget_connection(self.sutro_conn_id)
        kwargs = self._client_kwargs(conn)
        # One attempt per request, so each injected 503 is one failed poll against the trigger's budget.
        return AsyncSutroClient(**kwargs, retry=RetryPolicy(max_retries=0), transport=transport, **options)

    monkeypatch.setattr(SutroHook, "get_async_conn", get_async_conn)


async def test_transient_errors_within_the_budget_are_tolerated(
    monkeypatch: pytest.MonkeyPatch, sutro_conn: str, sutro_client: SutroClient
) -> None:
    job_id = _submit(sutro_client, ["hello"])
    transport = _FlakyTransport(failures=3)
    _flaky_hook(monkeypatch, transport)
    [event] = await _events(_trigger(job_id, max_transient_errors=5))
    assert event["status"] == "success"
    assert transport.seen > 3


async def test_transient_errors_beyond_the_budget_give_up(
    monkeypatch: pytest.MonkeyPatch, sutro_conn: str, sutro_client: SutroClient
) -> None:
    job_id = _submit(sutro_client, ["hello"])
    transport = _FlakyTransport(failures=1000)
    _flaky_hook(monkeypatch, transport)
    [event] = await _events(_trigger(job_id, max_transient_errors=2))
    assert event["status"] == "error"
    assert event["http_status"] == 503
    assert transport.seen == 3  # the first failure plus a budget of two


async def test_on_kill_cancels_the_job(sutro_conn: str, sutro_client: SutroClient) -> None:
    job_id = _submit(sutro_client, [f"row {i}" for i in range(40)], model="slow-embed")
    await _trigger(job_id).on_kill()
    assert sutro_client.get_job_status(job_id) in (JobStatus.CANCELLING, JobStatus.CANCELLED)


async def test_on_kill_respects_cancel_on_kill_false(sutro_conn: str, sutro_client: SutroClient) -> None:
    job_id = _submit(sutro_client, [f"row {i}" for i in range(40)], model="slow-embed")
    await _trigger(job_id, cancel_on_kill=False).on_kill()
    assert not sutro_client.get_job_status(job_id).is_terminal
    sutro_client.cancel_job(job_id)


async def test_cleanup_does_not_cancel(sutro_conn: str, sutro_client: SutroClient) -> None:
    """A trigger moved to another triggerer is cleaned up, not killed: the job must keep running."""
    job_id = _submit(sutro_client, [f"row {i}" for i in range(40)], model="slow-embed")
    trigger = _trigger(job_id)
    await trigger.cleanup()
    assert not sutro_client.get_job_status(job_id).is_terminal
    sutro_client.cancel_job(job_id)
