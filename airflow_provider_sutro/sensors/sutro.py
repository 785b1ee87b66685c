"""``SutroJobSensor``: wait for a Sutro job submitted elsewhere (another DAG, a notebook, the SDK).

Deferrable by default: the wait runs in the triggerer through ``SutroJobTrigger``. The sensor succeeds only
when the job SUCCEEDED; FAILED and CANCELLED fail it with the server's reason. With ``output_uri`` it also
writes the job's results to parquet and returns the manifest.

Example::

    from airflow_provider_sutro.sensors.sutro import SutroJobSensor

    SutroJobSensor(
        task_id="wait_for_nightly_job",
        job_id="{{ dag_run.conf['sutro_job_id'] }}",
        output_uri="/data/nightly/{{ ds }}.parquet",
    )
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from sutro_core import JobCancelledError, JobFailedError, JobStatus, JobTimeoutError, SutroClient

from airflow_provider_sutro.errors import SutroJobError
from airflow_provider_sutro.events import validate_event
from airflow_provider_sutro.hooks.sutro import SutroHook
from airflow_provider_sutro.io import output_uri_to_str
from airflow_provider_sutro.links import SutroJobLink, record_job
from airflow_provider_sutro.triggers.sutro import SutroJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class SutroJobSensor(BaseSensorOperator):
    """Wait until a Sutro job finishes; succeed only if it SUCCEEDED.

    :param job_id: the job to wait for (templated).
    :param sutro_conn_id: Airflow connection of type ``sutro``.
    :param output_uri: when set, write the results parquet here and return the manifest (templated).
    :param deferrable: wait in the triggerer (default) instead of poking from a worker.
    :param max_transient_errors: failed polls tolerated by the trigger before it gives up.
    :param cancel_on_kill: cancel the job when the sensor is killed. Off by default: the job belongs to
        whoever submitted it.

    ``timeout`` (seconds) and ``poke_interval`` are the usual sensor arguments; the deferred wait uses
    ``timeout`` as its absolute deadline and ``poke_interval`` as its first poll interval.

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
        self.max_poll_interval = float(max_poll_interval)
        self.max_transient_errors = int(max_transient_errors)
        self.cancel_on_kill = cancel_on_kill

    @cached_property
    def client(self) -> SutroClient:
        """The synchronous core client."""
        return SutroHook(sutro_conn_id=self.sutro_conn_id).get_conn()

    def _record(self, context: Context) -> None:
        record_job(self, context, self.job_id, self.client.job_url(self.job_id))

    def _check(self) -> bool:
        job = self.client.get_job(self.job_id)
        if job.status is JobStatus.FAILED:
            raise JobFailedError(self.job_id, job.failure_reason)
        if job.status is JobStatus.CANCELLED:
            raise JobCancelledError(self.job_id)
        self.log.info("Sutro job %s is %s", self.job_id, job.status.value)
        return job.status is JobStatus.SUCCEEDED

    def poke(self, context: Context) -> bool:
        """One look at the job: True when SUCCEEDED, raises when FAILED/CANCELLED, else False."""
        return self._check()

    def execute(self, context: Context) -> Any:
        """Record the job, then defer (or poke in the worker); returns the manifest when asked to write one."""
        if not self.job_id or not isinstance(self.job_id, str):
            raise ValueError(f"job_id must be a Sutro job id string, got {self.job_id!r}")
        self._record(context)
        if not self.deferrable:
            super().execute(context)
            return self._finish()
        if self._check():
            return self._finish()
        self.defer(
            trigger=SutroJobTrigger(
                job_id=self.job_id,
                end_time=time.time() + float(self.timeout),
                sutro_conn_id=self.sutro_conn_id,
                poll_interval=float(self.poke_interval),
                max_poll_interval=self.max_poll_interval,
                max_transient_errors=self.max_transient_errors,
                cancel_on_kill=self.cancel_on_kill,
            ),
            method_name="execute_complete",
            kwargs={"job_id": self.job_id},
            timeout=timedelta(seconds=float(self.timeout) + self.max_poll_interval + 60),
        )

    def execute_complete(self, context: Context, event: Any = None, job_id: str | None = None) -> Any:
        """Resume after the trigger fired; only ``success`` passes."""
        event = validate_event(event, expected_job_id=job_id)
        self.sutro_job_url = self.client.job_url(self.job_id)  # this is a fresh operator instance
        status = event["status"]
        if status == "success":
            return self._finish()
        if status == "failed":
            raise JobFailedError(event["job_id"], event.get("reason") or event.get("message"))
        if status == "cancelled":
            raise JobCancelledError(event["job_id"])
        if status == "timeout":
            # The job is someone else's: report the timeout, leave the job alone.
            raise JobTimeoutError(event["job_id"], event.get("job_status") or "RUNNING", float(self.timeout))
        raise SutroJobError(f"gave up waiting for job {event['job_id']}: {event.get('message')}")

    def _finish(self) -> Any:
        if self.output_uri is None:
            return None
        manifest = self.client.download_results(self.job_id, output_uri_to_str(self.output_uri)).to_dict()
        self.log.info("Wrote %s rows of job %s to %s", manifest.get("rows"), self.job_id, manifest.get("uri"))
        return manifest

    def on_kill(self) -> None:
        """Cancel the job on kill only when ``cancel_on_kill=True`` (the job belongs to its submitter)."""
        if self.cancel_on_kill and self.job_id:
            try:
                self.client.cancel_job(self.job_id)
            except Exception as exc:  # noqa: BLE001 - best effort; logged
                self.log.warning("Could not cancel job %s: %s", self.job_id, exc)
