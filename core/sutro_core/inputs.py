"""Normalise what users hand us (lists, DataFrames, files, URLs) into a submit payload.

All checks happen here, before any request: a bad input raises ``InputValidationError`` naming
the field and the fix, and nothing is sent.

Example:
    >>> rows = normalise_text_rows(["a", "b"])
    >>> rows.inline
    ['a', 'b']
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from .errors import InputValidationError

if TYPE_CHECKING:
    import pandas as pd

SUPPORTED_FILE_TYPES = (".csv", ".parquet", ".txt")
URL_FILE_TYPES = (".csv", ".parquet")


@dataclass(frozen=True)
class NormalisedInputs:
    """Either inline rows (strings or objects) or a remote file URL with its column names."""

    inline: list[Any] | None = None
    url: str | None = None
    column_name: str | None = None
    id_column_name: str | None = None

    @property
    def num_rows(self) -> int | None:
        """Row count for inline inputs; None for a URL (the server counts)."""
        return None if self.inline is None else len(self.inline)


def is_url(data: Any) -> bool:
    """True for an http(s) URL string."""
    return isinstance(data, str) and data.lower().startswith(("http://", "https://"))


def _is_pandas(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "pandas"


def to_polars(data: "pl.DataFrame | pd.DataFrame") -> pl.DataFrame:
    """A polars view of a polars or pandas DataFrame."""
    if isinstance(data, pl.DataFrame):
        return data
    return pl.from_pandas(data)


def _read_file(path: Path, field: str, suffix: str | None = None, shown: str | None = None
               ) -> pl.DataFrame | list[str]:
    suffix = suffix or path.suffix.lower()
    shown = shown or str(path)
    if suffix not in SUPPORTED_FILE_TYPES:
        raise InputValidationError(
            field, f"unsupported file type {suffix or '(none)'!r} for {shown}; use one of {SUPPORTED_FILE_TYPES}"
        )
    if not path.exists():
        raise InputValidationError(field, f"file {shown} does not exist")
    if suffix == ".txt":
        try:
            return path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise InputValidationError(field, f"{shown} is not UTF-8 text ({exc}); re-encode it as UTF-8") from exc
    if suffix == ".csv":
        try:
            return pl.read_csv(path, infer_schema_length=10_000)
        except (pl.exceptions.ComputeError, UnicodeDecodeError) as exc:
            raise InputValidationError(field, f"cannot read CSV {shown}: {exc}; is it UTF-8 CSV?") from exc
    return pl.read_parquet(path)


def read_input_file(data: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None,
                    field: str = "data") -> pl.DataFrame | list[str]:
    """Rows from a .csv/.parquet/.txt file: a local path, or an object-storage URI (``s3://bucket/x.parquet``,
    read through fsspec with ``storage_options``, else the filesystem's own credentials chain such as the
    AWS environment). A missing file or library raises ``InputValidationError`` naming ``field``.

    Example:
        >>> read_input_file("s3://bucket/tickets.parquet").height  # doctest: +SKIP
        45
    """
    from . import storage

    text = os.fspath(data)
    if not storage.is_remote(text):
        return _read_file(Path(text.removeprefix("file://")), field)
    name = storage.safe_uri(text)
    suffix = Path(name.rsplit("/", 1)[-1]).suffix.lower()
    if suffix not in SUPPORTED_FILE_TYPES:
        raise InputValidationError(
            field, f"unsupported file type {suffix or '(none)'!r} for {name}; use one of {SUPPORTED_FILE_TYPES}")
    try:
        with storage.local_copy(text, storage_options, field=field) as local:
            # The local copy keeps the suffix check's answer; messages name the URI, not the temp file.
            return _read_file(local, field, suffix=suffix, shown=name)
    except FileNotFoundError as exc:
        raise InputValidationError(field, f"{name} does not exist; check the upstream output URI") from exc


def _column_text(df: pl.DataFrame, column: str | Sequence[str] | None) -> list[str]:
    """Rows of text from one column, or columns and literal separators concatenated."""
    if column is None:
        if df.width == 1:
            column = df.columns[0]
        else:
            raise InputValidationError(
                "column", f"the data has {df.width} columns {df.columns}; pass column='<name>' (or a list)"
            )
    parts = [column] if isinstance(column, str) else list(column)
    if not parts:
        raise InputValidationError("column", "an empty column list was given; name at least one column")
    names = [p for p in parts if isinstance(p, str) and p in df.columns]
    if isinstance(column, str) and not names:
        raise InputValidationError("column", f"column {column!r} is not in the data; available: {df.columns}")
    if not names:
        raise InputValidationError(
            "column", f"none of {parts} is a column of the data; available: {df.columns}"
        )
    exprs = []
    for part in parts:
        if not isinstance(part, str):
            raise InputValidationError("column", f"column list items must be strings, got {type(part).__name__}")
        if part in df.columns:
            dtype = df.schema[part]
            if dtype != pl.String:
                raise InputValidationError(
                    "column", f"column {part!r} has dtype {dtype}, not text; cast it to string first"
                )
            nulls = df[part].is_null()
            if nulls.any():
                bad = nulls.arg_true().head(5).to_list()
                raise InputValidationError(
                    "column", f"column {part!r} has {int(nulls.sum())} null values (rows {bad}...); fill or drop them"
                )
            exprs.append(pl.col(part))
        else:
            exprs.append(pl.lit(part))
    return df.select(pl.concat_str(exprs).alias("_text"))["_text"].to_list()


def normalise_text_rows(
    data: Any, column: str | Sequence[str] | None = None, id_column: str | None = None
) -> NormalisedInputs:
    """Turn inference data into rows of text (or a URL reference).

    ``data``: list of str, pandas/polars DataFrame or Series, a .csv/.parquet/.txt path or object-storage
    URI (``s3://...``, read here), or an http(s) URL of a csv/parquet file (then ``column`` names the text
    column; the server fetches it).
    """
    if is_url(data):
        path = data.split("?", 1)[0].lower()
        if not path.endswith(URL_FILE_TYPES):
            raise InputValidationError("data", f"URL inputs must point at a .csv or .parquet file, got {data!r}")
        if not isinstance(column, str):
            raise InputValidationError("column", "URL inputs need column='<text column name>' (a single name)")
        return NormalisedInputs(url=data, column_name=column, id_column_name=id_column)
    if isinstance(data, (str, os.PathLike)):
        data = read_input_file(data, field="data")
    if isinstance(data, pl.Series) or (_is_pandas(data) and hasattr(data, "to_frame") and not hasattr(data, "columns")):
        series = data if isinstance(data, pl.Series) else pl.from_pandas(data)
        data = series.to_frame(series.name or "text")
        column = column or data.columns[0]
    if isinstance(data, pl.DataFrame) or _is_pandas(data):
        df = to_polars(data)
        if df.height == 0:
            raise InputValidationError("data", "the DataFrame has no rows; pass at least one row")
        return NormalisedInputs(inline=_column_text(df, column))
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        rows = list(data)
        if not rows:
            raise InputValidationError("data", "no rows given; pass at least one string")
        for i, row in enumerate(rows):
            if not isinstance(row, str):
                raise InputValidationError(
                    "data", f"row {i} is {type(row).__name__}, not str; every row must be a string"
                )
        return NormalisedInputs(inline=rows)
    raise InputValidationError(
        "data",
        f"unsupported data type {type(data).__name__}; pass a list of str, a pandas/polars DataFrame, "
        "a .csv/.parquet/.txt path or an http(s) URL",
    )


def normalise_object_rows(data: Any, columns: Sequence[str] | None = None) -> NormalisedInputs:
    """Turn Function data into rows of objects (or a URL reference).

    ``data``: list of dicts, pandas/polars DataFrame (each row becomes an object of its columns, or of
    ``columns`` when given), a .csv/.parquet path, or an http(s) URL of a csv/parquet file.
    """
    if is_url(data):
        path = data.split("?", 1)[0].lower()
        if not path.endswith(URL_FILE_TYPES):
            raise InputValidationError("data", f"URL inputs must point at a .csv or .parquet file, got {data!r}")
        return NormalisedInputs(url=data)
    if isinstance(data, (str, os.PathLike)):
        data = read_input_file(data, field="data")
        if isinstance(data, list):
            raise InputValidationError("data", "Function inputs need named fields: use .csv or .parquet, not .txt")
    if isinstance(data, pl.DataFrame) or _is_pandas(data):
        df = to_polars(data)
        if df.height == 0:
            raise InputValidationError("data", "the DataFrame has no rows; pass at least one row")
        if columns is not None:
            missing = [c for c in columns if c not in df.columns]
            if missing:
                raise InputValidationError("columns", f"columns {missing} are not in the data; available: {df.columns}")
            df = df.select(columns)
        return NormalisedInputs(inline=df.to_dicts())
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        rows = list(data)
        if not rows:
            raise InputValidationError("data", "no rows given; pass at least one object")
        for i, row in enumerate(rows):
            if hasattr(row, "model_dump"):
                rows[i] = row = row.model_dump(mode="json")
            if not isinstance(row, Mapping):
                raise InputValidationError(
                    "data", f"row {i} is {type(row).__name__}; Function rows must be dicts of the Function's inputs"
                )
            if columns is not None:
                rows[i] = {c: row.get(c) for c in columns}
        return NormalisedInputs(inline=[dict(r) for r in rows])
    raise InputValidationError(
        "data",
        f"unsupported data type {type(data).__name__}; pass a list of dicts, a pandas/polars DataFrame, "
        "a .csv/.parquet path or an http(s) URL",
    )
