"""The one description of a Sutro step, which every adapter renders as its orchestrator's lineage.

A step turns an input dataset (a file, a URL, or inline rows) into a results artifact by a paid job.
``describe_step`` builds that description (``StepLineage``) from what a step already has: its handle (or
``JobOutcome``), the results manifest, the finished ``Job`` and the ``JobSpec``. ``attributes()`` is the
same description flat, under OpenTelemetry's ``gen_ai.*`` names where one exists
(``gen_ai.request.model``, ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``) and ``sutro.*``
for the rest. Airflow puts it in an OpenLineage run facet, Prefect in its asset and event payloads, Dagster
in the materialization's metadata.

Dataset names follow OpenLineage's naming (https://openlineage.io/docs/spec/naming): a local file is
namespace ``file`` with its absolute path as the name; ``s3://bucket/key`` is ``s3://bucket`` and ``key``.

Example:
    >>> outcome = client.run(spec, scope=("my-pipeline", "embed", "2026-12-01"))   # doctest: +SKIP
    >>> step = describe_step(outcome, spec=spec)                                     # doctest: +SKIP
    >>> step.attributes()["gen_ai.request.model"], step.output.rows                  # doctest: +SKIP
    ('all-minilm-l6-v2', 3)
    >>> dataset_name("s3://bucket/out/emb.parquet")
    ('s3://bucket', 'out/emb.parquet')
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from .models import Job, ResultsManifest
from .spec import JobHandle, JobOutcome

if TYPE_CHECKING:
    from .spec import JobSpec

log = logging.getLogger(__name__)

#: What the input of a step is called when its rows were sent inline (a list or a DataFrame).
INLINE_ROWS = "inline rows"
#: ``gen_ai.system`` / ``gen_ai.provider.name``: who serves the model.
GEN_AI_SYSTEM = "sutro"
#: The ``sutro.*`` attributes that hold row status counts (issue 24): ``sutro.rows.<status>``.
ROW_STATUS_PREFIX = "sutro.rows."


def _is_uri(value: str) -> bool:
    return "://" in value and not value.startswith("file://")


def dataset_name(uri: str) -> tuple[str, str]:
    """The OpenLineage ``(namespace, name)`` of a file or object: ``("file", "/abs/path")`` for a local path
    (or ``file://`` URI), ``("<scheme>://<authority>", "<path>")`` for any other URI.

    Example:
        >>> dataset_name("/data/out.parquet")
        ('file', '/data/out.parquet')
        >>> dataset_name("gs://bucket/a/b.parquet")
        ('gs://bucket', 'a/b.parquet')
    """
    if not _is_uri(uri):
        return "file", local_path(uri)
    parts = urlsplit(uri)
    name = parts.path.lstrip("/") if parts.netloc else parts.path
    if parts.query:
        name = f"{name}?{parts.query}"
    return f"{parts.scheme.lower()}://{parts.netloc}", name or "/"


def local_path(uri: str) -> str:
    """The absolute path of a local path or ``file://`` URI.

    Example:
        >>> local_path("file:///data/out.parquet")
        '/data/out.parquet'
    """
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return str(Path(path).expanduser().absolute())


def asset_uri(uri: str) -> str:
    """The URI an orchestrator's asset is known by: ``file:///abs/path`` for a local file, else ``uri``.

    Example:
        >>> asset_uri("/data/out.parquet"), asset_uri("s3://bucket/out.parquet")
        ('file:///data/out.parquet', 's3://bucket/out.parquet')
    """
    return uri if _is_uri(uri) else "file://" + local_path(uri)


class Column(BaseModel):
    """One column of a dataset: its name and (Arrow) type."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: str | None = None


class InputDataset(BaseModel):
    """What a step read: a file or URL (``uri``), or inline rows (``uri`` None), and how many rows.

    Example:
        >>> InputDataset(uri=None, rows=3).label
        'inline rows'
    """

    model_config = ConfigDict(frozen=True)

    uri: str | None = None
    rows: int | None = None

    @property
    def label(self) -> str:
        """The URI, or ``"inline rows"``."""
        return self.uri or INLINE_ROWS

    @property
    def namespace_and_name(self) -> tuple[str, str] | None:
        """The OpenLineage ``(namespace, name)``; None for inline rows."""
        return None if self.uri is None else dataset_name(self.uri)


class OutputDataset(BaseModel):
    """The results artifact a step wrote: where, in which format, its schema, rows and bytes.

    Example:
        >>> OutputDataset(uri="/data/o.parquet", rows=2, bytes=900).namespace_and_name
        ('file', '/data/o.parquet')
    """

    model_config = ConfigDict(frozen=True)

    uri: str
    format: str = "parquet"
    rows: int
    bytes: int
    columns: list[Column] = Field(default_factory=list)

    @property
    def namespace_and_name(self) -> tuple[str, str]:
        """The OpenLineage ``(namespace, name)``."""
        return dataset_name(self.uri)


class StepLineage(BaseModel):
    """One Sutro step, described once: input, output, model or Function, job, tokens, cost, reattached.

    ``output`` is None for a step that ended without results (a failed or cancelled job).
    ``row_status_counts`` (rows per status, once jobs report them) is optional.

    Example:
        >>> step = StepLineage(job_id="job-1", model="qwen-3-4b", input=InputDataset(rows=2))
        >>> step.attributes()["sutro.input.uri"], step.attributes()["gen_ai.request.model"]
        ('inline rows', 'qwen-3-4b')
    """

    model_config = ConfigDict(frozen=True)

    #: None when no job was needed (every row came from the row store).
    job_id: str | None
    job_url: str | None = None
    status: str = "SUCCEEDED"
    model: str | None = None
    function: str | None = None
    input: InputDataset = Field(default_factory=InputDataset)
    output: OutputDataset | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    cost_estimate_usd: float | None = None
    reattached: bool = False
    duration_seconds: float | None = None
    row_status_counts: dict[str, int] | None = None
    #: The jobs the step paid for (the main job, then repair jobs); an attribute only when there were repairs.
    job_ids: list[str] = Field(default_factory=list)
    #: With a row store: the distinct rows the job was sent (billed), and the rows reused from the store.
    rows_submitted: int | None = None
    rows_from_store: int | None = None

    def attributes(self) -> dict[str, Any]:
        """The description flat, OpenTelemetry-style: ``gen_ai.*`` where OTel names it, ``sutro.*`` else.
        Values are strings, numbers, booleans or lists of strings; unknown values are left out.

        Example:
            >>> sorted(StepLineage(job_id="job-1", function="ticket-triage").attributes())[:3]
            ['gen_ai.provider.name', 'gen_ai.system', 'sutro.function.name']
        """
        out = self.output
        values: dict[str, Any] = {
            "gen_ai.system": GEN_AI_SYSTEM,
            "gen_ai.provider.name": GEN_AI_SYSTEM,
            "gen_ai.request.model": self.model,
            "gen_ai.usage.input_tokens": self.input_tokens,
            "gen_ai.usage.output_tokens": self.output_tokens,
            "sutro.function.name": self.function,
            "sutro.job.id": self.job_id,
            "sutro.job.url": self.job_url,
            "sutro.job.status": self.status,
            "sutro.job.reattached": self.reattached,
            "sutro.job.ids": self.job_ids if len(self.job_ids) > 1 else None,
            "sutro.job.duration_s": self.duration_seconds,
            "sutro.cost.usd": self.cost_usd,
            "sutro.cost.estimate_usd": self.cost_estimate_usd,
            "sutro.input.uri": self.input.label,
            "sutro.input.rows": self.input.rows,
            "sutro.input.rows_submitted": self.rows_submitted,
            "sutro.input.rows_from_store": self.rows_from_store,
            "sutro.output.uri": out.uri if out else None,
            "sutro.output.format": out.format if out else None,
            "sutro.output.rows": out.rows if out else None,
            "sutro.output.bytes": out.bytes if out else None,
            "sutro.output.columns": [c.name for c in out.columns] if out else None,
        }
        for status, count in sorted((self.row_status_counts or {}).items()):
            values[f"{ROW_STATUS_PREFIX}{status}"] = count
        return {k: v for k, v in values.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``from_dict`` reads it back)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StepLineage":
        """The description ``to_dict`` wrote."""
        return cls.model_validate(dict(data))


def read_columns(manifest: ResultsManifest, storage_options: Mapping[str, Any] | None = None) -> list[Column]:
    """The artifact's columns with their types, from the parquet footer (or the CSV header); the manifest's
    column names without types when the file cannot be read (lineage never fails a step).

    Example:
        >>> [c.name for c in read_columns(manifest)]   # doctest: +SKIP
        ['id', 'inference_result']
    """
    fallback = [Column(name=c) for c in manifest.columns]
    if manifest.format not in ("parquet", "csv"):
        return fallback
    try:
        if manifest.format == "parquet":
            import pyarrow.parquet as pq

            if _is_uri(manifest.uri):
                from .storage import open_remote

                with open_remote(manifest.uri, storage_options, block_size=1 << 16) as fh:  # the footer's bytes
                    schema = pq.read_schema(fh)
            else:
                schema = pq.read_schema(local_path(manifest.uri))
            return [Column(name=f.name, type=str(f.type)) for f in schema]
        import polars as pl

        source = manifest.uri if _is_uri(manifest.uri) else local_path(manifest.uri)
        options = dict(storage_options or {}) or None
        frame_schema = pl.scan_csv(source, storage_options=options).collect_schema()
        return [Column(name=n, type=str(t)) for n, t in frame_schema.items()]
    except Exception as exc:  # noqa: BLE001 - fsspec, pyarrow and polars each raise their own errors
        log.warning("could not read the schema of %s for lineage: %s", manifest.uri, exc)
        return fallback


def _input_of(spec: "JobSpec | None", input_uri: str | os.PathLike[str] | None,
              job: Job | None) -> InputDataset:
    rows = spec.request.num_rows if spec is not None else None
    if rows is None and job is not None:
        rows = job.num_rows
    uri = os.fspath(input_uri) if input_uri is not None else None
    if uri is None and spec is not None:
        uri = spec.request.inputs.url  # an http(s) URL input; inline rows have none
    if uri is not None and not _is_uri(uri):
        uri = local_path(uri)
    return InputDataset(uri=uri, rows=rows)


def describe_step(
    source: JobOutcome | JobHandle | Mapping[str, Any],
    *,
    manifest: ResultsManifest | Mapping[str, Any] | None = None,
    job: Job | None = None,
    spec: "JobSpec | None" = None,
    input_uri: str | os.PathLike[str] | None = None,
    status: str | None = None,
    row_status_counts: Mapping[str, int] | None = None,
    read_schema: bool = True,
    storage_options: Mapping[str, Any] | None = None,
) -> StepLineage:
    """Describe a step from what it has: a ``JobOutcome`` (handle, job and manifest), or a handle with
    ``manifest`` (and ``job`` when the step has it). ``spec`` gives the input rows and a URL input;
    ``input_uri`` names the input file when the adapter read it (the spec only holds its rows).
    ``read_schema`` reads the artifact's column types from its footer (a small read).

    Example:
        >>> step = describe_step(handle, manifest=manifest,
        ...                      input_uri="s3://bucket/tickets.parquet")   # doctest: +SKIP
        >>> step.input.namespace_and_name                                   # doctest: +SKIP
        ('s3://bucket', 'tickets.parquet')
    """
    if isinstance(source, JobOutcome):
        handle, job, manifest = source.handle, job or source.job, manifest or source.manifest
    else:
        handle = JobHandle.from_dict(source)
    if manifest is not None and not isinstance(manifest, ResultsManifest):
        manifest = ResultsManifest.model_validate(dict(manifest))
    is_function = handle.is_function or (spec is not None and spec.request.is_function)
    name = handle.model or (spec.request.model if spec is not None else None) or (job.model if job else None)
    output = None
    if manifest is not None:
        columns = (read_columns(manifest, storage_options) if read_schema
                   else [Column(name=c) for c in manifest.columns])
        output = OutputDataset(uri=manifest.uri, format=manifest.format, rows=manifest.rows,
                               bytes=manifest.bytes, columns=columns)

    def first(*values: Any) -> Any:
        return next((v for v in values if v is not None), None)

    return StepLineage(
        job_id=handle.job_id,
        job_url=handle.url,
        status=status or (job.status.value if job is not None
                          else "SUCCEEDED" if manifest else handle.status),
        model=None if is_function else name,
        function=name if is_function else None,
        input=_input_of(spec, input_uri, job),
        output=output,
        input_tokens=first(job.input_tokens if job else None, manifest.input_tokens if manifest else None),
        output_tokens=first(job.output_tokens if job else None, manifest.output_tokens if manifest else None),
        cost_usd=first(job.job_cost if job else None, manifest.cost if manifest else None),
        cost_estimate_usd=first(handle.cost_estimate, job.cost_estimate if job else None),
        reattached=handle.reattached,
        duration_seconds=job.duration_seconds if job else None,
        row_status_counts=dict(row_status_counts) if row_status_counts else (
            manifest.row_status_counts if manifest is not None else None),
        job_ids=list(manifest.job_ids) if manifest is not None else [],
        rows_submitted=first(manifest.rows_submitted if manifest else None, handle.rows_submitted),
        rows_from_store=first(manifest.rows_from_store if manifest else None, handle.rows_from_store),
    )
