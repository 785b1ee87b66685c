"""Operators that run Sutro batch jobs and Sutro Functions as Airflow tasks.

* ``SutroBatchInferenceOperator`` - a batch inference job (model + text rows) -> parquet at ``output_uri``.
* ``SutroBatchFunctionOperator`` - a Function over many rows as one batch job -> parquet at ``output_uri``.
* ``SutroRunFunctionOperator`` - one synchronous Function call; returns its (small) result.

The batch operators defer to ``SutroJobTrigger`` by default (no worker slot is held while the job runs);
``deferrable=False`` waits in the worker instead. Both are the core lifecycle under the scope
``("airflow", dag_id, task_id, run_id, map_index)`` (never try_number), with the handle in XCom before any
waiting; what reattaches, cancels or resubmits is docs/architecture.md's "Lifecycle rules". XCom gets only
the results manifest; errors a retry cannot fix fail the task with ``AirflowFailException``.

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

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator
from sutro_core import InputValidationError, Job, JobHandle, JobSpec, JobStatus, ResultsManifest
from sutro_core.lineage import describe_step
from sutro_core.retrying import poll_policy
from sutro_core.spec import DEFAULT_TIMEOUT_S, check_max_cost

from airflow_provider_sutro.errors import SutroJobError, SutroTaskTimeoutError
from airflow_provider_sutro.hooks.sutro import SutroHook
from airflow_provider_sutro.io import connection_of, output_destination, output_uri_to_str, resolve_inputs
from airflow_provider_sutro.lineage import (
    SutroLineageMixin,
    default_alias_name,
    input_uri_of,
    known_before_run,
    record_asset_event,
    results_outlet,
)
from airflow_provider_sutro.links import SutroJobLink, record_job
from airflow_provider_sutro.task import SutroTaskMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Default wait for a batch job: a day (priority-1 jobs can take hours).


class _SutroBatchOperator(SutroLineageMixin, SutroTaskMixin, BaseOperator):
    """Shared by the batch operators: the job spec from the templated fields, then the core lifecycle
    (``start`` -> record the handle -> defer to the trigger, or ``run`` in the worker -> ``finish``).
    The results are an outlet (an ``Asset``, or an ``AssetAlias`` for a templated ``output_uri``) and
    OpenLineage events describe the step (``airflow_provider_sutro.lineage``)."""

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
        carry_columns: Sequence[str] | None = None,
        repair_rounds: int = 0,
        max_failed_rows: int | float | None = None,
        asset_alias: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if asset_alias is None and not known_before_run(output_uri):  # templated: resolved at run time
            asset_alias = default_alias_name(self.dag_id, self.task_id)
        self.sutro_outlet = results_outlet(output_uri, asset_alias)
        if self.sutro_outlet is not None:
            self.outlets = [*self.outlets, self.sutro_outlet]
        check_max_cost(max_cost_usd)  # the core's rule, checked when the DAG is parsed
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise InputValidationError("timeout", f"must be a positive number of seconds, got {timeout!r}")
        self.inputs = inputs
        self.output_uri = output_uri
        self.sutro_conn_id = sutro_conn_id
        self.job_priority = job_priority
        self.job_name = job_name
        self.description = description
        self.deferrable = deferrable
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.max_transient_errors = max_transient_errors
        self.max_cost_usd = max_cost_usd
        self.cancel_on_kill = cancel_on_kill
        self.include_inputs = include_inputs
        self.carry_columns = carry_columns
        self.repair_rounds = repair_rounds
        self.max_failed_rows = max_failed_rows
        self.handle: JobHandle | None = None

    # -- what subclasses provide -------------------------------------------------------------------
    def build_spec(self, data: Any, **settings: Any) -> JobSpec:
        """The job for this task's (resolved) inputs; ``settings`` are the shared ``JobSpec`` fields."""
        raise NotImplementedError

    def _wait_seconds(self) -> float:
        """``timeout``, or ``execution_timeout`` when shorter: Airflow does not apply execution_timeout to a
        deferred task, so the handle's deadline (where the core cancels the job) stands in for it."""
        if self.execution_timeout is None:
            return self.timeout
        return min(self.timeout, self.execution_timeout.total_seconds())

    def _spec(self) -> JobSpec:
        settings = {
            "carry_columns": self.carry_columns, "output_uri": output_uri_to_str(self.output_uri),
            "max_cost_usd": self.max_cost_usd, "include_inputs": self.include_inputs,
            "repair_rounds": self.repair_rounds, "max_failed_rows": self.max_failed_rows,
            "timeout": self._wait_seconds(), "cancel_on_timeout": True, "cancel_on_interrupt": self.cancel_on_kill,
            "poll": poll_policy(self.poll_interval, self.max_poll_interval, self.max_transient_errors),
        }
        try:
            return self.build_spec(resolve_inputs(self.inputs), **settings)
        except InputValidationError as exc:
            if exc.field != "data":
                raise
            # The core calls it "data"; in this operator the parameter is "inputs".
            raise InputValidationError("inputs", str(exc).split(": ", 1)[-1]) from exc

    def _destination(self) -> Any:
        """An ``ObjectStoragePath`` with a connection (its filesystem writes the results), else None: the
        spec's ``output_uri``."""
        dest = output_destination(self.output_uri)
        return None if isinstance(dest, str) else dest

    @staticmethod
    def _scope(context: Context) -> tuple[Any, ...]:
        ti = context["ti"]
        # Never try_number: every try (retry, clear) of this task instance must find the same job.
        return ("airflow", ti.dag_id, ti.task_id, ti.run_id, ti.map_index)

    def _record(self, context: Context, handle: JobHandle) -> None:
        self.handle = handle
        record_job(self, context, handle)
        how = "Reattached to" if handle.reattached else "Started"
        self.log.info("%s job %s (%s): %s", how, handle.job_id, handle.status, handle.url)

    def execute(self, context: Context) -> dict[str, Any]:
        """Start (or reattach to) the job, record its handle, then defer, or wait here; returns the manifest."""
        with self._step():
            spec = self._spec()
            if not self.deferrable:
                outcome = self.client.run(spec, scope=self._scope(context),
                                          on_handle=lambda handle: self._record(context, handle),
                                          destination=self._destination())
                return self._finished(context, spec, outcome.handle, outcome.manifest, outcome.job)
            handle = self.client.start(spec, scope=self._scope(context))
            self._record(context, handle)
            if handle.status == JobStatus.SUCCEEDED.value:
                return self._finished(context, spec, handle,
                                      self.client.finish(handle, spec=spec, destination=self._destination()))
            self._defer_on(handle, handle.seconds_left() or 0.0)

    def _finished(self, context: Context, spec: JobSpec, handle: JobHandle, manifest: ResultsManifest,
                  job: Job | None = None) -> dict[str, Any]:
        """The results are written: describe the step (lineage), attach the manifest to the asset event."""
        try:
            dest = self._destination()  # its connection's filesystem reads the artifact's footer
            self.sutro_lineage = describe_step(handle, manifest=manifest, job=job, spec=spec,
                                               input_uri=input_uri_of(self.inputs),
                                               storage_options=None if dest is None else dest.fs.storage_options)
        except Exception as exc:  # noqa: BLE001 - lineage never fails a step whose results are written
            self.log.warning("Could not describe Sutro job %s for lineage: %s", handle.job_id, exc)
        if self.sutro_outlet is not None:
            record_asset_event(context, self.sutro_outlet, manifest)
        return self._logged(manifest, connection_of(self.output_uri))

    def execute_complete(self, context: Context, event: Any = None,
                         handle: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: only ``success`` writes results; everything else fails the task."""
        with self._step():
            return self._complete(context, event, handle)

    def _complete(self, context: Context, event: Any, handle_dict: dict[str, Any] | None) -> dict[str, Any]:
        handle, event = self._resume(context, event, handle_dict)
        status = event["status"]
        if status == "success":
            spec = self._spec()  # the templated inputs again: their carried columns go into the results
            if not handle.is_for(spec, self._scope(context)):
                raise InputValidationError(
                    "inputs", f"the inputs changed while job {handle.job_id} ran, so its results no longer "
                    "match them; clear the task to run it on the current inputs")
            return self._finished(context, spec, handle,
                                  self.client.finish(handle, spec=spec, destination=self._destination()))
        if status == "timeout":
            raise SutroTaskTimeoutError(handle.job_id, event.get("job_status") or "RUNNING", self._wait_seconds(),
                                        event.get("cancelled"))
        raise SutroJobError(f"gave up waiting for job {handle.job_id}: {event.get('message')}. The job may still be "
                            "running; a retry of this task reattaches to it")



class SutroBatchInferenceOperator(_SutroBatchOperator):
    """Run a Sutro batch inference job and write its results to parquet at ``output_uri``.

    :param model: model name, e.g. ``"qwen-3-4b"`` or ``"all-minilm-l6-v2"`` (templated).
    :param inputs: a list of strings, a DataFrame, a local .csv/.parquet/.txt path, an object-storage URI
        or ``ObjectStoragePath`` (read through Airflow), an http(s) URL of a csv/parquet file, or an upstream
        Sutro task's manifest (templated; ``XComArg`` works).
    :param output_uri: where the results parquet goes: a local path, any fsspec URI (templated; object storage
        with the worker's default credentials, e.g. the AWS environment), or an ``ObjectStoragePath`` /
        ``"s3://<conn_id>@bucket/key"`` whose Airflow connection supplies credentials and endpoint.
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
    :param carry_columns: input columns copied into the results (table inputs; default all, ``[]`` none).
    :param repair_rounds: follow-up jobs of only the rows that are not ``ok`` (``sutro_row_status``), merged
        back in input order; cut rows go again with twice the ``max_tokens``. 0 (default): none.
    :param max_failed_rows: rows that may stay not ``ok`` (a count, or a fraction below 1); past it the task
        fails without retries, after writing the results.
    :param asset_alias: the ``AssetAlias`` the results are published under (default for a templated
        ``output_uri``: ``sutro.<dag_id>.<task_id>``; a fixed ``output_uri`` is an ``Asset`` of its own).

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

    def build_spec(self, data: Any, **settings: Any) -> JobSpec:
        """The inference job for ``data``.

        Example::

            op.build_spec(["a", "b"]).request.num_rows    # 2
        """
        return JobSpec.for_inference(
            data, self.model, column=self.column, id_column=self.id_column, job_priority=self.job_priority,
            output_schema=self.output_schema, system_prompt=self.system_prompt,
            sampling_params=self.sampling_params, random_seed_per_input=self.random_seed_per_input,
            truncate_rows=self.truncate_rows, name=self.job_name, description=self.description, **settings,
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

    def build_spec(self, data: Any, **settings: Any) -> JobSpec:
        """The batch Function job for ``data``.

        Example::

            op.build_spec([{"text": "hi"}]).request.num_rows    # 1
        """
        return JobSpec.for_function(
            self.function_name, data, columns=self.columns, job_priority=self.job_priority, name=self.job_name,
            description=self.description, **settings,
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
        kwargs: dict[str, Any] = {}
        if self.confidence_scoring is not None:
            kwargs["confidence_scoring"] = self.confidence_scoring
        with SutroHook(sutro_conn_id=self.sutro_conn_id).get_conn() as client:
            result = client.run_function(self.function_name, self.input, **kwargs)
        payload = result.model_dump(mode="json")
        answer = payload.get("response") or payload.get("output")
        self.log.info("Function %s answered %r", self.function_name, answer)
        return payload
