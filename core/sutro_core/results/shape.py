"""The results shape: outputs unpacked into columns, for a DataFrame (the SDK's) and for an artifact file.

``shape_results`` / ``join_original`` shape a results DataFrame as the official SDK does
(``get_job_results``, ``load_results(unpack_json=True)``): ``outputs`` renamed to ``output_column``, JSON
object outputs unpacked into columns, reasoning outputs flattened, results placed beside the original rows.

``shape_file`` writes the one results shape every adapter writes (carried input columns + unpacked outputs
+ server extras): a raw results file (``outputs`` as JSON text or values, plus the server's extra columns
such as ``confidence_score``) becomes a parquet artifact, read and written one row group at a time so memory
stays flat whatever the row count:

- the carried input columns (ids, the caller's own columns), row-aligned, first;
- the outputs: one column per field of the job's JSON schema (typed from the schema), or per field of the
  JSON objects a Function returns (typed from the first row group, then held fixed); outputs that are not
  JSON objects (free text, embedding vectors) stay in one column named ``output_column``;
- the server's extra columns (``inputs``, ``cumulative_logprobs``, ``confidence_score``, ``finish_reason``...);
- ``sutro.*`` footer metadata describing the job.

A row whose output is not valid JSON (e.g. cut at ``max_tokens``) gets nulls in the unpacked columns;
the server's ``finish_reason`` column, when present, says why.

Example:
    >>> df = pl.DataFrame({"outputs": ['{"label": "bug"}', '{"label": "billing"}']})
    >>> shape_results(df, output_column="inference_result", unpack_json=True).columns
    ['label']
    >>> shape_file(raw, out, carry=pl.DataFrame({"id": [1, 2]}), output_column="inference_result",
    ...            json_schema=None, metadata={"sutro.job_id": "job-1"})  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import SutroError
from ..inputs import _is_pandas, to_polars
from . import row_status

OUTPUTS = "outputs"
REASONING = "reasoning_content"
FINISH_REASON = "finish_reason"  # per row, from sutro-local's generative engines: "stop" or "length"


class ResultsShapeError(SutroError):
    """Results cannot be joined or unpacked as asked (row count mismatch, column clash)."""


# ---- a results DataFrame, shaped as the SDK does --------------------------------------------------------


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


# ---- the one artifact shape, written file to file ------------------------------------------------------

#: Rows read, shaped and written as one row group at a time. The parquet reader's and writer's transient
#: memory grows with it: a 1M-row artifact peaked 62 MB over its inputs at 65,536 rows, 32 MB at 8,192
#: (benchmarks/dagster_results.py), and reads back as fast.
BATCH_ROWS = 8_192
_PRIMITIVES = {"string": pl.String, "integer": pl.Int64, "number": pl.Float64, "boolean": pl.Boolean}


class _AsJsonText:
    """Marker: a field the schema leaves open (anyOf, objects without properties): kept as JSON text."""


def dtype_for(node: Any) -> Any:
    """The polars dtype of a JSON-schema node; ``_AsJsonText`` when the schema leaves its shape open."""
    if not isinstance(node, dict):
        return _AsJsonText
    kind = node.get("type")
    if isinstance(kind, list):  # ["string", "null"]
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind is None and "enum" in node and all(isinstance(v, str) for v in node["enum"]):
        kind = "string"
    if kind in _PRIMITIVES:
        return _PRIMITIVES[kind]
    if kind == "array":
        inner = dtype_for(node.get("items"))
        return _AsJsonText if inner is _AsJsonText else pl.List(inner)
    if kind == "object" and isinstance(node.get("properties"), dict) and node["properties"]:
        fields = {name: dtype_for(sub) for name, sub in node["properties"].items()}
        if any(d is _AsJsonText for d in fields.values()):
            return _AsJsonText
        return pl.Struct(fields)
    return _AsJsonText


def schema_fields(json_schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """Output field -> dtype (or ``_AsJsonText``) from a job's JSON schema; None without properties."""
    props = (json_schema or {}).get("properties")
    if not isinstance(props, dict) or not props:
        return None
    return {name: dtype_for(node) for name, node in props.items()}


