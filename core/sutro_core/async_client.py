"""``AsyncSutroClient``: the asyncio client (httpx.AsyncClient transport).

Same methods and arguments as ``SutroClient``, as coroutines (``stages`` as an async iterator); it drives
the same operations, so retry, polling, lifecycle and results behaviour are identical. This is what Airflow
triggers and async Prefect tasks use: thousands of waits share one event loop.

Example:
    >>> async with AsyncSutroClient() as client:
    ...     job = await client.wait(handle)
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from . import lifecycle, protocol
from .client import _past, _timeout
from .client_base import ClientBase, shared_ssl_context
from .errors import InputValidationError
from .lifecycle import DEFAULT_DOWNLOAD_TIMEOUT_S
from .models import Job, JobStatus, ResultsManifest
from .operations import Blocking, Lines, Op, Sleep, Started
from .protocol import Call
from .retrying import DeadlineReached, PollPolicy, RetryPolicy
from .sdk_facade import AsyncSdkFacade
from .spec import JobHandle, JobOutcome, JobSpec
from .status_batch import DEFAULT_WINDOW_S, StatusBatch

T = TypeVar("T")


@dataclass(frozen=True)
class _Finished(Generic[T]):
    """The last item ``_drive`` yields: the operation's value (an async generator cannot return one)."""

    value: T

# Connections per client (and requests in flight). Polls are tiny; 8 connections serve
# thousands of waits. See ``_slots`` for why this is not httpx's default of 100.
MAX_CONNECTIONS = 8


#: Ticks that pauses with slack end on: powers of two from 1/64 s to 1 s (they nest: a 1 s tick is also a
#: 1/64 s one, so waits with different pauses still share wake-ups).
MIN_TICK_S, MAX_TICK_S = 2.0**-6, 1.0


