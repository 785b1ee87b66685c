"""Results read back as a DataFrame: an artifact (``load_results``) and a downloaded results file.

``get_job_results`` streams the results file to a temp file (as ``download_results`` does), then reads it
with ``read_results_file``: one reading path (benchmarks/README.md, "One reading path").

A remote artifact (``s3://`` ...) is read from a local temp copy (one streamed GET, flat memory, removed
after); a preview (``n_rows``) and the footer read only the byte ranges they need.

Example:
    >>> df = load_results(manifest)              # or load_results("s3://bucket/results.parquet")
    >>> preview = load_results(manifest, n_rows=10, unpack_json=True)
    >>> for batch in iter_results("s3://bucket/results.parquet", batch_rows=50_000): ...  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from .. import storage
from ..errors import InputValidationError
from ..models import ResultsManifest
from .shape import OUTPUTS, shape_results
from .targets import validate_results_file

#: Compressed bytes of row groups read per slice. Reading a file in one go maps (and so holds in RSS) every
#: compressed page until the frame is built: +38 MB at 1M rows over the frame itself. By slices the extra
#: is one slice's pages (benchmarks/results_download.py, results_reading.py).
READ_SLICE_BYTES = 16 << 20


def read_results_file(path: str | os.PathLike[str]) -> pl.DataFrame:
    """A downloaded parquet results file as a DataFrame, its validity checked first (``ResultsFormatError``).

    Read a few row groups at a time (no copy: the slices become the frame's chunks), so the peak is the
    frame plus one slice of the compressed file. The check reads the footer only.

    Example:
        >>> read_results_file("results.parquet").columns   # doctest: +SKIP
        ['outputs']
    """
    validate_results_file(Path(path), "parquet")
    slices = _row_slices(pq.read_metadata(path), READ_SLICE_BYTES)
    if len(slices) <= 1:
        return pl.read_parquet(path)
    scan = pl.scan_parquet(path)
    return pl.concat([scan.slice(first, rows).collect() for first, rows in slices], how="vertical", rechunk=False)


def _row_slices(meta: Any, target_bytes: int) -> list[tuple[int, int]]:
    """``(first row, rows)`` of runs of whole row groups of about ``target_bytes`` compressed each."""
    slices: list[tuple[int, int]] = []
    first = rows = size = 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        rows += group.num_rows
        size += sum(group.column(c).total_compressed_size for c in range(group.num_columns))
        if size >= target_bytes:
            slices.append((first, rows))
            first, rows, size = first + rows, 0, 0
    if rows:
        slices.append((first, rows))
    return slices


def _read_head(fh: Any, n_rows: int) -> pl.DataFrame:
    """The first ``n_rows`` rows of a parquet file, reading only the row groups they need."""
    # Buffered single-threaded reads: the default reads each column chunk of the first row group whole, in
    # parallel (~45 MB of RSS for a 5-row preview of a million-row artifact).
    rows = pq.ParquetFile(fh, buffer_size=1 << 16, pre_buffer=False).iter_batches(batch_size=max(n_rows, 1),
                                                                                 use_threads=False)
    batch = next(rows, None)
    if batch is None:
        return pl.DataFrame()
    return pl.DataFrame(pl.from_arrow(batch)).head(n_rows)


def _source(source: "ResultsManifest | dict[str, Any] | str | os.PathLike[str]") -> tuple[str, str]:
    if isinstance(source, ResultsManifest):
        return source.uri, source.format
    if isinstance(source, dict):
        return source["uri"], source.get("format", "parquet")
    uri = os.fspath(source) if isinstance(source, os.PathLike) else str(source)
    return uri, "csv" if uri.endswith(".csv") else "parquet"


def load_results(
    source: "ResultsManifest | dict[str, Any] | str | os.PathLike[str]",
    *,
    n_rows: int | None = None,
    unpack_json: bool = False,
    output_column: str = "outputs",
    storage_options: Mapping[str, Any] | None = None,
) -> pl.DataFrame:
    """Read a results artifact back as a polars DataFrame (from a manifest, its dict, or a path/URI).

    By default the file's columns come back as stored (``inputs``, ``outputs``, ...). ``unpack_json``
    shapes them as ``get_job_results`` does (JSON object outputs become columns, e.g. a Function's
    ``label`` and ``rationale``; other outputs are named ``output_column``). ``n_rows`` reads only
    the first rows (previews of huge results in bounded memory; parquet only). ``storage_options`` go to
    fsspec for a remote URI (without them: the filesystem's own credentials chain, e.g. the AWS
    environment).

    Example:
        >>> df = load_results(manifest)              # or load_results("s3://bucket/results.parquet")
        >>> preview = load_results(manifest, n_rows=10, unpack_json=True)
    """
    uri, fmt = _source(source)
    if fmt not in ("parquet", "csv"):
        raise InputValidationError("format", f"load_results reads parquet or csv artifacts, not {fmt!r}")
    if storage.is_remote(uri) and fmt == "parquet" and n_rows is not None:
        with storage.open_remote(uri, storage_options, field="source") as fh:  # range reads: footer + head
            df = _read_head(fh, n_rows)
    elif storage.is_remote(uri):
        with storage.local_copy(uri, storage_options, field="source") as path:
            df = _read_local(path, fmt, n_rows)
    else:
        df = _read_local(Path(uri.removeprefix("file://")), fmt, n_rows)
    if unpack_json and OUTPUTS in df.columns:
        df = shape_results(df, output_column=output_column, unpack_json=True)
    return df


def _read_local(path: Path, fmt: str, n_rows: int | None) -> pl.DataFrame:
    if fmt == "csv":
        return pl.read_csv(path, n_rows=n_rows)
    return _read_head(path, n_rows) if n_rows is not None else pl.read_parquet(path)


def iter_results(
    source: "ResultsManifest | dict[str, Any] | str | os.PathLike[str]",
    *,
    batch_rows: int = 65_536,
    columns: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Iterator[pl.DataFrame]:
    """A parquet artifact as DataFrames of up to ``batch_rows`` rows, in order, in memory flat in the file's
    size (one batch at a time; a remote file is streamed to a local temp file first, removed when the
    iteration ends). ``columns`` reads only those.

    Example:
        >>> total = sum(b.height for b in iter_results("s3://bucket/results.parquet"))  # doctest: +SKIP
    """
    uri, fmt = _source(source)
    if fmt != "parquet":
        raise InputValidationError("format", f"iter_results reads parquet artifacts, not {fmt!r}")
    if batch_rows < 1:
        raise InputValidationError("batch_rows", f"must be >= 1, got {batch_rows}")
    with storage.local_copy(uri, storage_options, field="source") as path:
        total = pq.read_metadata(path).num_rows
        scan = pl.scan_parquet(path)
        if columns:
            scan = scan.select(list(columns))
        # Slices of a scan read only the row groups they cover, straight into polars: as fast as pyarrow's
        # iter_batches and about a third of its memory (benchmarks/object_storage.py).
        for first in range(0, total, batch_rows):
            yield scan.slice(first, batch_rows).collect()
