"""Operators that run Sutro batch jobs and Sutro Functions as Airflow tasks.

* ``SutroBatchInferenceOperator`` - a batch inference job (model + text rows) -> parquet at ``output_uri``.
* ``SutroBatchFunctionOperator`` - a Function over many rows as one batch job -> parquet at ``output_uri``.
* ``SutroRunFunctionOperator`` - one synchronous Function call; returns its (small) result.

The batch operators defer to ``SutroJobTrigger`` by default (no worker slot is held while the job runs);
``deferrable=False`` waits in the worker instead. Either way they are retry-safe: the job is submitted under
an idempotency key derived from dag_id/task_id/run_id/map_index (never try_number) and what the job
computes, its id is pushed to XCom before any waiting, and a retried try reattaches to a job that is still
running or already succeeded instead of submitting (and paying for) it again. Results go to a parquet file;
XCom only gets a manifest (job id, uri, rows, tokens, cost).

Example::

    from airflow.sdk import dag
    from airflow_provider_sutro.operators.sutro import SutroBatchInferenceOperator

    @dag(schedule=None)
    def embed_tickets():
        SutroBatchInferenceOperator(
            task_id="embed",
            model="all-minilm-l6-v2",
            inputs=["I was charged twice", "The app crashes on login"],
            output_uri="/data/sutro/{{ run_id }}/embeddings.parquet",
        )

    embed_tickets()
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator
from sutro_core import (
    BatchJobRequest,
    InputValidationError,
    JobCancelledError,
    JobFailedError,
    JobStatus,
    JobTimeoutError,
    PollPolicy,
    SutroClient,
    idempotency_key,
)

from airflow_provider_sutro.errors import SutroJobError, SutroTaskTimeoutError
from airflow_provider_sutro.events import validate_event
from airflow_provider_sutro.hooks.sutro import SutroHook
from airflow_provider_sutro.io import output_uri_to_str, resolve_inputs
from airflow_provider_sutro.links import SutroJobLink, record_job
from airflow_provider_sutro.triggers.sutro import SutroJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Default wait for a batch job: a day (priority-1 jobs can take hours).
DEFAULT_TIMEOUT_S = 24 * 60 * 60


class _SutroBatchOperator(BaseOperator):
    """Shared machinery of the batch operators: submit-or-reattach, wait (deferred or not), write results."""

    template_fields: Sequence[str] = ("inputs", "output_uri", "job_name", "description")
    template_fields_renderers: ClassVar[dict[str, str]] = {"inputs": "json"}
    operator_extra_links = (SutroJobLink(),)
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        inputs: Any,
        output_uri: Any,
        sutro_conn_id: str = SutroHook.default_conn_name,
        job_priority: int = 0,
        job_name: str | None = None,
        description: str | None = None,
        deferrable: bool = True,
        timeout: float = DEFAULT_TIMEOUT_S,
        poll_interval: float = 5.0,
        max_poll_interval: float = 60.0,
        max_transient_errors: int = 10,
        max_cost_usd: float | None = None,
        cancel_on_kill: bool = True,
        include_inputs: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if timeout is None or float(timeout) <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if max_cost_usd is not None and float(max_cost_usd) < 0:
            raise ValueError(f"max_cost_usd must be >= 0 dollars, got {max_cost_usd!r}")
        self.inputs = inputs
        self.output_uri = output_uri
        self.sutro_conn_id = sutro_conn_id
        self.job_priority = job_priority
        self.job_name = job_name
        self.description = description
        self.deferrable = deferrable
        self.timeout = float(timeout)
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.max_transient_errors = int(max_transient_errors)
        self.max_cost_usd = None if max_cost_usd is None else float(max_cost_usd)
        self.cancel_on_kill = cancel_on_kill
        self.include_inputs = include_inputs
        self.job_id: str | None = None

    # -- what subclasses provide -------------------------------------------------------------------
    def build_request(self, data: Any) -> BatchJobRequest:
        """The validated job for this task's (resolved) inputs."""
        raise NotImplementedError

    # -- plumbing ---------------------------------------------------------------------------------
    @cached_property
    def hook(self) -> SutroHook:
        """The hook for ``sutro_conn_id``."""
        return SutroHook(sutro_conn_id=self.sutro_conn_id)

    @cached_property
    def client(self) -> SutroClient:
        """The synchronous core client (polls with this task's interval and transient-error budget)."""
        poll = PollPolicy(
            initial_interval=self.poll_interval,
            max_interval=max(self.max_poll_interval, self.poll_interval),
            max_transient_errors=self.max_transient_errors,
        )
        return self.hook.get_conn(poll=poll)

    def _idempotency_key(self, context: Context, request: BatchJobRequest) -> str:
        ti = context["ti"]
        # Never try_number: every try of this task instance must find the same job.
        return idempotency_key(
            "airflow", ti.dag_id, ti.task_id, ti.run_id, ti.map_index, fingerprint=request.fingerprint
        )

    def _record_job(self, context: Context, job_id: str) -> None:
        """Push the job id (and its link) to XCom before any waiting, so it is never lost."""
        self.job_id = job_id
        record_job(self, context, job_id, self.client.job_url(job_id))

    def _close_client(self) -> None:
        client = self.__dict__.pop("client", None)  # the next use (e.g. on_kill) opens a fresh one
        if client is not None:
            client.close()

    def execute(self, context: Context) -> dict[str, Any]:
        """Submit (or reattach to) the job, then defer to the trigger or wait here; returns the manifest."""
        try:
            return self._submit_and_wait(context)
        finally:
            self._close_client()

    def _submit_and_wait(self, context: Context) -> dict[str, Any]:
        try:
            request = self.build_request(resolve_inputs(self.inputs))
        except InputValidationError as exc:
            if exc.field != "data":
                raise
            # The core calls it "data"; in this operator the parameter is "inputs".
            raise InputValidationError("inputs", str(exc).split(": ", 1)[-1]) from exc
        output_uri_to_str(self.output_uri)  # fail on a missing destination before paying for a job
        key = self._idempotency_key(context, request)
        # The core dry-runs against max_cost_usd only when it is about to submit (not when reattaching).
        submission = self.client.submit_job(request, idempotency_key=key, max_cost_usd=self.max_cost_usd)
        if submission.cost_estimate is not None:
            self.log.info("Estimated cost $%.6g is within max_cost_usd=$%.6g", submission.cost_estimate,
                          self.max_cost_usd)
        self._record_job(context, submission.job_id)
        if submission.reattached:
            self.log.info(
                "Reattached to job %s (%s) from an earlier try", submission.job_id, submission.status.value
            )
        else:
            self.log.info(
                "Submitted job %s (%s rows): %s", submission.job_id, request.num_rows, self.sutro_job_url
            )

        if submission.status is JobStatus.SUCCEEDED:
            return self._write_results(submission.job_id)
        if self.deferrable:
            wait_s = self._wait_seconds()
            self.defer(
                trigger=SutroJobTrigger(
                    job_id=submission.job_id,
                    end_time=time.time() + wait_s,
                    sutro_conn_id=self.sutro_conn_id,
                    poll_interval=self.poll_interval,
                    max_poll_interval=self.max_poll_interval,
                    max_transient_errors=self.max_transient_errors,
                    cancel_on_kill=self.cancel_on_kill,
                ),
                method_name="execute_complete",
                kwargs={"job_id": submission.job_id},
                # A backstop only: the trigger's own deadline fires first, with a clean timeout event.
                timeout=timedelta(seconds=wait_s + self.max_poll_interval + 60),
            )
        return self._wait_in_worker(submission.job_id)

    def _wait_seconds(self) -> float:
        """How long to wait for the job: ``timeout``, or ``execution_timeout`` when that is shorter, so the
        trigger's own timeout event (which cancels the job) fires before Airflow's deferral timeout (which
        would leave the job running)."""
        if self.execution_timeout is None:
            return self.timeout
        return min(self.timeout, self.execution_timeout.total_seconds())

    def _wait_in_worker(self, job_id: str) -> dict[str, Any]:
        try:
            self.client.await_job_completion(job_id, timeout=self._wait_seconds(), obtain_results=False)
        except JobTimeoutError as exc:
            cancelled = self._cancel_quietly(job_id, "it did not finish before the timeout")
            raise SutroTaskTimeoutError(job_id, exc.status, exc.waited, cancelled) from exc
        return self._write_results(job_id)

    def execute_complete(
        self, context: Context, event: Any = None, job_id: str | None = None
    ) -> dict[str, Any]:
        """Resume after the trigger fired: only ``success`` writes results; everything else fails the task."""
        try:
            return self._complete(event, job_id)
        finally:
            self._close_client()

    def _complete(self, event: Any, job_id: str | None) -> dict[str, Any]:
        event = validate_event(event, expected_job_id=job_id)
        job_id = self.job_id = event["job_id"]
        self.sutro_job_url = self.client.job_url(job_id)  # this is a fresh operator instance
        status = event["status"]
        if status == "success":
            return self._write_results(job_id)
        if status == "failed":
            raise JobFailedError(job_id, event.get("reason") or event.get("message"))
        if status == "cancelled":
            raise JobCancelledError(job_id)
        if status == "timeout":
            cancelled = self._cancel_quietly(job_id, "it did not finish before the timeout")
            status_then = event.get("job_status") or "RUNNING"
            raise SutroTaskTimeoutError(job_id, status_then, self._wait_seconds(), cancelled)
        raise SutroJobError(
            f"gave up waiting for job {job_id}: {event.get('message')}. The job may still be running; "
            "a retry of this task reattaches to it"
        )

    def _write_results(self, job_id: str) -> dict[str, Any]:
        uri = output_uri_to_str(self.output_uri)
        manifest = self.client.download_results(job_id, uri, include_inputs=self.include_inputs).to_dict()
        self.log.info(
            "Wrote %s rows of job %s to %s (%s bytes)",
            manifest.get("rows"),
            job_id,
            manifest.get("uri"),
            manifest.get("bytes"),
        )
        return manifest

    def _cancel_quietly(self, job_id: str, why: str) -> bool:
        """Best-effort cancel; True when the service accepted it."""
        try:
            # A client of its own: on_kill runs in a signal handler, maybe in the middle of another request.
            with self.hook.get_conn() as client:
                status = client.cancel_job(job_id)
        except Exception as exc:  # noqa: BLE001 - best effort; the warning says the job may still run
            self.log.warning("Could not cancel job %s (%s); it may still be running: %s", job_id, why, exc)
            return False
        self.log.warning(
            "Cancelled job %s because %s (now %s)", job_id, why, getattr(status, "value", status)
        )
        return True

    def on_kill(self) -> None:
        """Cancel the job when the task is killed while waiting in the worker (``deferrable=False``).

        A killed *deferred* task is cancelled by ``SutroJobTrigger.on_kill`` instead.
        """
        if self.job_id and self.cancel_on_kill:
            self._cancel_quietly(self.job_id, "the task was killed")


