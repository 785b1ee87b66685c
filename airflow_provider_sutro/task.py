"""What the Sutro operators and the sensor share: the task's client, its error mapping, and the deferral.

Example::

    class MyOperator(SutroTaskMixin, BaseOperator):
        def execute(self, context):
            with self._step():
                handle = self.client.start(spec, scope=scope)
                self._defer_on(handle, wait_s=3600)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import cached_property
from typing import Any

from sutro_core import JobHandle, ResultsManifest, SutroClient
from .outcomes import checked_outcome, raise_for_ended

from airflow_provider_sutro.errors import SutroTriggerEventError, fail_fast
from airflow_provider_sutro.hooks.sutro import SutroHook
from airflow_provider_sutro.links import recorded_handle
from airflow_provider_sutro.triggers.sutro import SutroJobTrigger, mask


class SutroTaskMixin:
    """For a ``BaseOperator`` with ``sutro_conn_id``, ``cancel_on_kill`` and ``max_poll_interval``."""

    sutro_conn_id: str
    cancel_on_kill: bool
    max_poll_interval: float

    @cached_property
    def client(self) -> SutroClient:
        """The sync core client of ``sutro_conn_id``, resolved before anything starts (so the trigger never
        looks the connection up after a job is billed)."""
        client = SutroHook(sutro_conn_id=self.sutro_conn_id).get_conn()
        mask(client.api_key)
        self._api_key = client.api_key
        return client

    @contextmanager
    def _step(self) -> Iterator[None]:
        """One step of the task: errors a retry cannot fix fail it without retries; the client is closed."""
        with fail_fast():
            try:
                yield
            finally:
                client = self.__dict__.pop("client", None)
                if client is not None:
                    client.close()

    def _defer_on(self, handle: JobHandle, wait_s: float) -> Any:
        """Defer to ``SutroJobTrigger`` on ``handle``; ``execute_complete(context, event, handle)`` resumes."""
        self.defer(  # type: ignore[attr-defined]
            trigger=SutroJobTrigger(handle=handle.to_dict(), api_key=self._api_key, cancel_on_kill=self.cancel_on_kill),
            method_name="execute_complete",
            kwargs={"handle": handle.to_dict()},
            # A backstop only: the handle's deadline fires first and sends a clean timeout event.
            timeout=timedelta(seconds=max(wait_s, 0.0) + self.max_poll_interval + 60),
        )

    def _resume(self, context: Any, event: Any, handle: dict[str, Any] | None) -> tuple[JobHandle, dict[str, Any]]:
        """The handle and the checked event of a resumed task; a FAILED or CANCELLED job raises here."""
        job = self.handle = recorded_handle(context, handle)
        if job is None:
            raise SutroTriggerEventError("the task resumed without its job handle; clear it to start again")
        self.sutro_job_url = job.url  # for the link: this is a fresh operator instance
        event = checked_outcome(event, expected_job_id=job.job_id)
        raise_for_ended(event)
        return job, event

    def _logged(self, manifest: ResultsManifest, conn_id: str | None = None) -> dict[str, Any]:
        """The manifest for XCom, after logging where the results went; ``conn_id``: the Airflow connection
        the results were written with (a downstream task reads them through it)."""
        log = self.log  # type: ignore[attr-defined]
        log.info("Wrote %s rows of job %s to %s (%s bytes)", manifest.rows, manifest.job_id, manifest.uri, manifest.bytes)
        out = manifest.to_dict()
        if conn_id:
            out["conn_id"] = conn_id
        return out

    def on_kill(self) -> None:
        """Cancel the job when the task is killed in the worker (a deferred task's trigger does it there)."""
        handle = getattr(self, "handle", None)
        if handle is not None and self.cancel_on_kill:
            # A client of its own: on_kill may interrupt a request of the task's client.
            with SutroHook(sutro_conn_id=self.sutro_conn_id).get_conn() as client:
                client.cancel(handle, reason="the task was killed")
