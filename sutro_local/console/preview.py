"""The results preview of a job page: the first rows, with JSON outputs unpacked into columns.

Example:
    >>> unpack_row({"inputs": "hi", "outputs": '{"label": "bug", "confidence": 0.9}'})
    {'inputs': 'hi', 'outputs.label': 'bug', 'outputs.confidence': 0.9}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PREVIEW_ROWS = 20
MAX_CELL_CHARS = 160
MAX_LIST_ITEMS = 4


def _as_object(value: Any) -> dict[str, Any] | None:
    """A dict for a dict value or a JSON-object string; else None."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def unpack_row(row: dict[str, Any]) -> dict[str, Any]:
    """Columns whose value is a JSON object become one column per key (`outputs.label`), one level deep."""
    out: dict[str, Any] = {}
    for col, value in row.items():
        obj = _as_object(value)
        if obj is None:
            out[col] = value
        else:
            for k, v in obj.items():
                out[f"{col}.{k}"] = v
    return out


def cell_text(value: Any) -> str:
    """Short display text of a value: long lists (embeddings) summarised, long text cut."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        head = ", ".join(cell_text(v) for v in value[:MAX_LIST_ITEMS])
        more = f", … ({len(value):,} items)" if len(value) > MAX_LIST_ITEMS else ""
        return f"[{head}{more}]"
    if isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False)
    text = str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def preview(path: Path, limit: int = PREVIEW_ROWS) -> tuple[list[str], list[list[str]], int]:
    """(columns, rows of display text, total row count) of the first `limit` rows of a results file."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    total = pf.metadata.num_rows
    rows: list[dict[str, Any]] = []
    for batch in pf.iter_batches(batch_size=limit):
        rows = [unpack_row(r) for r in batch.to_pylist()[:limit]]
        break
    columns: list[str] = []
    for r in rows:  # union of keys, in first-seen order (rows may unpack to different keys)
        columns += [c for c in r if c not in columns]
    return columns, [[cell_text(r.get(c)) for c in columns] for r in rows], total