class SutroBatchInferenceOperator(_SutroBatchOperator):
    """Run a Sutro batch inference job and write its results to parquet at ``output_uri``.

    :param model: model name, e.g. ``"qwen-3-4b"`` or ``"all-minilm-l6-v2"`` (templated).
    :param inputs: a list of strings, a DataFrame, a local .csv/.parquet/.txt path, an object-storage URI
        or ``ObjectStoragePath`` (read through Airflow), an http(s) URL of a csv/parquet file, or an upstream
        Sutro task's manifest (templated; ``XComArg`` works).
    :param output_uri: where the results parquet goes: a local path or any fsspec URI (templated).
    :param column: text column (or list of columns and literal separators) when the inputs are tabular.
    :param id_column: id column carried through for URL inputs.
    :param system_prompt: system prompt (templated).
    :param output_schema: JSON schema (dict or pydantic model) for structured outputs.
    :param sampling_params: e.g. ``{"temperature": 0.2, "max_tokens": 256}``.
    :param truncate_rows: cut rows longer than the model's context instead of failing the job.
    :param random_seed_per_input: a different seed per row.
    :param job_priority: 0 (interactive) or 1 (cheaper, slower).
    :param deferrable: wait in the triggerer (default) instead of holding a worker slot.
    :param timeout: seconds to wait before cancelling the job and failing the task.
    :param max_cost_usd: run a dry run first and fail, before anything billed, if the estimate exceeds it.
    :param cancel_on_kill: cancel the job when the task is killed.
    :param include_inputs: also write each row's input (an ``inputs`` column) into the results file.

    Example::

        SutroBatchInferenceOperator(
            task_id="summarise",
            model="qwen-3-4b",
            inputs="s3://bucket/tickets/{{ ds }}.parquet",
            column="body",
            system_prompt="Summarise the ticket in one sentence.",
            output_uri="s3://bucket/summaries/{{ ds }}.parquet",
            max_cost_usd=5.0,
        )
    """

    template_fields: Sequence[str] = (*_SutroBatchOperator.template_fields, "model", "system_prompt")

    def __init__(
        self,
        *,
        model: str,
        inputs: Any,
        output_uri: Any,
        column: str | Sequence[str] | None = None,
        id_column: str | None = None,
        system_prompt: str | None = None,
        output_schema: Any = None,
        sampling_params: dict[str, Any] | None = None,
        truncate_rows: bool = True,
        random_seed_per_input: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(inputs=inputs, output_uri=output_uri, **kwargs)
        self.model = model
        self.column = column
        self.id_column = id_column
        self.system_prompt = system_prompt
        self.output_schema = output_schema
        self.sampling_params = sampling_params
        self.truncate_rows = truncate_rows
        self.random_seed_per_input = random_seed_per_input

    def build_request(self, data: Any) -> BatchJobRequest:
        """The inference job for ``data``.

        Example::

            op.build_request(["a", "b"]).num_rows    # 2
        """
        return BatchJobRequest.for_inference(
            data,
            model=self.model,
            column=self.column,
            id_column=self.id_column,
            job_priority=self.job_priority,
            output_schema=self.output_schema,
            system_prompt=self.system_prompt,
            sampling_params=self.sampling_params,
            random_seed_per_input=self.random_seed_per_input,
            truncate_rows=self.truncate_rows,
            name=self.job_name,
            description=self.description,
        )


class SutroBatchFunctionOperator(_SutroBatchOperator):
    """Run a Sutro Function over many rows as one batch job; results go to parquet at ``output_uri``
    (for a classification Function: ``outputs`` as JSON ``{"label", "rationale"}`` and ``confidence_score``).

    :param function_name: the published Function's name, e.g. ``"ticket-triage"`` (templated).
    :param inputs: rows as dicts of the Function's input fields, a DataFrame, a .csv/.parquet path or URI,
        an http(s) URL, or an upstream Sutro task's manifest (templated).
    :param columns: the input columns to send, when the data has more.
    :param output_uri: where the results parquet goes (templated).

    Other parameters as ``SutroBatchInferenceOperator``.

    Example::

        SutroBatchFunctionOperator(
            task_id="triage",
            function_name="ticket-triage",
            inputs=[{"text": "I was charged twice"}, {"text": "Love the new UI"}],
            output_uri="/data/triage/{{ run_id }}.parquet",
        )
    """

    template_fields: Sequence[str] = (*_SutroBatchOperator.template_fields, "function_name")

    def __init__(
        self,
        *,
        function_name: str,
        inputs: Any,
        output_uri: Any,
        columns: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(inputs=inputs, output_uri=output_uri, **kwargs)
        self.function_name = function_name
        self.columns = columns

    def build_request(self, data: Any) -> BatchJobRequest:
        """The batch Function job for ``data``.

        Example::

            op.build_request([{"text": "hi"}]).num_rows    # 1
        """
        return BatchJobRequest.for_function(
            self.function_name,
            data,
            columns=self.columns,
            job_priority=self.job_priority,
            name=self.job_name,
            description=self.description,
        )


class SutroRunFunctionOperator(BaseOperator):
    """Call a Sutro Function once, synchronously, and return its result (small enough for XCom).

    :param function_name: the published Function's name (templated).
    :param input: the Function's input fields, e.g. ``{"text": "..."}`` (templated).
    :param confidence_scoring: ask for confidence scores (``None``: the service default).

    Example::

        SutroRunFunctionOperator(
            task_id="triage_one",
            function_name="ticket-triage",
            input={"text": "{{ dag_run.conf['ticket'] }}"},
        )
    """

    template_fields: Sequence[str] = ("function_name", "input")
    template_fields_renderers: ClassVar[dict[str, str]] = {"input": "json"}

    def __init__(
        self,
        *,
        function_name: str,
        input: dict[str, Any],
        sutro_conn_id: str = SutroHook.default_conn_name,
        confidence_scoring: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.function_name = function_name
        self.input = input
        self.sutro_conn_id = sutro_conn_id
        self.confidence_scoring = confidence_scoring

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the Function and return its result as a dict (label/response, confidence, rationale, usage)."""
        if not isinstance(self.input, dict) or not self.input:
            raise ValueError(
                "input must be a non-empty dict of the Function's fields, e.g. {'text': '...'}; "
                f"got {self.input!r}"
            )
        client = SutroHook(sutro_conn_id=self.sutro_conn_id).get_conn()
        kwargs: dict[str, Any] = {}
        if self.confidence_scoring is not None:
            kwargs["confidence_scoring"] = self.confidence_scoring
        result = client.run_function(self.function_name, self.input, **kwargs)
        payload = result.model_dump(mode="json")
        answer = payload.get("response") or payload.get("output")
        self.log.info("Function %s answered %r", self.function_name, answer)
        return payload
