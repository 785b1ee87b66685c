"""``SutroClient``: the synchronous client (httpx.Client transport). Its API is the job lifecycle
(``start`` / ``wait`` / ``finish`` / ``cancel``, and ``run`` / ``stages`` for a whole step); the Sutro SDK's
methods come from ``sdk_facade``.

Example:
    >>> from sutro_core import JobSpec, SutroClient
    >>> with SutroClient() as client:                       # SUTRO_API_KEY / SUTRO_API_URL
    ...     spec = JobSpec.for_inference(["I love it"], "all-minilm-l6-v2", output_uri="out/emb.parquet")
    ...     client.run(spec, scope=("my-pipeline", "embed", "2026-12-01")).manifest.rows
    1
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

import httpx

from . import lifecycle, protocol
from .client_base import ClientBase, shared_ssl_context
from .lifecycle import DEFAULT_DOWNLOAD_TIMEOUT_S
from .models import Job, JobStatus, ResultsManifest
from .operations import Blocking, Lines, Op, Sleep, Started
from .protocol import Call
from .retrying import DeadlineReached, PollPolicy, RetryPolicy
from .sdk_facade import SdkFacade
from .spec import JobHandle, JobOutcome, JobSpec
from .watchdog import SocketWatchdog

T = TypeVar("T")


def _timeout(call: Call[Any], default: float) -> httpx.Timeout:
    """The call's httpx timeouts, none longer than what is left before its deadline."""
    seconds = call.timeout if call.timeout is not None else default
    connect = min(default, 30.0)
    left = call.seconds_left()
    if left is not None:
        seconds, connect = min(seconds, left), min(connect, left)
    return httpx.Timeout(seconds, connect=connect)


def _past(call: Call[Any]) -> bool:
    # A little slack: an httpx timeout set to "what is left" fires a hair before the deadline.
    return call.deadline is not None and time.time() >= call.deadline - 0.05


def _watchdog(response: httpx.Response, deadline: float | None) -> SocketWatchdog:
    stream = response.extensions.get("network_stream")
    return SocketWatchdog(stream.get_extra_info("socket") if stream is not None else None, deadline)


