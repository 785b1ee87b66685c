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
FINISH_REASON = "finish_reason"  # per row, from sutro-local's generative engines: "stop" or "length"


class ResultsShapeError(SutroError):
    """Results cannot be joined or unpacked as asked (row count mismatch, column clash)."""


#: Compressed bytes of row groups read per slice. Reading a file in one go maps (and so holds in RSS) every
#: compressed page until the frame is built: +38 MB at 1M rows over the frame itself. By slices the extra
#: is one slice's pages (benchmarks/results_download.py).
READ_SLICE_BYTES = 16 << 20


def read_parquet_file(path: str) -> pl.DataFrame:
    """A downloaded results file as a DataFrame, its validity checked first (``ResultsFormatError``).

    Read a few row groups at a time (no copy: the slices become the frame's chunks), so the peak is the
    frame plus one slice of the compressed file. The check reads the footer only.

    Example:
        >>> read_parquet_file("results.parquet").columns   # doctest: +SKIP
        ['outputs']
    """
    from pathlib import Path

    import pyarrow.parquet as pq

    from .artifacts import validate_results_file

    validate_results_file(Path(path), "parquet")
    meta = pq.read_metadata(path)
    runs = row_group_runs(meta, READ_SLICE_BYTES)
    if len(runs) <= 1:
        return pl.read_parquet(path)
    scan = pl.scan_parquet(path)
    return pl.concat([scan.slice(first, rows).collect() for _, _, first, rows in runs], how="vertical",
                     rechunk=False)


def row_group_runs(meta: Any, target_bytes: int) -> list[tuple[int, int, int, int]]:
    """Runs of whole row groups of about ``target_bytes`` compressed each, from a file's metadata:
    ``(first byte, end byte, first row, rows)`` per run.

    Example:
        >>> row_group_runs(pq.read_metadata("results.parquet"), 16 << 20)   # doctest: +SKIP
        [(4, 16801234, 0, 458752), (16801234, 38154321, 458752, 541248)]
    """
    runs: list[tuple[int, int, int, int]] = []
    lo = hi = first = rows = 0
    open_run = False
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        for c in range(group.num_columns):
            col = group.column(c)
            start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
            end = start + col.total_compressed_size
            lo, hi = (min(lo, start), max(hi, end)) if open_run else (start, end)
            open_run = True
        rows += group.num_rows
        if hi - lo >= target_bytes:
            runs.append((lo, hi, first, rows))
            first, rows, open_run = first + rows, 0, False
    if rows or open_run:
        runs.append((lo, hi, first, rows))
    return runs


def read_parquet_bytes(content: bytes) -> pl.DataFrame:
    """A results file's bytes as a DataFrame."""
    return pl.read_parquet(io.BytesIO(content))


def _decode_objects(column: pl.Series) -> pl.Series | None:
    """The column decoded as JSON objects (a struct Series), or None if it is not all JSON objects."""
    if column.dtype != pl.String:
        return None
    # A cheap sniff of the first values (no copy of the whole column: drop_nulls on it would copy it
    # when it has nulls); json_decode then checks every row.
    head = _first_values(column, 64)
    if not head or not all(v.lstrip().startswith("{") for v in head):
        return None
    try:
        decoded = column.str.json_decode(infer_schema_length=None)
    except (pl.exceptions.ComputeError, pl.exceptions.PolarsError):
        return None
    return decoded if isinstance(decoded.dtype, pl.Struct) else None


def _first_values(column: pl.Series, n: int) -> list[str]:
    """Up to ``n`` non-null values from the start of ``column``, looking at a growing window only."""
    window = n
    while True:
        head = column.head(window)
        values = [v for v in head.to_list() if v is not None][:n] if head.null_count() else head.to_list()
        if len(values) >= n or window >= column.len():
            return values
        window *= 16


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
    """Rename ``outputs`` to ``output_column``; unpack JSON object outputs into columns, as the SDK does.

    Every field of a JSON object output becomes a column. A reasoning output
    (``{"content": ..., "reasoning_content": ...}``) therefore gives ``content`` and
    ``reasoning_content`` columns; with ``unwrap_reasoning=True`` and object ``content`` the
    SDK's flattening applies: ``reasoning_content`` plus one column per field of ``content``.

    Example:
        >>> outs = ['{"content": {"label": "bug"}, "reasoning_content": "it crashes"}']
        >>> shape_results(pl.DataFrame({"outputs": outs}), unwrap_reasoning=True).columns
        ['reasoning_content', 'label']
    """
    if OUTPUTS not in df.columns:
        raise ResultsShapeError(f"the results have no {OUTPUTS!r} column (columns: {df.columns})")
    others = [c for c in df.columns if c != OUTPUTS]
    outputs = df[OUTPUTS]
    if unpack_json and FINISH_REASON in df.columns:  # rows cut by max_tokens hold incomplete JSON:
        # unpack the others; a cut row's fields are null and its finish_reason column says "length"
        outputs = df.select(pl.when(pl.col(FINISH_REASON).ne_missing("length")).then(pl.col(OUTPUTS))).to_series()
    decoded = _decode_objects(outputs) if unpack_json else None
    if decoded is None:
        return df.rename({OUTPUTS: output_column})
    fields = {f.name: f.dtype for f in decoded.dtype.fields}  # type: ignore[union-attr]
    if not fields:  # empty objects have no column to carry the rows: keep the raw output
        return df.rename({OUTPUTS: output_column})
    pieces = decoded.struct.unnest().get_columns()
    if unwrap_reasoning and set(fields) == {"content", REASONING} and isinstance(fields["content"], pl.Struct):
        content = decoded.struct.field("content")
        pieces = [decoded.struct.field(REASONING), *content.struct.unnest().get_columns()]
    new_names = [p.name for p in pieces]
    _check_clash(others, new_names, "unpacking the JSON outputs")
    return pl.concat([df.select(others), pl.DataFrame(pieces)], how="horizontal")


def join_original(results: pl.DataFrame, original: Any) -> Any:
    """Results placed beside the original rows (same order); pandas in, pandas out.

    A pandas frame keeps its index and its columns' dtypes (results are appended positionally,
    as the SDK does), so joining back on the index lines up.

    Example:
        >>> join_original(pl.DataFrame({"inference_result": ["r"]}), pd.DataFrame({"t": ["a"]}, index=[10]))
    """
    rows = len(original) if _is_pandas(original) else to_polars(original).height
    if rows != results.height:
        raise ResultsShapeError(
            f"the original data has {rows} rows but the results have {results.height}; "
            "pass the same DataFrame the job was submitted with"
        )
    columns = [str(c) for c in original.columns]
    _check_clash(columns, results.columns, "joining results to the original DataFrame")
    if _is_pandas(original):
        combined = original.copy()
        for name, values in results.to_pandas().items():
            combined[name] = values.array  # .array: positional, ignores the original's index
        return combined
    return pl.concat([to_polars(original), results], how="horizontal")
