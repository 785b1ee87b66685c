"""``AsyncSutroClient``: the asyncio client (httpx.AsyncClient transport).

Same methods and arguments as ``SutroClient``, as coroutines; it drives the same operations, so
retry, polling and results behaviour are identical. This is what Airflow triggers and async
Prefect tasks use: thousands of waits share one event loop.

Example:
    >>> async with AsyncSutroClient() as client:
    ...     job = await client.await_job_completion(job_id, obtain_results=False)
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx

from . import lifecycle, operations as ops, protocol
from ._base import ClientBase, shared_ssl_context
from .client import _past, _timeout
from . import compat, tracing
from .models import CancelResult, FunctionResult, Job, JobStatus, Quota, ResultsManifest, Submission
from .operations import Blocking, Lines, Op, Sleep
from .protocol import Call
from .lifecycle import DEFAULT_DOWNLOAD_TIMEOUT_S, JobHandle, JobOutcome, JobSpec
from .request import BatchJobRequest
from .retrying import DeadlineReached, PollPolicy, RetryPolicy
from .status_batch import DEFAULT_WINDOW_S, StatusBatch

T = TypeVar("T")

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


class AsyncSutroClient(ClientBase):
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
            from .errors import InputValidationError

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

    async def _run(self, op: Op[T]) -> T:
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    effect = op.throw(error) if error is not None else op.send(value)
                except StopIteration as stop:
                    return stop.value
                value, error = None, None
                try:
                    value = await self._perform(effect)
                except Exception as exc:  # handed to the operation, which decides (retry, clean up, raise)
                    error = exc
        finally:
            op.close()  # a cancelled task still runs the operation's clean-up (see SutroClient._run)

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

    async def infer(
        self,
        data: Any,
        model: str | Sequence[str] = "gpt-oss-20b",
        column: str | Sequence[str] | None = None,
        output_column: str = "inference_result",
        job_priority: int = 0,
        output_schema: Any = None,
        system_prompt: str | None = None,
        dry_run: bool = False,
        stay_attached: bool | None = None,
        truncate_rows: bool = True,
        *,
        sampling_params: dict[str, Any] | None = None,
        random_seed_per_input: bool = False,
        name: str | Sequence[str] | None = None,
        description: str | Sequence[str] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """See ``SutroClient.infer``."""
        return await self._run(self._infer_op(
            data, model, column, output_column, job_priority, output_schema, system_prompt, sampling_params,
            random_seed_per_input, dry_run, stay_attached, truncate_rows, name, description, idempotency_key,
        ))  # fmt: skip

    async def submit_job(
        self,
        request: BatchJobRequest,
        idempotency_key: str | None = None,
        *,
        reattach: bool = True,
        max_cost_usd: float | None = None,
        estimate_cost: bool = False,
    ) -> Submission:
        """See ``SutroClient.submit_job``."""
        return await self._run(self._submit_op(request, idempotency_key, reattach, max_cost_usd, estimate_cost))

    async def find_job(self, idempotency_key: str) -> Job | None:
        """See ``SutroClient.find_job``."""
        return await self._run(ops.find_job(self.retry, idempotency_key))

    async def attach(self, job_id: str, *, show_progress: bool | None = None) -> Job:
        """See ``SutroClient.attach``."""
        if show_progress is not False:
            compat.announce_if_finished(await self.get_job(job_id))
        return await self._run(self._attach_op(job_id, show_progress))

    async def await_job_completion(
        self,
        job_id: str,
        timeout: float | None = 7200,
        obtain_results: bool = True,
        *,
        deadline: float | datetime | None = None,
        on_status: Callable[[JobStatus], None] | None = None,
        show_progress: bool = True,
        **results_kwargs: Any,
    ) -> Any:
        """See ``SutroClient.await_job_completion``."""
        if on_status is None and show_progress:
            on_status = compat.status_printer(job_id)
        return await self._run(self._wait_op(job_id, timeout, deadline, on_status, obtain_results, results_kwargs))

    async def get_job(self, job_id: str) -> Job:
        """See ``SutroClient.get_job``."""
        return await self._run(ops.get_job(self.retry, job_id))

    async def get_job_status(self, job_id: str) -> JobStatus:
        """See ``SutroClient.get_job_status``."""
        return await self._run(ops.send(self.retry, protocol.get_job_status_call(job_id)))

    async def list_jobs(self) -> list[Job]:
        """See ``SutroClient.list_jobs``."""
        return await self._run(ops.send(self.retry, protocol.list_jobs_call()))

    async def cancel_job(self, job_id: str) -> CancelResult:
        """See ``SutroClient.cancel_job``."""
        return await self._run(ops.send(self.retry, compat.cancel_job_call(job_id)))

    async def get_quotas(self) -> list[Quota]:
        """See ``SutroClient.get_quotas``."""
        return await self._run(ops.send(self.retry, protocol.get_quotas_call()))

    async def check_auth(self) -> dict[str, Any]:
        """See ``SutroClient.check_auth``."""
        return await self._run(ops.send(self.retry, protocol.check_auth_call()))

    async def estimate_cost(self, request: BatchJobRequest) -> float:
        """See ``SutroClient.estimate_cost``."""
        return await self._run(ops.estimate_cost_op(self.retry, self.poll, request))

    async def check_cost(self, request: BatchJobRequest, max_cost_usd: float) -> float:
        """See ``SutroClient.check_cost``."""
        return await self._run(self._check_cost_op(request, max_cost_usd))

    async def get_job_results(
        self,
        job_id: str,
        include_inputs: bool = False,
        include_cumulative_logprobs: bool = False,
        with_original_df: Any = None,
        output_column: str = "inference_result",
        unpack_json: bool = True,
        unwrap_reasoning: bool = False,
        *,
        disable_cache: bool = False,  # accepted for SDK code; this client keeps no local results cache
    ) -> Any:
        """See ``SutroClient.get_job_results``."""
        return await self._run(self._results_op(job_id, include_inputs, include_cumulative_logprobs,
                                                with_original_df, output_column, unpack_json, unwrap_reasoning))

    async def download_results(
        self,
        job_id: str,
        destination: Any,
        format: str = "parquet",
        include_inputs: bool = False,
        include_cumulative_logprobs: bool = False,
        storage_options: dict[str, Any] | None = None,
        timeout: float | None = DEFAULT_DOWNLOAD_TIMEOUT_S,
    ) -> ResultsManifest:
        """See ``SutroClient.download_results``."""
        return await self._run(self._download_op(job_id, destination, format, include_inputs,
                                                 include_cumulative_logprobs, storage_options, timeout))

    # ---- the job lifecycle: start / wait / finish / cancel, and run (all four) --------------------

    async def start(self, spec: JobSpec, *, scope: Sequence[Any] | None = None,
              idempotency_key: str | None = None) -> JobHandle:
        """Start the step's job: reattach to the live job of an earlier try (same scope and inputs), else
        cost-gate and submit it once, close the same-key race, and cancel a live job of the same scope
        whose inputs changed. Record the returned handle before waiting.

        Example:
            >>> handle = await client.start(spec, scope=("airflow", dag_id, task_id, run_id, map_index))
        """
        return await self._run(self._start_op(spec, scope, idempotency_key))

    async def wait(self, handle: JobHandle | dict[str, Any], *,
             on_status: Callable[[JobStatus], None] | None = None) -> Job:
        """Wait until the job SUCCEEDED, within the handle's deadline (every request is bounded by what is
        left). At the deadline the job is cancelled (unless the spec opted out) and ``JobTimeoutError``
        raised; ``JobFailedError`` / ``JobCancelledError`` when it ends otherwise.

        Example:
            >>> job = await client.wait(handle)
        """
        return await self._run(self._lifecycle_wait_op(handle, on_status))

    async def finish(self, handle: JobHandle | dict[str, Any], *, carry: Any = None, destination: Any = None,
               storage_options: dict[str, Any] | None = None,
               timeout: float | None = DEFAULT_DOWNLOAD_TIMEOUT_S) -> ResultsManifest:
        """Write the job's results as the one artifact shape (carried input columns, unpacked outputs,
        ``sutro.*`` footer) to ``destination`` or the spec's ``output_uri``, streamed and atomic.

        Example:
            >>> manifest = await client.finish(handle, carry=spec.carry)
        """
        return await self._run(self._finish_op(handle, carry, destination, storage_options, timeout))

    async def cancel(self, handle: JobHandle | dict[str, Any] | str, *, reason: str = "it was asked to") -> bool:
        """Cancel the job unless it is terminal; True when the service accepted. Bounded (20 s); never
        raises a ``SutroError`` (a warning says the job may still run).

        Example:
            >>> await client.cancel(handle, reason="the task was killed")
        """
        return await self._run(self._cancel_op(handle, reason))

    async def run(self, spec: JobSpec, *, scope: Sequence[Any] | None = None, idempotency_key: str | None = None,
            on_handle: Callable[[JobHandle], None] | None = None,
            on_status: Callable[[JobStatus], None] | None = None, destination: Any = None,
            storage_options: dict[str, Any] | None = None) -> JobOutcome:
        """The whole step: ``start``, ``on_handle(handle)`` (record it durably), ``wait``, ``finish``.

        An interruption (task cancellation, KeyboardInterrupt, an orchestrator's termination) cancels the job
        unless ``spec.cancel_on_interrupt`` is False, then re-raises; ordinary errors never cancel.

        Example:
            >>> outcome = await client.run(spec, scope=("dagster", "asset", "2026-12-01", run_id), on_handle=record)
            >>> outcome.manifest.uri
        """
        key, _ = lifecycle.step_key(spec, scope, idempotency_key)
        handle: JobHandle | None = None
        try:
            handle = await self.start(spec, scope=scope, idempotency_key=key)
            if on_handle is not None:
                on_handle(handle)
            job = await self.wait(handle, on_status=on_status)
            manifest = await self.finish(handle, carry=spec.carry, destination=destination, storage_options=storage_options)
        except BaseException as exc:
            if self._interrupted(exc, spec):
                await self._run(self._cancel_interrupted_op(handle, key))
            raise
        return JobOutcome(handle=handle, job=job, manifest=manifest)

    async def run_function(
        self,
        name: str,
        input_data: Any,
        langsmith_metadata: dict[str, Any] | None = None,
        langsmith_tags: list[str] | None = None,
        *,
        confidence_scoring: bool | None = None,
    ) -> FunctionResult:
        """See ``SutroClient.run_function``."""
        body = self._function_input(name, input_data)
        with tracing.function_run_trace(name, body, langsmith_metadata, langsmith_tags) as traced:
            result = await self._run(ops.send(self.retry, protocol.run_function_call(name, body, confidence_scoring)))
            traced.update(result.model_dump(mode="json", exclude_none=True))
        return result

    async def batch_run_function(
        self,
        name: str,
        data: Any,
        job_priority: int = 0,
        output_column: str = "inference_result",
        dry_run: bool = False,
        stay_attached: bool = False,
        job_name: str | None = None,
        description: str | None = None,
        langsmith_metadata: dict[str, Any] | None = None,
        langsmith_tags: list[str] | None = None,
        *,
        columns: Sequence[str] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """See ``SutroClient.batch_run_function``."""
        op = self._batch_function_op(name, data, columns, job_priority, stay_attached, job_name, description,
                                     idempotency_key, output_column, dry_run)
        if dry_run:
            return await self._run(op)
        with tracing.batch_submit_trace(name, compat.rows_of(data), langsmith_metadata, langsmith_tags) as traced:
            out = await self._run(op)
            traced["job_id"] = self.last_job_id
        return out