class SutroClient(SdkFacade, ClientBase):
    """Synchronous Sutro client. Every failure raises a ``SutroError``; nothing prints.

    Args:
        api_key: falls back to ``SUTRO_API_KEY``, then ``~/.sutro/config.json``.
        api_url: falls back to ``SUTRO_API_URL``, then the config file, then https://api.sutro.sh.
        timeout: per-request timeout in seconds.
        retry: how reads are retried (submits never are).
        poll: how ``await_job_completion`` polls.
        transport: an ``httpx.BaseTransport`` (tests use ``httpx.MockTransport`` for faults).
    """

    def __init__(
        self,
        api_key: str | None = None,
        api_url: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(api_key, api_url, timeout=timeout, retry=retry, poll=poll)
        self._http = httpx.Client(base_url=self.api_url + "/", headers=self._headers(), timeout=timeout,
                                  transport=transport, verify=shared_ssl_context())

    # ---- driving operations ----------------------------------------------------------------------

    def _drive(self, op: Op[T], announce: Callable[[JobHandle], Any] | None = None) -> Generator[Any, None, T]:
        """Perform the operation's effects and return its value. At ``Started`` it yields the handle (or
        ``announce(handle)``) to its caller and throws back in whatever the caller throws in there. Every
        exception, an interrupt included, goes to the operation, which decides (retry, cancel, clean up,
        raise); stopped early, the operation's clean-up runs now, not at GC (httpx's auth flow is driven
        the same way)."""
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
                    if isinstance(effect, Started):
                        yield effect.handle if announce is None else announce(effect.handle)
                    else:
                        value = self._perform(effect)
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    error = exc
        finally:
            op.close()

    def _run(self, op: Op[T], on_started: Callable[[JobHandle], None] | None = None) -> T:
        """``_drive`` to the end; ``on_started(handle)`` at ``Started``, its exceptions thrown into the op."""
        steps = self._drive(op)
        try:
            handle = next(steps)
            while True:
                try:
                    if on_started is not None:
                        on_started(handle)
                except BaseException as exc:
                    handle = steps.throw(exc)
                else:
                    handle = next(steps)
        except StopIteration as stop:
            return stop.value

    def _perform(self, effect: Any) -> Any:
        if isinstance(effect, Sleep):
            time.sleep(max(0.0, effect.seconds))
            return None
        if isinstance(effect, Blocking):
            return effect.fn()
        if isinstance(effect, Lines):
            return self._stream_lines(effect)
        call: Call[Any] = effect
        try:
            return self._send(call)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            if _past(call):
                raise DeadlineReached(f"{call.method} {call.path}: past the deadline") from exc
            raise

    def _send(self, call: Call[Any]) -> httpx.Response:
        if call.stream_to is None and call.deadline is None:
            return self._http.request(call.method, call.path, params=call.params, json=call.json,
                                      timeout=_timeout(call, self.timeout))
        with self._http.stream(call.method, call.path, params=call.params, json=call.json,
                               timeout=_timeout(call, self.timeout)) as response:
            watchdog = _watchdog(response, call.deadline)
            try:
                if call.stream_to is None or not response.is_success:
                    response._content = b"".join(self._chunks(response, call))  # what Response.read() does
                    return response
                with open(call.stream_to, "wb") as fh:
                    for chunk in self._chunks(response, call):
                        fh.write(chunk)
                return response
            except httpx.TransportError as exc:
                if watchdog.fired:
                    raise DeadlineReached(f"{call.method} {call.path}: the body did not arrive in time") from exc
                raise
            finally:
                watchdog.stop()

    @staticmethod
    def _chunks(response: httpx.Response, call: Call[Any]) -> Any:
        # No chunk_size: httpx would re-buffer every 64 KiB read into 1 MiB chunks (an extra copy;
        # measured 1.37x vs 1.06x of curl on a 38 MB file, benchmarks/results_download.py).
        for chunk in response.iter_bytes():
            if call.deadline is not None and time.time() > call.deadline:
                raise DeadlineReached(f"{call.method} {call.path}: the body did not arrive in time")
            yield chunk

    def _stream_lines(self, effect: Lines) -> None:
        call = effect.call
        with self._http.stream(call.method, call.path, timeout=httpx.Timeout(60.0, connect=10.0)) as response:
            if not response.is_success:
                response.read()
                raise protocol.error_from_response(response)
            for line in response.iter_lines():
                if line.strip():
                    effect.on_line(json.loads(line))

    # ---- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> "SutroClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the job lifecycle: start / wait / finish / cancel, and run (all four) --------------------

    def start(self, spec: JobSpec, *, scope: Sequence[Any] | None = None,
              idempotency_key: str | None = None) -> JobHandle:
        """Start the step's job: reattach to the live job of an earlier try (same scope and inputs), else
        cost-gate and submit it once, close the same-key race, and cancel a live job of the same scope
        whose inputs changed. Record the returned handle before waiting.

        Example:
            >>> handle = client.start(spec, scope=("airflow", dag_id, task_id, run_id, map_index))
        """
        return self._run(lifecycle.start_op(self, spec, scope, idempotency_key))

    def wait(self, handle: JobHandle | dict[str, Any], *,
             on_status: Callable[[JobStatus], None] | None = None) -> Job:
        """Wait until the job SUCCEEDED, within the handle's deadline (every request is bounded by what is
        left). At the deadline the job is cancelled (unless the spec opted out) and ``JobTimeoutError``
        raised; ``JobFailedError`` / ``JobCancelledError`` when it ends otherwise.

        Example:
            >>> job = client.wait(handle)
        """
        return self._run(lifecycle.wait_op(self, handle, on_status))

    def finish(self, handle: JobHandle | dict[str, Any], *, carry: Any = None, destination: Any = None,
               storage_options: dict[str, Any] | None = None,
               timeout: float | None = DEFAULT_DOWNLOAD_TIMEOUT_S, spec: JobSpec | None = None,
               defer_repairs: bool = False) -> ResultsManifest:
        """Write the job's results as the one artifact shape (carried input columns, unpacked outputs,
        server extras, each row's ``sutro_row_status`` and ``sutro_job_id``, ``sutro.*`` footer) to
        ``destination`` or the spec's ``output_uri``, atomically. ``spec`` (the step's) carries its columns
        when ``carry`` is None and gives ``repair_rounds`` and ``row_store`` the step's rows.
        ``RowsFailedError`` past ``max_failed_rows``, after the artifact is written. ``defer_repairs``:
        raise ``lifecycle.RepairPending`` (with the repair job's handle) instead of waiting for a repair
        job, so an orchestrator waits its own way (Airflow: a second deferral) and calls ``finish`` again.

        Example:
            >>> manifest = client.finish(handle, spec=spec)
        """
        carry = spec.carry if carry is None and spec is not None else carry
        return self._run(lifecycle.finish_op(self, handle, carry, destination, storage_options, timeout, spec,
                                             defer_repairs))

    def cancel(self, handle: JobHandle | dict[str, Any] | str, *, reason: str = "it was asked to") -> bool:
        """Cancel the job unless it is terminal; True when the service accepted. Bounded (20 s); never
        raises a ``SutroError`` (a warning says the job may still run).

        Example:
            >>> client.cancel(handle, reason="the task was killed")
        """
        return self._run(lifecycle.cancel_op(self, handle, reason))

    def run(self, spec: JobSpec, *, scope: Sequence[Any] | None = None, idempotency_key: str | None = None,
            on_handle: Callable[[JobHandle], None] | None = None,
            on_status: Callable[[JobStatus], None] | None = None, destination: Any = None,
            storage_options: dict[str, Any] | None = None) -> JobOutcome:
        """The whole step: ``start``, ``on_handle(handle)`` (record it durably), ``wait``, ``finish``.

        An interruption (KeyboardInterrupt, SystemExit, an orchestrator's termination), in ``on_handle``
        too, cancels the job unless ``spec.cancel_on_interrupt`` is False, then re-raises; ordinary errors
        never cancel (the retry reattaches).

        Example:
            >>> outcome = client.run(spec, scope=("dagster", "asset", "2026-12-01", run_id), on_handle=record)
            >>> outcome.manifest.uri
        """
        return self._run(lifecycle.step_op(self, spec, scope, idempotency_key, on_status, destination, storage_options),
                         on_started=on_handle)

    def stages(self, spec: JobSpec, *, scope: Sequence[Any] | None = None, idempotency_key: str | None = None,
               on_status: Callable[[JobStatus], None] | None = None, destination: Any = None,
               storage_options: dict[str, Any] | None = None,
               announce: Callable[[JobHandle], Any] | None = None) -> Generator[Any, None, JobOutcome]:
        """``run`` as a generator, for an orchestrator that reports from a generator of its own (a Dagster
        asset): it yields the handle once the job is started (or ``announce(handle)``, e.g. the event to
        report it with), then waits and finishes and returns the ``JobOutcome``. What is thrown in at that
        yield is handled like an error of ``run``'s ``on_handle``: an interruption cancels the job (unless
        ``spec.cancel_on_interrupt`` is False); a generator closed unfinished cancels nothing.

        Example:
            >>> outcome = yield from client.stages(spec, scope=scope, announce=lambda h: AssetObservation(...))
        """
        return (yield from self._drive(
            lifecycle.step_op(self, spec, scope, idempotency_key, on_status, destination, storage_options), announce))
