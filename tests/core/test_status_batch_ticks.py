"""Waits' pauses end on shared ticks (``async_client.Ticks``, issue 17 goal 1): many waits on one client wake
the event loop together instead of one timer each, and no wait loses its poll policy or its deadline.

The tick arithmetic and timer counts on a bare loop; the waits themselves against the real sutro-local.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sutro_core import AsyncSutroClient, JobCancelledError, JobHandle, JobTimeoutError, PollPolicy, RetryPolicy
from sutro_core import operations as ops
from sutro_core.async_client import MAX_TICK_S, MIN_TICK_S, Ticks
from sutro_core.operations import WAKE_SLACK, Sleep


class TimedTicks(Ticks):
    """Ticks that record each pause's start, nominal end, slack, scheduled tick and actual wake-up
    (loop time), and every timer they set."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.pauses: list[tuple[float, float, float, float]] = []  # (start, seconds, slack, woke)
        self.timers: list[float] = []

    async def sleep(self, seconds: float, slack: float) -> None:
        start = self.loop.time()
        await super().sleep(seconds, slack)
        self.pauses.append((start, seconds, slack, self.loop.time()))

    def _fire(self, when: float) -> None:
        self.timers.append(when)
        super()._fire(when)


async def test_pauses_ending_within_one_tick_share_one_timer_and_none_ends_early():
    ticks = TimedTicks(asyncio.get_running_loop())
    # 20 pauses whose ends lie within 2 ms, with a 0.25 s slack (a 0.125 s tick): at most 2 ticks.
    await asyncio.gather(*(ticks.sleep(0.3 + i * 0.0001, 0.25) for i in range(20)))
    assert len(ticks.pauses) == 20
    assert 1 <= len(ticks.timers) <= 2, ticks.timers
    for start, seconds, _, woke in ticks.pauses:
        assert woke >= start + seconds - 1e-6  # never before the pause says
    for when in ticks.timers:  # every timer sits on the 0.125 s grid
        assert (when / 0.125).is_integer()


async def test_a_pause_ends_at_most_its_slack_late():
    loop = asyncio.get_running_loop()
    ticks = Ticks(loop)
    scheduled: list[tuple[float, float, float]] = []  # (start, when, slack)
    call_at = loop.call_at

    def recording(when, callback, *args, **kwargs):  # the tick's timer, as scheduled (not as run: load)
        if callback == ticks._fire:
            scheduled.append((start, when, slack))
        return call_at(when, callback, *args, **kwargs)

    loop.call_at = recording  # type: ignore[method-assign]
    try:
        for seconds, slack in [(0.05, MIN_TICK_S), (0.05, 0.02), (0.1, 0.3), (0.02, 5.0)]:
            start = loop.time()
            await ticks.sleep(seconds, slack)
            assert scheduled and scheduled[-1][0] == start
            _, when, _ = scheduled[-1]
            assert start + seconds <= when <= start + seconds + min(slack, MAX_TICK_S), (seconds, slack, when - start)
    finally:
        del loop.call_at


async def test_a_cancelled_pause_leaves_the_others_of_its_tick():
    ticks = TimedTicks(asyncio.get_running_loop())
    tasks = [asyncio.ensure_future(ticks.sleep(0.2, 0.25)) for _ in range(5)]
    await asyncio.sleep(0.05)
    tasks[2].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 2] == [None] * 4
    assert len(ticks.pauses) == 4


def _answer(job_id: str, status: str) -> httpx.Response:
    return httpx.Response(200, json={"job_status": {job_id: status}},
                          request=httpx.Request("GET", f"http://sutro.test/job-status/{job_id}"))


def test_a_waits_pause_has_slack_unless_it_ends_at_the_deadline():
    every_second = PollPolicy(initial_interval=1.0, max_interval=1.0, factor=1.0)
    op = ops.poll_until_done(RetryPolicy(), every_second, "job-1", timeout=None, deadline=time.time() + 100)
    assert next(op).batch_job_id == "job-1"
    pause = op.send(_answer("job-1", "RUNNING"))
    assert isinstance(pause, Sleep) and 0.8 <= pause.seconds <= 1.2
    assert pause.slack == pytest.approx(WAKE_SLACK * pause.seconds)
    op.close()

    # The deadline is nearer than the next poll: the pause ends exactly at it, with no slack past it.
    op = ops.poll_until_done(RetryPolicy(), every_second, "job-2", timeout=None, deadline=time.time() + 0.5)
    next(op)
    pause = op.send(_answer("job-2", "RUNNING"))
    assert isinstance(pause, Sleep) and pause.seconds <= 0.5 and pause.slack == 0.0
    op.close()


# ---- against the real sutro-local -----------------------------------------------------------------------

ONE_S = {"initial_interval": 1.0, "max_interval": 1.0, "factor": 1.0, "max_transient_errors": 10}


def _held_jobs(sutro_client, n: int) -> list[str]:
    return [sutro_client.infer([f"row {i} {k}" for k in range(200)], model="slow-embed", stay_attached=False)
            for i in range(n)]  # fmt: skip


def _handle(url: str, job_id: str, deadline: float | None) -> JobHandle:
    return JobHandle(job_id=job_id, api_url=url, url=f"{url}/jobs/{job_id}", started_at=time.time(),
                     deadline=deadline, poll=ONE_S)


async def test_many_waits_share_ticks_and_each_ends_with_its_job(sutro_server, sutro_client, sutro_key):
    ids = _held_jobs(sutro_client, 12)
    async with AsyncSutroClient(api_key=sutro_key, api_url=sutro_server.url) as client:
        ticks = client._ticks = TimedTicks(asyncio.get_running_loop())

        async def outcome(job_id: str) -> str:
            try:
                await client.wait(_handle(sutro_server.url, job_id, time.time() + 120))
            except JobCancelledError:
                return "CANCELLED"
            return "SUCCEEDED"

        async def cancel_later() -> None:
            await asyncio.sleep(3.5)  # three rounds of 1 s pauses first
            for job_id in ids:
                await client.cancel_job(job_id)

        outcomes, _ = await asyncio.gather(asyncio.gather(*(outcome(j) for j in ids)), cancel_later())
    assert outcomes == ["CANCELLED"] * len(ids)
    assert len(ticks.pauses) >= 2 * len(ids)  # every wait paused on the ticks, several times
    for start, seconds, slack, woke in ticks.pauses:
        assert slack == pytest.approx(WAKE_SLACK * seconds) and woke >= start + seconds - 1e-6
    assert len(ticks.timers) < len(ticks.pauses)  # pauses shared timers


async def test_a_wait_on_shared_ticks_still_ends_at_its_own_deadline(sutro_server, sutro_client, sutro_key):
    near, far = _held_jobs(sutro_client, 2)
    async with AsyncSutroClient(api_key=sutro_key, api_url=sutro_server.url) as client:
        client._ticks = TimedTicks(asyncio.get_running_loop())
        deadline = time.time() + 2.5
        far_wait = asyncio.ensure_future(client.wait(_handle(sutro_server.url, far, time.time() + 120)))
        with pytest.raises(JobTimeoutError) as info:
            await client.wait(_handle(sutro_server.url, near, deadline))
        assert time.time() >= deadline - 0.05  # not before its deadline (the last pause had no slack past it)
        assert info.value.cancelled  # the lifecycle wait cancelled the job at the deadline
        assert not far_wait.done()  # the other wait on the same ticks goes on
        await client.cancel_job(far)
        with pytest.raises(JobCancelledError):
            await far_wait
