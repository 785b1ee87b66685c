"""Shape a results table for users: output column naming, JSON unpacking, reasoning, joins.

Example:
    >>> df = pl.DataFrame({"outputs": ['{"label": "bug"}', '{"label": "billing"}']})
    >>> shape_results(df, output_column="inference_result", unpack_json=True).columns
    ['label']
"""

from __future__ import annotations

import io
from typing import Any

import polars as pl

from .errors import SutroError
from .inputs import _is_pandas, to_polars

OUTPUTS = "outputs"
REASONING = "reasoning_content"


class ResultsShapeError(SutroError):
    """Results cannot be joined or unpacked as asked (row count mismatch, column clash)."""


def read_parquet_bytes(content: bytes) -> pl.DataFrame:
    """A results file's bytes as a DataFrame."""
    return pl.read_parquet(io.BytesIO(content))


def _decode_objects(column: pl.Series) -> pl.Series | None:
    """The column decoded as JSON objects (a struct Series), or None if it is not all JSON objects."""
    if column.dtype != pl.String:
        return None
    non_null = column.drop_nulls()
    if non_null.len() == 0 or not non_null.str.strip_chars_start().str.starts_with("{").all():
        return None
    try:
        decoded = column.str.json_decode(infer_schema_length=None)
    except (pl.exceptions.ComputeError, pl.exceptions.PolarsError):
        return None
    return decoded if isinstance(decoded.dtype, pl.Struct) else None


def _check_clash(existing: list[str], new: list[str], what: str) -> None:
    clash = sorted(set(existing) & set(new))
    if clash:
        raise ResultsShapeError(
            f"{what} would overwrite columns {clash}; rename them in your data or pass a different "
            "output_column / unpack_json=False"
        )


def shape_results(
    df: pl.DataFrame,
    *,
    output_column: str = "inference_result",
    unpack_json: bool = True,
    unwrap_reasoning: bool = False,
) -> pl.DataFrame:
    """Rename ``outputs`` to ``output_column``; unpack JSON object outputs into columns.

    Reasoning outputs (``{"content", "reasoning_content"}``) keep a ``reasoning_content`` column
    unless ``unwrap_reasoning`` drops it; their ``content`` is unpacked like any other output.
    """
    if OUTPUTS not in df.columns:
        raise ResultsShapeError(f"the results have no {OUTPUTS!r} column (columns: {df.columns})")
    others = [c for c in df.columns if c != OUTPUTS]
    outputs = df[OUTPUTS]
    if not unpack_json:
        return df.rename({OUTPUTS: output_column})
    decoded = _decode_objects(outputs)
    if decoded is None:
        return df.rename({OUTPUTS: output_column})
    fields = [f.name for f in decoded.dtype.fields]  # type: ignore[union-attr]
    pieces: list[pl.Series] = []
    if set(fields) <= {"content", REASONING} and "content" in fields:
        content = decoded.struct.field("content")
        if content.dtype == pl.String:
            inner = _decode_objects(content)
            content = inner if inner is not None else content
        if isinstance(content.dtype, pl.Struct):
            pieces.extend(content.struct.unnest().get_columns())
        else:
            pieces.append(content.alias(output_column))
        if REASONING in fields and not unwrap_reasoning:
            pieces.append(decoded.struct.field(REASONING).alias(REASONING))
    else:
        pieces.extend(decoded.struct.unnest().get_columns())
    new_names = [p.name for p in pieces]
    _check_clash(others, new_names, "unpacking the JSON outputs")
    return pl.concat([df.select(others), pl.DataFrame(pieces)], how="horizontal")


def join_original(results: pl.DataFrame, original: Any) -> Any:
    """Results placed beside the original rows (same order); pandas in, pandas out."""
    original_pl = to_polars(original)
    if original_pl.height != results.height:
        raise ResultsShapeError(
            f"the original data has {original_pl.height} rows but the results have {results.height}; "
            "pass the same DataFrame the job was submitted with"
        )
    _check_clash(original_pl.columns, results.columns, "joining results to the original DataFrame")
    joined = pl.concat([original_pl, results], how="horizontal")
    return joined.to_pandas() if _is_pandas(original) else joined
