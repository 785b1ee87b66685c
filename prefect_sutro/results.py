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
from typing import Any

import polars as pl
from sutro_core import ResultsManifest
from sutro_core import load_results as _core_load_results

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
    return _core_load_results(manifest, unpack_json=unpack_json, output_column=output_column)


def head_results(
    manifest: ResultsManifest | dict[str, Any], n: int, *, unpack_json: bool = True
) -> pl.DataFrame:
    """The first ``n`` rows of a results file, reading only what they need (bounded memory).

    Used for preview artifacts, so a million-row result is never loaded just to show ten rows.

    Example:
        >>> head_results(manifest, 5).height            # doctest: +SKIP
        5
    """
    return _core_load_results(manifest, n_rows=n, unpack_json=unpack_json, output_column=OUTPUTS)
