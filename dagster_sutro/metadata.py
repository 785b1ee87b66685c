"""Materialization metadata for a Sutro results asset: what a user looks for in the Dagster UI.

Example:
    >>> meta = materialization_metadata(outcome, preview, input_rows=len(df))  # doctest: +SKIP
    >>> meta["sutro/job_url"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
from dagster import MetadataValue, TableColumn, TableSchema

from sutro_core import JobOutcome
from sutro_core.markdown import preview_markdown

PREVIEW_ROWS = 5


def sutro_metadata(values: Mapping[str, Any]) -> dict[str, MetadataValue]:
    """``sutro/<name>`` metadata of the fitting kind for plain values (``*_url`` as links); None left out.

    Example:
        >>> sorted(sutro_metadata({"job_id": "job-1", "rows": 3, "cost_usd": None}))
        ['sutro/job_id', 'sutro/rows']
    """

    def one(name: str, value: Any) -> MetadataValue:
        if name.endswith("_url"):
            return MetadataValue.url(value)
        if isinstance(value, bool):
            return MetadataValue.bool(value)
        if isinstance(value, (int, float)):
            return MetadataValue.int(value) if isinstance(value, int) else MetadataValue.float(float(value))
        return MetadataValue.text(value) if isinstance(value, str) else MetadataValue.json(value)

    return {f"sutro/{k}": one(k, v) for k, v in values.items() if v is not None}


def materialization_metadata(outcome: JobOutcome, preview: pl.DataFrame, *, input_rows: int) -> dict[str, Any]:
    """Job id and link, model, rows, tokens, cost, duration, the artifact and a preview for the materialization.

    ``preview`` is the artifact's first rows (read alone, so a million-row result is never loaded).
    """
    job, handle, manifest = outcome.job, outcome.handle, outcome.manifest
    return {
        **sutro_metadata({
            "job_id": job.job_id, "job_url": handle.url, "model": job.model or "", "reattached": handle.reattached,
            "input_rows": input_rows, "manifest": manifest.to_dict(), "input_tokens": job.input_tokens,
            "output_tokens": job.output_tokens, "cost_usd": job.job_cost, "cost_estimate_usd": handle.cost_estimate,
            "duration_seconds": job.duration_seconds, "row_status_counts": manifest.row_status_counts,
            "failed_rows": manifest.failed_rows if manifest.row_status_counts is not None else None,
            "job_ids": manifest.job_ids or None,
        }),
        "dagster/row_count": MetadataValue.int(manifest.rows),
        "dagster/column_schema": TableSchema(
            columns=[TableColumn(name=n, type=str(t)) for n, t in preview.schema.items()]),
        "preview": MetadataValue.md(preview_markdown(preview)),
    }
