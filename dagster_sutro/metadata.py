"""Materialization metadata for a Sutro results asset: what a user looks for in the Dagster UI.

The step's description (``sutro_core.lineage.StepLineage``) under the names the Airflow and Prefect
adapters use too (``gen_ai.request.model``, ``gen_ai.usage.input_tokens``, ``sutro.job.id``,
``sutro.cost.usd`` ...), and Dagster's standard keys: ``dagster/row_count``, ``dagster/column_schema``
(from the artifact's footer) and, from ``SutroParquetIOManager`` where it stores the file, ``dagster/uri``.

Example:
    >>> meta = materialization_metadata(outcome, preview, input_rows=len(df))  # doctest: +SKIP
    >>> meta["sutro.job.url"], meta["dagster/row_count"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
from dagster import MetadataValue, TableColumn, TableSchema

from sutro_core import JobOutcome
from sutro_core.lineage import describe_step
from sutro_core.markdown import preview_markdown

PREVIEW_ROWS = 5
#: Left out: the staged file's URI (the IO manager moves the file and says where, ``dagster/uri``) and the
#: input's (the rows come from the upstream asset, which Dagster's own lineage shows).
_NATIVE = ("sutro.output.uri", "sutro.input.uri")


def attribute_metadata(values: Mapping[str, Any]) -> dict[str, MetadataValue]:
    """Metadata of the fitting kind for ``gen_ai.*`` / ``sutro.*`` attributes (``*.url`` as links, lists and
    dicts as JSON); None left out.

    Example:
        >>> sorted(attribute_metadata({"sutro.job.id": "job-1", "sutro.output.rows": 3,
        ...                            "sutro.cost.usd": None}))
        ['sutro.job.id', 'sutro.output.rows']
    """

    def one(name: str, value: Any) -> MetadataValue:
        if name.endswith(".url"):
            return MetadataValue.url(value)
        if isinstance(value, bool):
            return MetadataValue.bool(value)
        if isinstance(value, (int, float)):
            return MetadataValue.int(value) if isinstance(value, int) else MetadataValue.float(float(value))
        return MetadataValue.text(value) if isinstance(value, str) else MetadataValue.json(value)

    return {k: one(k, v) for k, v in values.items() if v is not None}


def materialization_metadata(outcome: JobOutcome, preview: pl.DataFrame, *, input_rows: int) -> dict[str, Any]:
    """The step's description, row count, column schema and a preview, for the materialization.

    ``preview`` is the artifact's first rows (read alone, so a million-row result is never loaded).
    """
    step = describe_step(outcome)
    attributes = {k: v for k, v in step.attributes().items() if k not in _NATIVE}
    attributes["sutro.input.rows"] = input_rows
    columns = step.output.columns if step.output is not None else []
    return {
        **attribute_metadata(attributes),
        "dagster/row_count": MetadataValue.int(outcome.manifest.rows),
        "dagster/column_schema": TableSchema(
            columns=[TableColumn(name=c.name, type=c.type or "unknown") for c in columns]),
        "preview": MetadataValue.md(preview_markdown(preview)),
    }
