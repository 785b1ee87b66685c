"""Materialization metadata for a Sutro results asset: what a user looks for in the Dagster UI.

Example:
    >>> meta = materialization_metadata(outcome, preview, input_rows=len(df))  # doctest: +SKIP
    >>> meta["sutro/job_url"]  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import polars as pl
from dagster import MetadataValue, TableColumn, TableSchema

from sutro_core import JobOutcome

PREVIEW_ROWS = 5
_CELL_CHARS = 80


def _cell(value: Any) -> str:
    """One preview cell: long vectors and texts are shortened so the table stays readable."""
    if isinstance(value, (list, tuple)):
        head = ", ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in value[:3])
        text = f"[{head}, ...] ({len(value)} values)" if len(value) > 3 else f"[{head}]"
    else:
        text = "" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"


def preview_markdown(df: pl.DataFrame, rows: int = PREVIEW_ROWS) -> str:
    """A markdown table of the first ``rows`` rows.

    Example:
        >>> print(preview_markdown(pl.DataFrame({"a": [1]})))
        | a |
        | --- |
        | 1 |
    """
    head = df.head(rows)
    lines = ["| " + " | ".join(head.columns) + " |", "| " + " | ".join("---" for _ in head.columns) + " |"]
    for row in head.iter_rows():
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def column_schema(df: pl.DataFrame) -> TableSchema:
    """Dagster's standard column schema for a polars DataFrame."""
    return TableSchema(columns=[TableColumn(name=name, type=str(dtype)) for name, dtype in df.schema.items()])


def materialization_metadata(outcome: JobOutcome, preview: pl.DataFrame, *, input_rows: int) -> dict[str, Any]:
    """Job id and link, model, rows, tokens, cost, duration, the artifact and a preview for the materialization.

    ``preview`` is the artifact's first rows (read alone, so a million-row result is never loaded).
    """
    job, handle, manifest = outcome.job, outcome.handle, outcome.manifest
    meta: dict[str, Any] = {
        "sutro/job_id": MetadataValue.text(job.job_id),
        "sutro/job_url": MetadataValue.url(handle.url),
        "sutro/model": MetadataValue.text(job.model or ""),
        "sutro/reattached": MetadataValue.bool(handle.reattached),
        "sutro/input_rows": MetadataValue.int(input_rows),
        "sutro/manifest": MetadataValue.json(manifest.to_dict()),
        "dagster/row_count": MetadataValue.int(manifest.rows),
        "dagster/column_schema": column_schema(preview),
        "preview": MetadataValue.md(preview_markdown(preview)),
    }
    optional = {
        "sutro/input_tokens": job.input_tokens,
        "sutro/output_tokens": job.output_tokens,
        "sutro/cost_usd": job.job_cost,
        "sutro/cost_estimate_usd": handle.cost_estimate,
        "sutro/duration_seconds": job.duration_seconds,
    }
    for name, value in optional.items():
        if value is None:
            continue
        meta[name] = MetadataValue.int(value) if isinstance(value, int) else MetadataValue.float(float(value))
    return meta
