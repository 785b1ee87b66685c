"""``SutroJobTrigger``: waits for a Sutro job in the triggerer, so no worker slot is held for hours.

The waiting itself (backoff, jitter, Retry-After, the transient-error budget, the absolute deadline) is
``sutro_core.AsyncSutroClient.await_job_completion``; this trigger only turns its outcome into exactly one
``TriggerEvent``.

Example::

    from airflow_provider_sutro.triggers.sutro import SutroJobTrigger

    self.defer(
        trigger=SutroJobTrigger(job_id="job-123", end_time=time.time() + 3600),
        method_name="execute_complete",
    )
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from sutro_core import (
    JobCancelledError,
    JobFailedError,
    JobTimeoutError,
    PollPolicy,
    SutroAPIError,
    SutroError,
)

from airflow_provider_sutro.events import make_event
from airflow_provider_sutro.hooks.sutro import SutroHook

#: How long ``on_kill`` may spend asking the service to cancel (Airflow bounds it too, at 30 s by default).
CANCEL_TIMEOUT_S = 20.0


class SutroJobTrigger(BaseTrigger):
    """Wait asynchronously for one Sutro job and yield exactly one event describing how it ended.

    Event ``status`` is one of ``success``, ``failed``, ``cancelled``, ``timeout`` or ``error`` (the
    transient-error budget ran out, or the service answered 4xx); every event carries ``job_id`` and a
    human ``message``, and ``failed`` carries the server's ``reason``.

    :param job_id: the job to wait for.
    :param end_time: absolute wall-clock deadline, epoch seconds. Absolute (not a duration) because the
        trigger is serialized and may resume in another triggerer process later.
    :param sutro_conn_id: Airflow connection of type ``sutro``.
    :param poll_interval: first poll interval in seconds; the core backs off from there.
    :param max_poll_interval: cap of the backoff, seconds.
    :param max_transient_errors: polls that may fail (5xx, 429, network) before giving up with ``error``.
    :param cancel_on_kill: cancel the job when a user kills the deferred task (mark failed/success, clear).

    Example::

        trigger = SutroJobTrigger(job_id="job-123", end_time=time.time() + 600, poll_interval=2)
        classpath, kwargs = trigger.serialize()
    """

    def __init__(
        self,
        job_id: str,
        end_time: float,
        sutro_conn_id: str = SutroHook.default_conn_name,
        poll_interval: float = 5.0,
        max_poll_interval: float = 60.0,
        max_transient_errors: int = 10,
        cancel_on_kill: bool = True,
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.end_time = float(end_time)
        self.sutro_conn_id = sutro_conn_id
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.max_transient_errors = int(max_transient_errors)
        self.cancel_on_kill = bool(cancel_on_kill)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and every constructor argument, so the triggerer can rebuild this trigger anywhere.

        Example::

            classpath, kwargs = trigger.serialize()
            same = SutroJobTrigger(**kwargs)
        """
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "end_time": self.end_time,
                "sutro_conn_id": self.sutro_conn_id,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "max_transient_errors": self.max_transient_errors,
                "cancel_on_kill": self.cancel_on_kill,
            },
        )

    def _hook(self) -> SutroHook:
        return SutroHook(sutro_conn_id=self.sutro_conn_id)

    def _poll_policy(self) -> PollPolicy:
        return PollPolicy(
            initial_interval=self.poll_interval,
            max_interval=max(self.max_poll_interval, self.poll_interval),
            max_transient_errors=self.max_transient_errors,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Await the job through the core client and yield one event (never raises for job outcomes).

        Example::

            async for event in trigger.run():
                print(event.payload["status"])
        """
        yield TriggerEvent(await self._outcome())

    def _log_status(self, status: Any) -> None:
        self.log.info("Sutro job %s is %s", self.job_id, getattr(status, "value", status))

    async def _outcome(self) -> dict[str, Any]:
        job_id = self.job_id
        try:
            async with await self._hook().get_async_conn(poll=self._poll_policy()) as client:
                job = await client.await_job_completion(
                    job_id, deadline=self.end_time, obtain_results=False, on_status=self._log_status
                )
        except JobFailedError as exc:
            return make_event("failed", job_id, str(exc), reason=exc.reason)
        except JobCancelledError as exc:
            return make_event("cancelled", job_id, str(exc))
        except JobTimeoutError as exc:
            return make_event("timeout", job_id, str(exc), job_status=exc.status)
        except SutroAPIError as exc:
            # 4xx (bad key, unknown job) fail fast; 5xx/429 only reach here once the budget is spent.
            return make_event("error", job_id, str(exc), http_status=exc.status_code)
        except SutroError as exc:
            return make_event("error", job_id, f"{type(exc).__name__}: {exc}")
        return make_event(
            "success",
            job_id,
            f"job {job_id} SUCCEEDED",
            job_status=job.status.value,
            num_rows=job.num_rows,
        )

    async def on_kill(self) -> None:
        """Cancel the job when a user kills the deferred task (Airflow 3.3+ calls this; a move does not).

        Example::

            await trigger.on_kill()     # the job is now CANCELLING/CANCELLED
        """
        if not self.cancel_on_kill:
            self.log.info("on_kill: leaving Sutro job %s running (cancel_on_kill=False)", self.job_id)
            return
        try:
            async with await self._hook().get_async_conn() as client:
                status = await asyncio.wait_for(client.cancel_job(self.job_id), timeout=CANCEL_TIMEOUT_S)
            self.log.info("on_kill: cancelled Sutro job %s (now %s)", self.job_id, status)
        except Exception as exc:  # noqa: BLE001 - on_kill must not raise; the log says the job may run
            self.log.warning(
                "on_kill: could not cancel Sutro job %s, it may still be running: %s", self.job_id, exc
            )
