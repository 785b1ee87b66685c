"""``SutroJobTrigger``: waits for a started Sutro job in the triggerer, so no worker slot is held for hours.

It holds the job's ``JobHandle`` (what ``client.start`` returned: job id, deadline, poll policy, API URL)
and awaits ``AsyncSutroClient.wait(handle)``, which polls within the handle's deadline and cancels the job
there; this trigger only turns the outcome into exactly one ``TriggerEvent``.

It never looks a connection up: the deferring task resolves its ``sutro`` connection *before* it starts the
job and hands the trigger the key. No lookup can fail after a job is billed, and the trigger works wherever
the task worked (``airflow dags test``, a triggerer without the worker's secrets backend). The key travels
in the trigger's kwargs, which Airflow 3 stores Fernet-encrypted like a connection's password and blanks in
its REST API; it is masked in logs and left out of ``repr``.

Example::

    handle = client.start(spec, scope=("airflow", dag_id, task_id, run_id, map_index))
    self.defer(trigger=SutroJobTrigger(handle=handle.to_dict(), api_key=client.api_key),
               method_name="execute_complete")
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from sutro_core import JobHandle, SutroError
from ..outcomes import outcome_of
from sutro_core.shared_clients import shared_client

from airflow_provider_sutro.kill import decide, ti_state_now, warm_up


def mask(secret: str | None) -> None:
    """Redact ``secret`` from Airflow's logs (task, triggerer and supervisor); a no-op outside Airflow."""
    if not secret:
        return
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)
    except Exception:  # noqa: BLE001, S110 - masking is best effort; never fail a task over it
        pass


class SutroJobTrigger(BaseTrigger):
    """Wait asynchronously for one started Sutro job and yield exactly one event describing how it ended.

    Event ``status`` is one of ``success``, ``failed``, ``cancelled``, ``timeout`` or ``error`` (the
    transient-error budget ran out, or the service answered 4xx); every event carries ``job_id`` and a
    human ``message``, ``failed`` the server's ``reason``, ``timeout`` whether the job was ``cancelled``.

    :param handle: ``JobHandle.to_dict()`` of the job (its deadline, poll policy and whether to cancel at
        the deadline come with it).
    :param api_key: the API key the task resolved (stored encrypted by Airflow, masked in logs).
    :param cancel_on_kill: cancel the job when a user ends the deferred task (mark failed / success);
        a clear never cancels (the rule: ``airflow_provider_sutro.kill``).

    Example::

        trigger = SutroJobTrigger(handle=handle.to_dict(), api_key=key)
        classpath, kwargs = trigger.serialize()
    """

    def __init__(self, handle: dict[str, Any], api_key: str | None = None, cancel_on_kill: bool = True) -> None:
        super().__init__()
        self.handle = JobHandle.from_dict(handle)
        self.api_key = api_key
        self.cancel_on_kill = bool(cancel_on_kill)
        mask(api_key)

    @property
    def job_id(self) -> str:
        """The job this trigger waits for."""
        return self.handle.job_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and constructor arguments, so the triggerer can rebuild this trigger anywhere.

        Example::

            classpath, kwargs = trigger.serialize()
            same = SutroJobTrigger(**kwargs)
        """
        kwargs = {"handle": self.handle.to_dict(), "api_key": self.api_key, "cancel_on_kill": self.cancel_on_kill}
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    def __repr__(self) -> str:
        # BaseTrigger's repr prints every kwarg; never the key.
        return f"<SutroJobTrigger job_id={self.job_id} api_url={self.handle.api_url}>"

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Await the job through the core client and yield one event (never raises for job outcomes).

        Example::

            async for event in trigger.run():
                print(event.payload["status"])
        """
        warm_up(self.task_instance)  # so that a later on_kill can read the task's state quickly
        yield TriggerEvent(await self._outcome())

    async def _outcome(self) -> dict[str, Any]:
        try:
            async with shared_client(self.handle.api_url, self.api_key) as client:
                job = await client.wait(self.handle)  # the core logs each status change once
        except SutroError as exc:  # a timeout here was already cancelled by the core (the handle says so)
            return outcome_of(self.job_id, exc)
        return outcome_of(self.job_id, job=job)

    async def on_kill(self) -> None:
        """A user acted on the deferred task: cancel the job unless the task was cleared (a newer try owns it).

        Example::

            await trigger.on_kill()     # after "mark failed": the job is now CANCELLING/CANCELLED
        """
        if not self.cancel_on_kill:
            self.log.info("on_kill: leaving Sutro job %s running (cancel_on_kill=False)", self.job_id)
            return
        decision = decide(*(await ti_state_now(self.task_instance)))
        verb = "cancelling" if decision.cancel else "keeping"
        self.log.info("on_kill: %s Sutro job %s: %s", verb, self.job_id, decision.reason)
        if decision.cancel:
            async with shared_client(self.handle.api_url, self.api_key) as client:
                await client.cancel(self.handle, reason=decision.reason)  # bounded; never raises SutroError
