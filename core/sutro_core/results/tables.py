"""Tables an orchestrator hands over or keeps: input rows as one polars DataFrame, and the counts of a results file.

Example:
    >>> rows_to_frame(pl.LazyFrame({"text": ["a"]})).height
    1
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from .. import storage
from ..errors import InputValidationError

log = logging.getLogger(__name__)


def _top_module(value: Any) -> str:
    return type(value).__module__.split(".")[0]


def rows_to_frame(value: Any, field: str = "upstream") -> pl.DataFrame:
    """A polars DataFrame from a polars DataFrame/LazyFrame, a pandas DataFrame, or a parquet path (local,
    UPath, fsspec URI or http(s) URL); anything else raises ``InputValidationError`` naming ``field``.

    Example:
        >>> rows_to_frame(pl.DataFrame({"text": ["a"]})).height
        1
    """
    if isinstance(value, pl.LazyFrame):
        return value.collect()
    if isinstance(value, pl.DataFrame):
        return value
    if _top_module(value) == "pandas" and hasattr(value, "columns"):
        return pl.from_pandas(value)
    if isinstance(value, (str, os.PathLike)) or _top_module(value) == "upath":
        path = str(value)
        if not path.split("?", 1)[0].lower().endswith(".parquet"):
            raise InputValidationError(
                field, f"a path upstream must point at a .parquet file, got {path!r}; return a DataFrame instead")
        options = getattr(value, "storage_options", None) or None
        if storage.is_remote(path) and not path.lower().startswith(("http://", "https://")):
            # Through fsspec, like every other remote read: one streamed download, fsspec-style credentials.
            with storage.local_copy(path, options, field=field) as local:
                return pl.read_parquet(local)
        return pl.read_parquet(path, storage_options=dict(options) if options else None)
    raise InputValidationError(field, f"the upstream asset produced a {type(value).__name__}; "
                               "return a polars/pandas DataFrame or a parquet path")


def _footer_counts(uri: str, expected: Sequence[str], storage_options: Mapping[str, Any] | None = None
                   ) -> tuple[list[str], int, dict[str, int]] | None:
    """From a parquet file's footer statistics alone (a remote file: its footer's bytes only), or None when
    they do not tell every count."""
    import pyarrow.parquet as pq

    from .. import storage

    if storage.is_remote(uri):
        with storage.open_remote(uri, storage_options, field="uri", block_size=1 << 16) as fh:
            meta = pq.read_metadata(fh)
    else:
        meta = pq.read_metadata(uri.removeprefix("file://"))
    names = list(meta.schema.to_arrow_schema().names)
    nulls = {c: 0 for c in expected if c in names}
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for i in range(group.num_columns):
            col = group.column(i)
            if col.path_in_schema in nulls:  # top-level columns only; nested ones have dotted paths
                stats = col.statistics
                if stats is None or not stats.has_null_count:
                    return None
                nulls[col.path_in_schema] += stats.null_count
    return names, meta.num_rows, nulls


def table_counts(df: pl.DataFrame | pl.LazyFrame, expected: Sequence[str]) -> tuple[list[str], int, dict[str, int]]:
    """Columns, rows and null counts of the ``expected`` columns. A frame over a parquet artifact (one with
    a ``manifest``; local, or remote with the frame's ``storage_options`` if it has them) is answered from
    the footer (a million-row file is not read), else by a streaming scan.

    Example:
        >>> table_counts(pl.DataFrame({"a": [1, None]}), ["a"])
        (['a'], 2, {'a': 1})
    """
    manifest = getattr(df, "manifest", None)
    if manifest is not None and manifest.format == "parquet":
        try:
            counted = _footer_counts(manifest.uri, expected, getattr(df, "storage_options", None))
        except Exception as exc:  # noqa: BLE001 - fsspec, botocore and pyarrow raise their own: the scan below says
            log.debug("footer counts of %s unavailable: %s", manifest.uri, type(exc).__name__)
            counted = None
        if counted is not None:
            return counted
    lazy = df.lazy()
    names = lazy.collect_schema().names()
    present = [c for c in expected if c in names]
    counts = lazy.select(pl.len().alias("__rows"), *[pl.col(c).null_count() for c in present]).collect(
        engine="streaming").row(0, named=True)
    return names, int(counts["__rows"]), {c: int(counts[c]) for c in present}


def completeness(
    df: pl.DataFrame | pl.LazyFrame, input_rows: int, expected_columns: Sequence[str],
    input_columns: Sequence[str] | None = None,
) -> tuple[bool, list[str], int, list[str], dict[str, int]]:
    """Whether results are complete: one row per input row, every expected column present, and (with no
    expected columns but ``input_columns`` given) at least one column added to the inputs.

    Returns ``(passed, problems, result rows, missing columns, null counts)``.

    Example:
        >>> completeness(pl.DataFrame({"label": ["a"]}), 2, ["label"])[:2]
        (False, ['1 result rows for 2 input rows'])
    """
    columns, height, nulls = table_counts(df, expected_columns)
    missing = [c for c in expected_columns if c not in columns]
    problems = [f"{height} result rows for {input_rows} input rows"] if height != input_rows else []
    if missing:
        problems.append(f"missing fields {missing}")
    if not expected_columns and input_columns is not None and set(columns) <= set(input_columns):
        problems.append("the results added no output columns to the input rows")
    return not problems, problems, height, missing, nulls
