"""Markdown for UIs (job summaries, previews, job tables): what the adapters show, rendered once.

The adapters only decide where this goes (Dagster metadata, Prefect artifacts, Airflow logs).

Example:
    >>> format_usd(0.000234)
    '$0.00023'
    >>> print(markdown_table(["a", "b"], [[1, "x|y"]]))
    | a | b |
    |---|---|
    | 1 | x\\|y |
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from .models import Job, ResultsManifest

# Long cells (embedding vectors, long texts) are shortened so a preview stays readable.
MAX_LIST_ITEMS = 4
MAX_TEXT = 200


def format_usd(value: float | None) -> str:
    """A dollar amount readable at any size: cents for normal costs, two significant digits below a cent.

    Example:
        >>> format_usd(12.5), format_usd(0.00002), format_usd(0), format_usd(None)
        ('$12.50', '$0.00002', '$0.00', 'n/a')
    """
    if value is None:
        return "n/a"
    if value == 0 or abs(value) >= 0.01:
        return f"${value:,.2f}"
    digits = -math.floor(math.log10(abs(value))) + 1  # two significant digits
    return f"${value:.{digits}f}".rstrip("0")


def short_cell(value: Any, max_text: int = MAX_TEXT) -> Any:
    """A JSON-friendly preview cell: lists cut to a few items, long texts cut, NaN as None.

    Example:
        >>> short_cell([0.1, 0.2, 0.3, 0.4, 0.5])
        '[0.1, 0.2, 0.3, 0.4, … (5 items)]'
    """
    if isinstance(value, (list, tuple)):
        head = ", ".join(str(short_cell(v)) for v in value[:MAX_LIST_ITEMS])
        more = f", … ({len(value)} items)" if len(value) > MAX_LIST_ITEMS else ""
        return f"[{head}{more}]"
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, dict):
        return str(value)[:max_text]
    if isinstance(value, str) and len(value) > max_text:
        return value[:max_text] + "…"
    return value


def preview_rows(df: pl.DataFrame, n: int) -> list[dict[str, Any]]:
    """The first ``n`` rows as JSON-friendly dicts (``short_cell``).

    Example:
        >>> preview_rows(pl.DataFrame({"t": ["a"]}), 1)
        [{'t': 'a'}]
    """
    return [{k: short_cell(v) for k, v in row.items()} for row in df.head(n).iter_rows(named=True)]


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table; a pipe or newline inside a cell cannot break it.

    Example:
        >>> markdown_table(["a"], [[None]]).splitlines()[-1]
        '|  |'
    """

    def line(cells: Iterable[Any]) -> str:
        text = ("" if c is None else str(c).replace("|", "\\|").replace("\n", " ") for c in cells)
        return "| " + " | ".join(text) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(r) for r in rows)])


def preview_markdown(df: pl.DataFrame, rows: int = 5, max_text: int = 80) -> str:
    """A markdown table of the first ``rows`` rows, with long cells shortened.

    Example:
        >>> print(preview_markdown(pl.DataFrame({"a": [1]})))
        | a |
        |---|
        | 1 |
    """
    head = df.head(rows)
    return markdown_table(head.columns, ([short_cell(v, max_text) for v in row] for row in head.iter_rows()))


def link_for_uri(uri: str) -> str:
    """A clickable link for a results URI: fsspec URIs as they are, local paths as ``file://``.

    Example:
        >>> link_for_uri("/tmp/out.parquet")
        'file:///tmp/out.parquet'
    """
    return uri if "://" in uri else Path(uri).resolve().as_uri()


def job_link(job_id: str, url: str | None) -> str:
    """``[job_id](url)``, or the bare id without a URL.

    Example:
        >>> job_link("job-1", "http://h/jobs/job-1")
        '[job-1](http://h/jobs/job-1)'
    """
    return f"[{job_id}]({url})" if url else job_id


def job_summary_markdown(manifest: ResultsManifest, job: Job | None, job_url: str | None) -> str:
    """The markdown summary of a finished job and its results file (model, rows, tokens, cost, duration).

    Example:
        >>> print(job_summary_markdown(manifest, job, "https://app.sutro.sh/jobs/job-1"))  # doctest: +SKIP
    """
    na = "n/a"
    duration = job.duration_seconds if job else None
    rows = [
        ("Model / Function", f"`{manifest.model or (job.model if job else None) or na}`"),
        ("Status", job.status.value if job else "SUCCEEDED"),
        ("Rows", manifest.rows),
        ("Input tokens", na if manifest.input_tokens is None else manifest.input_tokens),
        ("Output tokens", na if manifest.output_tokens is None else manifest.output_tokens),
        ("Cost (USD)", format_usd(manifest.cost)),
        ("Duration", na if duration is None else f"{duration:.1f} s"),
        ("Results", f"`{manifest.uri}` ({manifest.bytes} bytes, {manifest.format})"),
        ("Columns", ", ".join(f"`{c}`" for c in manifest.columns) or na),
    ]
    if manifest.row_status_counts is not None:
        rows.insert(3, ("Rows by status", ", ".join(f"{s} {n}" for s, n in manifest.row_status_counts.items())))
    if len(manifest.job_ids) > 1:
        rows.insert(4, ("Jobs (main, then repairs)", ", ".join(f"`{j}`" for j in manifest.job_ids)))
    if manifest.rows_from_store is not None:
        rows.insert(3, ("Rows billed / reused", f"{manifest.rows_submitted} sent, {manifest.rows_from_store} "
                                                 "from the row store"))
    # No code spans in the heading: Prefect's renderer shows their backticks literally there.
    if manifest.job_id is None:
        return "### Sutro results (every row from the row store)\n\n" + markdown_table(["Field", "Value"], rows)
    return f"### Sutro job {job_link(manifest.job_id, job_url)}\n\n" + markdown_table(["Field", "Value"], rows)


def jobs_table_markdown(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """The table of a run's jobs (job id -> ``step, url, status, rows, cost, uri``) with a total cost line.

    Example:
        >>> print(jobs_table_markdown({"j1": {"step": "triage", "status": "SUCCEEDED", "cost": 0.00002}}))
        ### Sutro jobs of this flow run
        <BLANKLINE>
        | Step | Job | Status | Rows | Cost (USD) | Results |
        |---|---|---|---|---|---|
        | triage | j1 | SUCCEEDED |  | $0.00002 |  |
        <BLANKLINE>
        1 job, total cost $0.00002
    """
    total = sum(row.get("cost") or 0.0 for row in rows.values())
    table = markdown_table(
        ["Step", "Job", "Status", "Rows", "Cost (USD)", "Results"],
        ([row.get("step") or "", job_link(job_id, row.get("url")), row.get("status") or "", row.get("rows"),
          format_usd(row["cost"]) if row.get("cost") is not None else "",
          f"`{row['uri']}`" if row.get("uri") else ""] for job_id, row in rows.items()),
    )
    count = f"{len(rows)} job{'s' if len(rows) != 1 else ''}"
    return f"### Sutro jobs of this flow run\n\n{table}\n\n{count}, total cost {format_usd(total)}"
