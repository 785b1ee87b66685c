"""Turn a submit's `inputs` into validated rows and store them as the job's inputs parquet.

`inputs` is a list of strings (a model job), a list of objects (a Function job), or an http(s)
URL of a csv/parquet file read with `column_name` (and `id_column_name`, carried into results).

Example:
    >>> resolve_inputs(["a", "b"], None, None, None).rows
    ['a', 'b']
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .config import UrlInputsConfig
from .errors import ApiError, echo
from .functions import FunctionDef, FunctionInputError
from .inputs_url import fetch_url
from .store import private_dir


@dataclass
class ResolvedInputs:
    """Rows as text (Function rows: JSON objects), plus the carried id column when given."""

    rows: list[str]
    ids: list[Any] | None = None
    id_column: str | None = None

    def est_tokens(self) -> int:
        """A cheap token estimate for quotas (about 4 characters a token) that loads no tokenizer."""
        return sum(len(r) // 4 + 1 for r in self.rows)


def _bad(detail: str, code: str = "invalid_inputs") -> ApiError:
    return ApiError(400, code, detail)


def resolve_inputs(
    inputs: Any, function: FunctionDef | None, column_name: Any, id_column_name: Any,
    *, url_config: UrlInputsConfig | None = None, tmp_dir: Path | None = None, started: float | None = None,
) -> ResolvedInputs:  # fmt: skip
    """Validate `inputs` and return the rows; raises ApiError(400) naming the field and the fix.
    A URL is fetched per `url_config` (public addresses only by default; see inputs_url.py)."""
    if isinstance(inputs, str):
        if urlparse(inputs).scheme not in ("http", "https"):
            raise _bad(
                "field 'inputs' is a string but not an http(s) URL; pass a list of strings, a list of "
                "objects for a Function, or an http(s) URL of a csv/parquet file with column_name"
            )
        return _from_url(inputs, function, column_name, id_column_name, url_config or UrlInputsConfig(),
                         tmp_dir or Path(tempfile.gettempdir()), started)  # fmt: skip
    if not isinstance(inputs, list):
        raise _bad(
            f"field 'inputs' must be a list of strings (or of objects for a Function), got {type(inputs).__name__}"
        )
    if not inputs:
        raise _bad("field 'inputs' is empty; pass at least one row")
    if function is None:
        for i, row in enumerate(inputs):
            if not isinstance(row, str):
                raise _bad(f"inputs[{i}] is {type(row).__name__}; every row must be a string")
        return ResolvedInputs(rows=list(inputs))
    rows = []
    for i, obj in enumerate(inputs):
        try:
            rows.append(json.dumps(function.check_input(obj, where=f"inputs[{i}]")))
        except FunctionInputError as exc:
            raise _bad(str(exc), "invalid_function_input") from None
    return ResolvedInputs(rows=rows)


def _from_url(
    url: str, function: FunctionDef | None, column_name: Any, id_column_name: Any, cfg: UrlInputsConfig,
    tmp_dir: Path, started: float | None,
) -> ResolvedInputs:  # fmt: skip
    import polars as pl

    if function is None and not isinstance(column_name, str):
        raise _bad("field 'column_name' is required with a URL input: name the column that holds the rows")
    fetched = fetch_url(url, cfg, tmp_dir, started)
    try:
        # the final URL (after redirects) decides the format, and the file is read from disk
        path = urlparse(fetched.final_url).path.lower()
        ctype = fetched.content_type
        try:
            if path.endswith(".parquet") or "parquet" in ctype:
                df = pl.read_parquet(fetched.path)
            elif path.endswith(".csv") or "csv" in ctype:
                df = pl.read_csv(fetched.path, infer_schema_length=0)  # keep text as text
            else:
                raise _bad(f"inputs URL {echo(url)} must end in .csv or .parquet (or send a csv/parquet content-type)")
        except ApiError:
            raise
        except Exception as exc:  # polars raises many error types; their messages quote the file: never echo them
            raise _bad(f"inputs URL {echo(url)} is not a readable csv/parquet file ({type(exc).__name__})") from None
    finally:
        fetched.path.unlink(missing_ok=True)
    url = echo(url)
    if df.height == 0:
        raise _bad(f"inputs URL {url} has no rows")
    ids = None
    if id_column_name is not None:
        if id_column_name not in df.columns:
            raise _bad(f"field 'id_column_name': column {echo(id_column_name)} is not in the file; columns: {echo(df.columns)}")
        ids = df[id_column_name].to_list()
    if function is not None:
        # Function rows are objects: the file's columns by name, or the one named column as the
        # Function's single input
        records = df.to_dicts()
        if isinstance(column_name, str) and column_name in df.columns and len(function.inputs) == 1:
            records = [{function.inputs[0]: r[column_name]} for r in records]
        rows = []
        for i, obj in enumerate(records):
            try:
                rows.append(json.dumps(function.check_input(obj, where=f"row {i} of {url}")))
            except FunctionInputError as exc:
                raise _bad(str(exc), "invalid_function_input") from None
        return ResolvedInputs(rows=rows, ids=ids, id_column=id_column_name)
    if column_name not in df.columns:
        raise _bad(f"field 'column_name': column {echo(column_name)} is not in the file; columns: {echo(df.columns)}")
    values = df[column_name].to_list()
    for i, v in enumerate(values):
        if v is None:
            raise _bad(f"row {i} of column {column_name!r} is empty; every row needs text")
    return ResolvedInputs(rows=[str(v) for v in values], ids=ids, id_column=id_column_name)


def write_inputs(path: Path, inputs: ResolvedInputs) -> None:
    """Write the job's inputs parquet atomically (temp file + rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, Any] = {"inputs": pa.array(inputs.rows, pa.string())}
    if inputs.ids is not None and inputs.id_column:
        cols[inputs.id_column] = pa.array(inputs.ids)
    private_dir(path.parent)  # the job's folder: 0700 whatever the umask (it holds the client's data)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.table(cols), tmp, compression="zstd")
    os.replace(tmp, path)
