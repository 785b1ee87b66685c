"""Lineage of the Sutro batch operators: the results artifact as an Airflow Asset, and OpenLineage events.

* **Assets.** A batch operator declares its results as an outlet: ``Asset("file:///data/out.parquet")`` (or
  the ``s3://...`` URI) when ``output_uri`` is fixed, an ``AssetAlias`` when it is templated (resolved at run
  time to the rendered URI). Each asset event's ``extra`` is the results manifest, so a DAG scheduled on the
  asset (or alias) reads the results with ``load_results(event.extra)``.
* **OpenLineage** (with ``apache-airflow-providers-openlineage``, the ``openlineage`` extra; without it these
  methods are never called and nothing is imported): input and output datasets named as OpenLineage names
  them, ``schema`` and ``outputStatistics`` facets on the artifact, an ``externalQuery`` run facet with the
  job id, and the ``sutro`` run facet (``facets.SutroRunFacet``) with the step's description.

Example::

    # downstream of a templated output_uri: schedule on the alias the operator resolves at run time
    @dag(schedule=[AssetAlias("sutro.embed_tickets.embed")])
    def use_embeddings():
        @task(inlets=[AssetAlias("sutro.embed_tickets.embed")])
        def read(*, inlet_events):
            manifest = inlet_events[AssetAlias("sutro.embed_tickets.embed")][-1].extra
            return load_results(manifest).height
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sutro_core import ResultsManifest
from sutro_core.lineage import GEN_AI_SYSTEM, INLINE_ROWS, StepLineage, asset_uri, dataset_name, local_path

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

_READABLE_SUFFIXES = (".parquet", ".csv", ".txt")


def default_alias_name(dag_id: str, task_id: str) -> str:
    """The ``AssetAlias`` a batch task with a templated ``output_uri`` resolves at run time.

    Example::

        default_alias_name("embed_tickets", "embed")   # 'sutro.embed_tickets.embed'
    """
    return f"sutro.{dag_id}.{task_id}"


def is_templated(value: Any) -> bool:
    """True for a string with Jinja in it (rendered only when the task runs).

    Example::

        is_templated("/data/{{ ds }}/out.parquet")   # True
    """
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _plain_uri(value: Any) -> str | None:
    """The URI of a path, URI string or ``ObjectStoragePath`` (without an Airflow connection id)."""
    if value is None:
        return None
    protocol = getattr(value, "protocol", None)
    if protocol is not None and hasattr(value, "path"):  # ObjectStoragePath
        return f"{protocol}://{value.path}" if protocol != "file" else os.fspath(value.path)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, str) and "://" in value:
        from sutro_core.storage import safe_uri

        return safe_uri(value.strip())  # "s3://conn_id@bucket/key" stands for the asset s3://bucket/key
    return value.strip() if isinstance(value, str) and value.strip() else None


def known_before_run(output_uri: Any) -> bool:
    """True when ``output_uri`` is a fixed path or URI (not templated, not an ``XComArg``).

    Example::

        known_before_run("s3://bucket/out.parquet")   # True
        known_before_run("/data/{{ ds }}.parquet")    # False
    """
    uri = _plain_uri(output_uri)
    return uri is not None and not is_templated(uri)


def results_outlet(output_uri: Any, alias: str | None) -> Any:
    """The outlet that stands for the results: an ``AssetAlias`` named ``alias`` when given, else the
    ``Asset`` of the fixed URI; None when neither is known (a templated URI needs an alias).

    Example::

        results_outlet("s3://bucket/out.parquet", None)    # Asset('s3://bucket/out.parquet')
    """
    from airflow.sdk import Asset, AssetAlias

    if alias:
        return AssetAlias(alias)
    return Asset(uri=asset_uri(_plain_uri(output_uri))) if known_before_run(output_uri) else None


def record_asset_event(context: Context, outlet: Any, manifest: ResultsManifest) -> None:
    """Attach the results to this task's asset event: through ``outlet`` (the alias resolves to the rendered
    URI) with the manifest as the event's ``extra``.

    Example::

        record_asset_event(context, self.sutro_outlet, manifest)
    """
    from airflow.sdk import Asset, AssetAlias

    events = context["outlet_events"]
    extra = manifest.to_dict()
    if isinstance(outlet, AssetAlias):
        events[outlet].add(Asset(uri=asset_uri(manifest.uri)), extra=extra)
    elif isinstance(outlet, Asset):
        events[outlet].extra.update(extra)


def input_uri_of(inputs: Any) -> str | None:
    """The file or URI a batch task read (rendered ``inputs``); None for inline rows.

    Example::

        input_uri_of({"uri": "/data/a.parquet", "rows": 3})   # '/data/a.parquet' (an upstream manifest)
        input_uri_of(["a", "b"])                               # None
    """
    if isinstance(inputs, Mapping) and "uri" in inputs and "rows" in inputs:
        return str(inputs["uri"])
    is_path = isinstance(inputs, (str, os.PathLike)) or hasattr(inputs, "protocol")
    uri = _plain_uri(inputs) if is_path else None
    if uri is None or is_templated(uri):
        return None
    if "://" in uri:
        return uri
    return local_path(uri) if uri.lower().endswith(_READABLE_SUFFIXES) else None


# ---- OpenLineage ------------------------------------------------------------------------------------


def _input_datasets(uri: str | None) -> list[Any]:
    from openlineage.client.event_v2 import InputDataset

    if uri is None:
        return []
    namespace, name = dataset_name(uri)
    return [InputDataset(namespace=namespace, name=name)]


def _output_dataset(uri: str, step: StepLineage | None) -> Any:
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset as stats, schema_dataset

    namespace, name = dataset_name(uri)
    out = step.output if step is not None else None
    if out is None:
        return OutputDataset(namespace=namespace, name=name)
    fields = [schema_dataset.SchemaDatasetFacetFields(name=c.name, type=c.type, ordinal_position=i)
              for i, c in enumerate(out.columns, start=1)]
    return OutputDataset(
        namespace=namespace, name=name,
        facets={"schema": schema_dataset.SchemaDatasetFacet(fields=fields)},
        outputFacets={"outputStatistics": stats.OutputStatisticsOutputDatasetFacet(
            rowCount=out.rows, size=out.bytes, fileCount=1)},
    )


def operator_lineage(*, input_uri: str | None, output_uri: str | None, step: StepLineage | None = None,
                     planned: Mapping[str, Any] | None = None) -> OperatorLineage:
    """The ``OperatorLineage`` of a batch task: its datasets and, once a job exists, the ``externalQuery``
    and ``sutro`` run facets (``planned``: the attributes known before the job, for START).

    Example::

        operator_lineage(input_uri="s3://b/in.parquet", output_uri=step.output.uri, step=step)
    """
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.facet_v2 import external_query_run

    from airflow_provider_sutro.facets import SutroRunFacet

    run_facets: dict[str, Any] = {}
    if step is not None:
        run_facets["externalQuery"] = external_query_run.ExternalQueryRunFacet(
            externalQueryId=step.job_id, source=GEN_AI_SYSTEM)
        run_facets["sutro"] = SutroRunFacet(attributes=step.attributes())
    elif planned:
        run_facets["sutro"] = SutroRunFacet(attributes=dict(planned))
    output = (step.output.uri if step is not None and step.output is not None else None) or output_uri
    return OperatorLineage(inputs=_input_datasets(input_uri),
                           outputs=[_output_dataset(output, step)] if output else [], run_facets=run_facets)


class SutroLineageMixin:
    """``get_openlineage_facets_on_start/complete/failure`` for the batch operators (they set
    ``sutro_lineage`` when the results are written, ``handle`` when the job starts).

    Example::

        class MyBatchOperator(SutroLineageMixin, SutroTaskMixin, BaseOperator): ...
    """

    inputs: Any
    output_uri: Any
    handle: Any
    sutro_lineage: StepLineage | None = None

    def _lineage_uris(self) -> tuple[str | None, str | None]:
        output = _plain_uri(self.output_uri)
        return input_uri_of(self.inputs), (None if output is None or is_templated(output) else output)

    def _planned_attributes(self) -> dict[str, Any]:
        model, function = getattr(self, "model", None), getattr(self, "function_name", None)
        input_uri, _ = self._lineage_uris()
        values = {"gen_ai.system": GEN_AI_SYSTEM, "gen_ai.provider.name": GEN_AI_SYSTEM,
                  "gen_ai.request.model": model, "sutro.function.name": function,
                  "sutro.input.uri": input_uri or INLINE_ROWS}
        return {k: v for k, v in values.items() if isinstance(v, str)}

    def get_openlineage_facets_on_start(self) -> OperatorLineage:
        """START: the input and output datasets (rendered), and the model or Function."""
        input_uri, output_uri = self._lineage_uris()
        planned = self._planned_attributes()
        return operator_lineage(input_uri=input_uri, output_uri=output_uri, planned=planned)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """COMPLETE: the datasets with the artifact's schema and statistics, the job id and the step."""
        input_uri, output_uri = self._lineage_uris()
        step = self.sutro_lineage
        if step is None:
            return self.get_openlineage_facets_on_start()
        return operator_lineage(input_uri=step.input.uri or input_uri, output_uri=output_uri, step=step)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        """FAIL: the datasets, and the job id when a job was started."""
        input_uri, output_uri = self._lineage_uris()
        handle = getattr(self, "handle", None)
        if handle is None:
            return self.get_openlineage_facets_on_start()
        step = StepLineage(job_id=handle.job_id, job_url=handle.url, status="FAILED",
                           reattached=handle.reattached,
                           model=None if handle.is_function else handle.model,
                           function=handle.model if handle.is_function else None,
                           cost_estimate_usd=handle.cost_estimate, input={"uri": input_uri})
        return operator_lineage(input_uri=input_uri, output_uri=output_uri, step=step)
