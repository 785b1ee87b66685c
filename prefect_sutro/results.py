"""Read a results manifest back as a DataFrame, with JSON object outputs unpacked into columns.

Example:
    >>> load_results(manifest).columns                 # doctest: +SKIP
    ['confidence_score', 'label', 'rationale']
"""

from __future__ import annotations

import os
from typing import Any

import polars as pl
from sutro_core import ResultsManifest
from sutro_core import load_results as _core_load_results


def load_results(
    manifest: ResultsManifest | dict[str, Any] | str | os.PathLike[str],
    *,
    unpack_json: bool = True,
    output_column: str = "outputs",
) -> pl.DataFrame:
    """The results a ``sutro_batch_job`` / ``download_results_to_parquet`` manifest points at: the core's
    ``load_results``, unpacking JSON object outputs by default (``unpack_json=False`` keeps the raw text).

    Example:
        >>> load_results("s3://bucket/triage.parquet", unpack_json=False)   # doctest: +SKIP
    """
    return _core_load_results(manifest, unpack_json=unpack_json, output_column=output_column)
