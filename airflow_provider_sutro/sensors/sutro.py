"""``SutroJobSensor``: wait for a Sutro job submitted elsewhere (another DAG, a notebook, the SDK).

Deferrable by default: the wait runs in the triggerer through ``SutroJobTrigger``. The sensor succeeds only
when the job SUCCEEDED; FAILED and CANCELLED fail it with the server's reason (no retries spent). With
``output_uri`` it also writes the job's results to parquet and returns the manifest.

Example::

    from airflow_provider_sutro.sensors.sutro import SutroJobSensor

    SutroJobSensor(
        task_id="wait_for_nightly_job",
        job_id="{{ dag_run.conf['sutro_job_id'] }}",
        output_uri="/data/nightly/{{ ds }}.parquet",
    )
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from sutro_core import JobHandle, JobStatus, JobTimeoutError
from sutro_core.retrying import poll_policy

from airflow_provider_sutro.errors import SutroJobError, fail_fast
from airflow_provider_sutro.hooks.sutro import SutroHook
from airflow_provider_sutro.io import connection_of, output_destination
from airflow_provider_sutro.links import SutroJobLink, record_job
from airflow_provider_sutro.task import SutroTaskMixin

if TYPE_CHECKING:
    from airflow.sdk import Context


class SutroJobSensor(SutroTaskMixin, BaseSensorOperator):
    """Wait until a Sutro job finishes; succeed only if it SUCCEEDED.

    :param job_id: the job to wait for (templated).
    :param sutro_conn_id: Airflow connection of type ``sutro``.
    :param output_uri: when set, write the results parquet here and return the manifest (templated).
    :param deferrable: wait in the triggerer (default) instead of poking from a worker.
    :param max_transient_errors: failed polls tolerated by the trigger before it gives up.
    :param cancel_on_kill: cancel the job when the sensor is killed. Off by default: the job belongs to
        whoever submitted it (for the same reason a timeout never cancels it).

    ``timeout`` (seconds) and ``poke_interval`` are the usual sensor arguments; the deferred wait uses
    ``timeout`` as its deadline and ``poke_interval`` as its first poll interval.

    Example::

        SutroJobSensor(task_id="wait", job_id="job-123", timeout=3600, poke_interval=30)
    """

    template_fields: Sequence[str] = ("job_id", "output_uri")
    operator_extra_links = (SutroJobLink(),)

    def __init__(
        self,
        *,
        job_id: str,
        sutro_conn_id: str = SutroHook.default_conn_name,
        output_uri: Any = None,
        deferrable: bool = True,
        max_poll_interval: float = 60.0,
        max_transient_errors: int = 10,
        cancel_on_kill: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.sutro_conn_id = sutro_conn_id
        self.output_uri = output_uri
        self.deferrable = deferrable
        self.max_poll_interval = max_poll_interval
        self.max_transient_errors = max_transient_errors
        self.cancel_on_kill = cancel_on_kill

    def _handle(self) -> JobHandle:
        """A handle for a job started elsewhere: never cancelled at the deadline (it is not ours)."""
        poll = poll_policy(float(self.poke_interval), self.max_poll_interval, self.max_transient_errors)
        return JobHandle.watching(self.job_id, self.client.api_url, self.client.job_url(self.job_id),
                            timeout=float(self.timeout), poll=poll, cancel_on_timeout=False,
                            cancel_on_interrupt=self.cancel_on_kill)

    def _check(self) -> bool:
        job = self.client.get_job(self.job_id)
        job.raise_if_ended()
        self.log.info("Sutro job %s is %s", self.job_id, job.status.value)
        return job.status is JobStatus.SUCCEEDED

    def poke(self, context: Context) -> bool:
        """One look at the job: True when SUCCEEDED, raises when FAILED/CANCELLED, else False."""
        with fail_fast():
            return self._check()

    def execute(self, context: Context) -> Any:
        """Record the job, then defer (or poke in the worker); returns the manifest when asked to write one."""
        if not self.job_id or not isinstance(self.job_id, str):
            raise ValueError(f"job_id must be a Sutro job id string, got {self.job_id!r}")
        with self._step():
            self.handle = handle = self._handle()
            record_job(self, context, handle)
            if not self.deferrable:
                super().execute(context)
                return self._finish(handle)
            if self._check():
                return self._finish(handle)
            self._defer_on(handle, float(self.timeout))

    def execute_complete(self, context: Context, event: Any = None, handle: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger fired; only ``success`` passes."""
        with self._step():
            job_handle, event = self._resume(context, event, handle)
            if event["status"] == "success":
                return self._finish(job_handle)
            if event["status"] == "timeout":  # the job is someone else's: report the timeout, leave the job alone
                raise JobTimeoutError(job_handle.job_id, event.get("job_status") or "RUNNING", float(self.timeout))
            raise SutroJobError(f"gave up waiting for job {job_handle.job_id}: {event.get('message')}")

    def _finish(self, handle: JobHandle) -> Any:
        if self.output_uri is None:
            return None
        manifest = self.client.finish(handle, destination=output_destination(self.output_uri))
        return self._logged(manifest, connection_of(self.output_uri))