class Ticks:
    """Pauses with slack, ended together on shared ticks of the loop clock: one timer per tick, not per pause.

    A pause of ``seconds`` with ``slack`` ends on the first tick after ``seconds``, the tick being the largest
    power of two <= ``slack`` (at most ``MAX_TICK_S``): so at most ``slack`` late, and every pause ending
    within one tick is woken by one timer callback, in one pass of the loop. 1,000 waits polling every ~30 s
    (slack 0.6 s, tick 0.5 s) wake the loop ~2 times a second instead of ~33, and the loop's timer heap holds
    ~60 timers instead of 1,000. On this project's VMs each wake-up of an idle loop (epoll, the kernel's
    timer) cost 0.1-0.14 ms of CPU, more than a batched poll's own work (benchmarks/triggers.py).

    One per client and event loop. A cancelled pause's future stays in its tick until the tick fires (its
    pause is over by then anyway).

    Example:
        >>> ticks = Ticks(asyncio.get_running_loop())   # doctest: +SKIP
        >>> await ticks.sleep(30.0, 0.6)   # wakes 30-30.5 s from now, with every pause ending on that tick  # doctest: +SKIP
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._due: dict[float, list[asyncio.Future[None]]] = {}  # tick (loop time) -> the pauses ending on it

    async def sleep(self, seconds: float, slack: float) -> None:
        """Sleep ``seconds``, then on to the next tick, at most ``slack`` (>= ``MIN_TICK_S``) later."""
        tick = min(MAX_TICK_S, 2.0 ** (math.frexp(slack)[1] - 1))  # the largest power of two <= slack
        when = math.ceil((self.loop.time() + max(0.0, seconds)) / tick) * tick  # exact: tick is a power of two
        future = self.loop.create_future()
        due = self._due.get(when)
        if due is None:
            due = self._due[when] = []
            self.loop.call_at(when, self._fire, when)
        due.append(future)
        await future

    def _fire(self, when: float) -> None:
        for future in self._due.pop(when, ()):
            if not future.done():  # a cancelled pause is done already
                future.set_result(None)


class AsyncSutroClient(AsyncSdkFacade, ClientBase):
    """Asynchronous Sutro client; see ``SutroClient`` for every method's documentation.

    Many concurrent waits on one client share their status polls: when the client is busy, one
    ``list-jobs`` read answers every poll that comes due shortly after it (a status at most a fifth of the
    wait's last pause old, and never more than ``status_batch_window`` seconds; see ``status_batch``).
    ``status_batch_window=0`` sends every poll on its own. The waits' pauses between polls end on shared
    ticks of the loop clock (``Ticks``: at most ``operations.WAKE_SLACK`` of the pause late, never past the
    wait's deadline), so many waits wake the loop once together.

    Example:
        >>> client = AsyncSutroClient(api_key="...", api_url="http://127.0.0.1:8484")
        >>> status = await client.get_job_status(job_id)
    """

    def __init__(
        self,
        api_key: str | None = None,
        api_url: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = MAX_CONNECTIONS,
        status_batch_window: float = DEFAULT_WINDOW_S,
    ) -> None:
        super().__init__(api_key, api_url, timeout=timeout, retry=retry, poll=poll)
        if isinstance(status_batch_window, bool) or not isinstance(status_batch_window, (int, float)) \
                or not status_batch_window >= 0:
            raise InputValidationError("status_batch_window", f"must be seconds >= 0 (0 turns batching off), "
                                       f"got {status_batch_window!r}")
        self.status_batch_window = float(status_batch_window)
        self._status_batch: StatusBatch | None = None  # made on first use, in the loop that uses the client
        self._ticks: Ticks | None = None  # likewise
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(base_url=self.api_url + "/", headers=self._headers(), timeout=timeout,
                                       transport=transport, limits=limits, verify=shared_ssl_context())
        # httpcore's pool rescans every queued request and every connection whenever a request starts
        # or ends (quadratic): 1,000 waits polling through one client cost ~3 ms CPU a poll and hit
        # PoolTimeouts (benchmarks/waiting.py). Queueing here instead (O(1) wakeups) keeps the pool's
        # own queue no longer than its connections.
        self._slots = asyncio.Semaphore(max_connections)

    async def _drive(self, op: Op[T], announce: Callable[[JobHandle], Any] | None = None) -> AsyncGenerator[Any, None]:
        """Perform the operation's effects (see ``SutroClient._drive``): yields the handle (or
        ``announce(handle)``) at ``Started``, throwing back in what the caller throws in there, and last
        ``_Finished(value)``. A cancelled task's ``CancelledError`` goes to the operation too (a step's
        interruption cancels its job); closed early, the operation's clean-up runs now."""
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    effect = op.throw(error) if error is not None else op.send(value)
                except StopIteration as stop:
                    yield _Finished(stop.value)
                    return
                value, error = None, None
                try:
                    if isinstance(effect, Started):
                        yield effect.handle if announce is None else announce(effect.handle)
                    else:
                        value = await self._perform(effect)
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    error = exc
        finally:
            op.close()

    async def _run(self, op: Op[T], on_started: Callable[[JobHandle], None] | None = None) -> T:
        """``_drive`` to the end; ``on_started(handle)`` at ``Started``, its exceptions thrown into the op."""
        steps = self._drive(op)
        try:
            item = await anext(steps)
            while not isinstance(item, _Finished):
                try:
                    if on_started is not None:
                        on_started(item)
                except BaseException as exc:
                    item = await steps.athrow(exc)
                else:
                    item = await anext(steps)
            return item.value
        finally:
            await steps.aclose()

    async def _perform(self, effect: Any) -> Any:
        if isinstance(effect, Sleep):
            if effect.slack >= MIN_TICK_S:
                await self._ticks_of_loop().sleep(effect.seconds, effect.slack)
            else:
                await asyncio.sleep(max(0.0, effect.seconds))
            return None
        if isinstance(effect, Blocking):
            return await asyncio.to_thread(effect.fn)
        if isinstance(effect, Lines):
            return await self._stream_lines(effect)
        call: Call[Any] = effect
        if call.batch_job_id is not None and self.status_batch_window > 0:
            answer = await self._batch().read(call)
            if answer is not None:
                return answer
        return await self._request(call)

    def _ticks_of_loop(self) -> Ticks:
        """This client's shared wake-up ticks, bound to the running loop (a new loop gets new ones)."""
        ticks = self._ticks
        if ticks is None or ticks.loop is not asyncio.get_running_loop():
            ticks = self._ticks = Ticks(asyncio.get_running_loop())
        return ticks

    def _batch(self) -> StatusBatch:
        """This client's status batch, bound to the running loop (a new loop gets a new one)."""
        batch = self._status_batch
        if batch is None or batch.loop is not asyncio.get_running_loop():
            batch = self._status_batch = StatusBatch(self._list_within_timeout, window=self.status_batch_window,
                                                     timeout=self.timeout)
        return batch

    async def _list_within_timeout(self, call: Call[Any]) -> httpx.Response:
        """The batch's ``list-jobs`` read: the client's pool and slots, bounded as a whole by ``timeout``."""
        try:
            return await self._request(dataclasses.replace(call, deadline=time.time() + self.timeout))
        except DeadlineReached as exc:  # to each poll, a timed-out read (transient: it retries and counts it)
            raise httpx.ReadTimeout(f"list-jobs: no answer within {self.timeout:.0f} s") from exc

    async def _request(self, call: Call[Any]) -> Any:
        left = call.seconds_left()
        if left is None:
            async with self._slots:
                return await self._send(call)
        try:
            # One bound for the whole request: the wait for a slot, connect, headers and every body byte.
            async with asyncio.timeout(left):
                async with self._slots:
                    return await self._send(call)
        except TimeoutError as exc:
            raise DeadlineReached(f"{call.method} {call.path}: past the deadline") from exc
        except httpx.TimeoutException as exc:
            if _past(call):  # httpx's own timeout, set to what was left, fired first
                raise DeadlineReached(f"{call.method} {call.path}: past the deadline") from exc
            raise

    async def _send(self, call: Call[Any]) -> Any:
        if call.stream_to is None:
            return await self._http.request(call.method, call.path, params=call.params, json=call.json,
                                            timeout=_timeout(call, self.timeout))
        async with self._http.stream(call.method, call.path, params=call.params, json=call.json,
                                     timeout=_timeout(call, self.timeout)) as response:
            if not response.is_success:
                await response.aread()
                return response
            with open(call.stream_to, "wb") as fh:
                async for chunk in response.aiter_bytes():  # no re-chunking copy (see client.py)
                    fh.write(chunk)
            return response

    async def _stream_lines(self, effect: Lines) -> None:
        call = effect.call
        async with self._http.stream(call.method, call.path, timeout=httpx.Timeout(60.0, connect=10.0)) as response:
            if not response.is_success:
                await response.aread()
                raise protocol.error_from_response(response)
            async for line in response.aiter_lines():
                if line.strip():
                    effect.on_line(json.loads(line))

    async def aclose(self) -> None:
        """Close the connection pool (and end a shared status read in flight)."""
        if self._status_batch is not None:
            self._status_batch.close()
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncSutroClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- the job lifecycle (documented on ``SutroClient``) ---------------------------------------------

    async def start(self, spec: JobSpec, *, scope: Sequence[Any] | None = None,
                    idempotency_key: str | None = None) -> JobHandle:
        """See ``SutroClient.start``."""
        return await self._run(lifecycle.start_op(self, spec, scope, idempotency_key))

    async def wait(self, handle: JobHandle | dict[str, Any], *,
                   on_status: Callable[[JobStatus], None] | None = None) -> Job:
        """See ``SutroClient.wait``."""
        return await self._run(lifecycle.wait_op(self, handle, on_status))

    async def finish(self, handle: JobHandle | dict[str, Any], *, carry: Any = None, destination: Any = None,
                     storage_options: dict[str, Any] | None = None,
                     timeout: float | None = DEFAULT_DOWNLOAD_TIMEOUT_S, spec: JobSpec | None = None,
                     defer_repairs: bool = False) -> ResultsManifest:
        """See ``SutroClient.finish``."""
        carry = spec.carry if carry is None and spec is not None else carry
        return await self._run(lifecycle.finish_op(self, handle, carry, destination, storage_options, timeout, spec,
                                                   defer_repairs))

    async def cancel(self, handle: JobHandle | dict[str, Any] | str, *, reason: str = "it was asked to") -> bool:
        """See ``SutroClient.cancel``."""
        return await self._run(lifecycle.cancel_op(self, handle, reason))

    async def run(self, spec: JobSpec, *, scope: Sequence[Any] | None = None, idempotency_key: str | None = None,
                  on_handle: Callable[[JobHandle], None] | None = None,
                  on_status: Callable[[JobStatus], None] | None = None, destination: Any = None,
                  storage_options: dict[str, Any] | None = None) -> JobOutcome:
        """See ``SutroClient.run``; a cancelled task is an interruption (the job is cancelled).

        Example:
            >>> outcome = await client.run(spec, scope=("prefect", flow_run_id, "score"), on_handle=record)
        """
        return await self._run(lifecycle.step_op(self, spec, scope, idempotency_key, on_status, destination, storage_options),
                               on_started=on_handle)

    async def stages(self, spec: JobSpec, *, scope: Sequence[Any] | None = None, idempotency_key: str | None = None,
                     on_status: Callable[[JobStatus], None] | None = None, destination: Any = None,
                     storage_options: dict[str, Any] | None = None,
                     announce: Callable[[JobHandle], Any] | None = None) -> AsyncGenerator[Any, None]:
        """``SutroClient.stages`` as an async iterator: it yields the handle once the job is started (or
        ``announce(handle)``), then the ``JobOutcome``. What is thrown in at the first yield is handled as
        ``run``'s ``on_handle`` errors are (an interruption cancels the job); closed early, it cancels nothing.

        Example:
            >>> async for step in client.stages(spec, scope=scope):
            ...     if isinstance(step, JobHandle): record(step)
            ...     else: outcome = step
        """
        steps = self._drive(lifecycle.step_op(self, spec, scope, idempotency_key, on_status, destination, storage_options),
                            announce)
        try:
            item = await anext(steps)
            while not isinstance(item, _Finished):
                try:
                    yield item
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    item = await steps.athrow(exc)
                else:
                    item = await anext(steps)
            yield item.value
        finally:
            await steps.aclose()
