"""Read a results manifest back as a DataFrame, shaped like the client's ``get_job_results``.

The parquet file holds the service's raw columns (``outputs`` as JSON text for Functions and structured
outputs). ``load_results`` unpacks JSON object outputs into columns (``label``, ``rationale``, ...) with
the core's own shaping, so a Function's results read back as ``label, rationale, confidence_score``.

Example:
    >>> df = load_results(manifest)                    # doctest: +SKIP
    >>> df.columns                                     # doctest: +SKIP
    ['confidence_score', 'label', 'rationale']
"""

from __future__ import annotations

import os
from typing import Any, cast

import polars as pl
import pyarrow.parquet as pq
from sutro_core import ResultsManifest
from sutro_core import load_results as _core_load_results
from sutro_core.results import shape_results

OUTPUTS = "outputs"


def load_results(
    manifest: ResultsManifest | dict[str, Any] | str | os.PathLike[str],
    *,
    unpack_json: bool = True,
    output_column: str = OUTPUTS,
) -> pl.DataFrame:
    """The results a ``sutro_batch_job`` / ``download_results_to_parquet`` manifest points at.

    JSON object outputs become columns (``unpack_json=False`` keeps the raw text); other outputs stay
    in one column, ``outputs`` unless ``output_column`` names another.

    Example:
        >>> load_results(manifest).head()                   # doctest: +SKIP
        >>> load_results("s3://bucket/triage.parquet", unpack_json=False)   # doctest: +SKIP
    """
    df = _core_load_results(manifest)
    if OUTPUTS not in df.columns:
        return df
    return shape_results(df, output_column=output_column, unpack_json=unpack_json)


def head_results(
    manifest: ResultsManifest | dict[str, Any], n: int, *, unpack_json: bool = True
) -> pl.DataFrame:
    """The first ``n`` rows of a parquet results file, reading only its first row group (bounded memory).

    Used for preview artifacts, so a million-row result is never loaded just to show ten rows.

    Example:
        >>> head_results(manifest, 5).height            # doctest: +SKIP
        5
    """
    m = manifest if isinstance(manifest, ResultsManifest) else ResultsManifest.model_validate(manifest)
    if m.format != "parquet":
        return load_results(m, unpack_json=unpack_json).head(n)
    uri = m.uri.removeprefix("file://")
    if "://" in uri:
        import fsspec

        with fsspec.open(uri, "rb") as fh:
            batch = next(pq.ParquetFile(fh).iter_batches(batch_size=max(n, 1)), None)
    else:
        batch = next(pq.ParquetFile(uri).iter_batches(batch_size=max(n, 1)), None)
    if batch is None:
        return pl.DataFrame()
    df = cast(pl.DataFrame, pl.from_arrow(batch)).head(n)
    if OUTPUTS not in df.columns:
        return df
    return shape_results(df, output_column=OUTPUTS, unpack_json=unpack_json)