def _loads(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _is_reasoning(obj: Any, fields: dict[str, Any] | None) -> bool:
    return (isinstance(obj, dict) and "content" in obj and set(obj) <= {"content", REASONING}
            and not (fields and "content" in fields))


class _Unpacker:
    """Turns one batch's ``outputs`` column into output columns of a fixed schema."""

    def __init__(self, fields: dict[str, Any] | None, output_column: str) -> None:
        self.fields = fields          # None until known (inferred from the first batch)
        self.output_column = output_column
        self.mode: str | None = None  # "fields", "reasoning" or "raw"

    def _decide(self, outputs: pl.Series) -> None:
        first = next((v for v in outputs.drop_nulls().head(50).to_list()), None) if outputs.dtype == pl.String else None
        obj = _loads(first)
        if _is_reasoning(obj, self.fields):
            self.mode = "reasoning"
        elif self.fields is not None:
            self.mode = "fields"
        elif isinstance(obj, dict):
            try:
                decoded = outputs.str.json_decode(infer_schema_length=None)
            except pl.exceptions.PolarsError:
                decoded = None
            if decoded is not None and isinstance(decoded.dtype, pl.Struct) and decoded.dtype.fields:
                self.fields = {f.name: (pl.String if f.dtype == pl.Null else f.dtype) for f in decoded.dtype.fields}
                self.mode = "fields"
            else:
                self.mode = "raw"
        else:
            self.mode = "raw"

    def arrow_columns(self, outputs: pa.Array | pa.ChunkedArray) -> list[tuple[str, Any]]:
        """(name, Arrow values) of one batch's output columns; raw outputs pass through without a copy."""
        if self.mode is None:
            self._decide(pl.Series(OUTPUTS, outputs))
        if self.mode == "raw":
            return [(self.output_column, outputs)]
        series = pl.Series(OUTPUTS, outputs)
        pieces = self._reasoning(series) if self.mode == "reasoning" else self._unpack(series, self.fields or {})
        table = pl.DataFrame(pieces).to_arrow()
        return list(zip(table.column_names, table.columns))

    def _unpack(self, outputs: pl.Series, fields: dict[str, Any]) -> list[pl.Series]:
        typed = {k: (pl.String if d is _AsJsonText else d) for k, d in fields.items()}
        if not any(d is _AsJsonText for d in fields.values()):
            try:  # the fast path: every row valid JSON of the expected shape
                decoded = outputs.str.json_decode(pl.Struct(typed))
                return [decoded.struct.field(k).alias(k) for k in typed]
            except pl.exceptions.PolarsError:
                pass
        rows = [_loads(v) for v in outputs.to_list()]
        return self._from_objects(rows, fields, typed)

    @staticmethod
    def _from_objects(rows: list[Any], fields: dict[str, Any], typed: dict[str, Any]) -> list[pl.Series]:
        out = []
        for name, dtype in fields.items():
            values = [r.get(name) if isinstance(r, dict) else None for r in rows]
            if dtype is _AsJsonText:
                values = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
            out.append(pl.Series(name, values, dtype=typed[name], strict=False))
        return out

    def _reasoning(self, outputs: pl.Series) -> list[pl.Series]:
        wrapped = [_loads(v) for v in outputs.to_list()]
        contents = [w.get("content") if isinstance(w, dict) else None for w in wrapped]
        reasoning = pl.Series(REASONING, [w.get(REASONING) if isinstance(w, dict) else None for w in wrapped],
                              dtype=pl.String)
        objects = [_loads(c) if isinstance(c, str) else c for c in contents]
        if self.fields is None and any(isinstance(o, dict) for o in objects):
            sample = next(o for o in objects if isinstance(o, dict))
            self.fields = {k: _AsJsonText if isinstance(v, (dict, list)) else pl.String for k, v in sample.items()}
        if self.fields:
            typed = {k: (pl.String if d is _AsJsonText else d) for k, d in self.fields.items()}
            return [*self._from_objects(objects, self.fields, typed), reasoning]
        text = [c if c is None or isinstance(c, str) else json.dumps(c) for c in contents]
        return [pl.Series(self.output_column, text, dtype=pl.String), reasoning]


def shape_file(
    src: Path,
    dst: Path,
    *,
    carry: pl.DataFrame | None,
    output_column: str,
    json_schema: dict[str, Any] | None,
    metadata: dict[str, str],
    job_id: str | None = None,
    batch_rows: int = BATCH_ROWS,
) -> dict[str, int]:
    """Write the shaped artifact of raw results file ``src`` to ``dst`` (a temp path), one batch at a time,
    with each row's ``sutro_row_status`` and ``sutro_job_id`` (``job_id``, unless ``src`` has the column: a
    merge of several jobs' rows); returns the rows per status.

    Raises ``ResultsShapeError`` when the carried columns do not line up with the results (row count)
    or would collide with an output column.
    """
    # Small buffered, single-threaded reads without pre-buffering: pre-buffering held the whole file, and
    # per-thread arenas and whole column chunks added ~100 MB of RSS on a million-row file.
    raw = pq.ParquetFile(src, buffer_size=1 << 16, pre_buffer=False)
    total = raw.metadata.num_rows
    if carry is not None and carry.height != total:
        raise ResultsShapeError(
            f"{carry.height} carried input rows but the job has {total} result rows; carry the columns of the "
            "same rows the job was submitted with (carry_columns=[] carries none)"
        )
    if OUTPUTS not in raw.schema_arrow.names:
        raise ResultsShapeError(f"the results have no {OUTPUTS!r} column (columns: {raw.schema_arrow.names})")
    unpacker = _Unpacker(schema_fields(json_schema), output_column)
    pool = pa.default_memory_pool()
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    offset = 0
    tally = dict.fromkeys(row_status.STATUSES, 0)
    try:
        for batch in raw.iter_batches(batch_size=batch_rows, use_threads=False):
            # Batches stay Arrow: a round trip through polars copies every string twice, into two allocators.
            columns: dict[str, pa.Array | pa.ChunkedArray] = {}
            if carry is not None:
                carried = carry.slice(offset, batch.num_rows).to_arrow()
                columns.update(zip(carried.column_names, carried.columns))
            if "inputs" in batch.schema.names:
                _add(columns, "inputs", batch.column("inputs"))
            for name, values in unpacker.arrow_columns(batch.column(OUTPUTS)):
                _add(columns, name, values)
            for name in batch.schema.names:
                if name not in (OUTPUTS, "inputs", row_status.ROW_JOB_ID):
                    _add(columns, name, batch.column(name))
            status = _statuses(batch, unpacker, json_schema)
            for name, count in row_status.counts(status).items():
                tally[name] += count
            _add(columns, row_status.ROW_STATUS, status.to_arrow())
            if row_status.ROW_JOB_ID in batch.schema.names:  # rows of several jobs (repairs, a row store)
                _add(columns, row_status.ROW_JOB_ID, batch.column(row_status.ROW_JOB_ID))
            else:
                _add(columns, row_status.ROW_JOB_ID, pa.array([job_id] * batch.num_rows, pa.large_string()))
            offset += batch.num_rows
            table = pa.table(columns)
            if writer is None:
                # Text as large_string (what polars writes); a column all null in the first batch is typed
                # as text too, so later batches fit.
                fields = [f.with_type(pa.large_string()) if _texty(f.type) else f for f in table.schema]
                schema = pa.schema(fields, metadata={**(table.schema.metadata or {}), **_encode(metadata)})
                writer = pq.ParquetWriter(dst, schema, compression="zstd")
            writer.write_table(table.cast(schema), row_group_size=batch_rows)
            del table, columns, batch
            # The default (mimalloc) pool keeps freed batches mapped: ~70 MB of RSS at 1M rows otherwise.
            pool.release_unused()
        if writer is None:  # no rows: still a valid, typed file
            table = _table(list(carry.get_columns()) if carry is not None else [])
            schema = table.schema.with_metadata(_encode(metadata))
            writer = pq.ParquetWriter(dst, schema, compression="zstd")
    finally:
        if writer is not None:
            writer.close()
    return tally


def _statuses(batch: pa.RecordBatch, unpacker: _Unpacker, json_schema: dict[str, Any] | None) -> pl.Series:
    """One batch's row statuses (see ``row_status``); a reasoning model's outputs are checked for presence
    and cuts only (their JSON sits inside the reasoning wrapper)."""
    names = batch.schema.names
    finish = pl.Series(batch.column(FINISH_REASON)) if FINISH_REASON in names else None
    reasoning = unpacker.mode == "reasoning"
    return row_status.statuses(pl.Series(batch.column(OUTPUTS)), finish, None if reasoning else json_schema,
                               expect_objects=unpacker.mode == "fields" and not reasoning)


def _texty(dtype: pa.DataType) -> bool:
    return pa.types.is_null(dtype) or pa.types.is_string(dtype) or pa.types.is_string_view(dtype)


def _add(columns: dict[str, Any], name: str, values: Any) -> None:
    if name in columns:
        raise ResultsShapeError(
            f"column {name!r} appears both among the carried input columns and the job's outputs; rename it in "
            "your data or choose carry_columns= without it. The job's results are kept: run the step again with "
            "the same rows and it reattaches to the same job (not billed again)"
        )
    columns[name] = values


def _table(pieces: list[pl.Series]) -> pa.Table:
    return pl.DataFrame(pieces).to_arrow()


def _encode(metadata: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in metadata.items()}
