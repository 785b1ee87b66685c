"""The results-completeness asset check: one result row per input row, and every expected field present.

The check runs inside the materializing step, as a streaming scan of the artifact (never loaded whole).

Example:
    >>> spec = results_check_spec(AssetKey("ticket_labels"))
    >>> result = evaluate_results(df, input_rows=100, expected_columns=["label"])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, MetadataValue

RESULTS_CHECK_NAME = "sutro_results_complete"


def results_check_spec(asset_key: AssetKey) -> AssetCheckSpec:
    """The spec of the completeness check attached to a Sutro results asset."""
    return AssetCheckSpec(
        name=RESULTS_CHECK_NAME,
        asset=asset_key,
        description="One result row per input row, and every field of the output schema present.",
    )


def evaluate_results(
    df: pl.DataFrame | pl.LazyFrame,
    *,
    input_rows: int,
    expected_columns: Sequence[str],
    input_columns: Sequence[str] | None = None,
    asset_key: AssetKey | None = None,
) -> AssetCheckResult:
    """Compare the results with the inputs; failing rows or fields make the check fail (severity ERROR).

    With no ``expected_columns`` but ``input_columns`` given, the results must add at least one column.

    Example:
        >>> evaluate_results(pl.DataFrame({"label": ["a"]}), input_rows=1, expected_columns=["label"]).passed
        True
    """
    columns, height, null_counts = _counts(df, expected_columns)
    missing = [c for c in expected_columns if c not in columns]
    rows_ok = height == input_rows
    passed = rows_ok and not missing
    problems = []
    if not rows_ok:
        problems.append(f"{height} result rows for {input_rows} input rows")
    if missing:
        problems.append(f"missing fields {missing}")
    if not expected_columns and input_columns is not None and set(columns) <= set(input_columns):
        passed = False
        problems.append("the results added no output columns to the input rows")
    return AssetCheckResult(
        check_name=RESULTS_CHECK_NAME,
        asset_key=asset_key,
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description="; ".join(problems) if problems else "every input row has a result with all fields",
        metadata={
            "input_rows": MetadataValue.int(input_rows),
            "result_rows": MetadataValue.int(height),
            "expected_fields": MetadataValue.json(list(expected_columns)),
            "missing_fields": MetadataValue.json(missing),
            "null_values": MetadataValue.json(null_counts),
        },
    )


def _counts(df: pl.DataFrame | pl.LazyFrame, expected: Sequence[str]) -> tuple[list[str], int, dict[str, int]]:
    """Columns, rows and null counts per expected column; for an artifact from its parquet footer's
    statistics (a million-row file is not read), else by a streaming scan."""
    manifest = getattr(df, "manifest", None)
    if manifest is not None and manifest.format == "parquet":
        import pyarrow.parquet as pq

        meta = pq.read_metadata(manifest.uri) if "://" not in manifest.uri else None
        if meta is not None:
            names = list(meta.schema.to_arrow_schema().names)
            nulls = {c: 0 for c in expected if c in names}
            known = True
            for g in range(meta.num_row_groups):
                group = meta.row_group(g)
                for i in range(group.num_columns):
                    col = group.column(i)
                    name = col.path_in_schema.split(".", 1)[0]
                    if name in nulls and col.path_in_schema == name:
                        stats = col.statistics
                        if stats is None or not stats.has_null_count:
                            known = False
                        else:
                            nulls[name] += stats.null_count
            if known and all(c in nulls or c not in names for c in expected):
                return names, meta.num_rows, nulls
    lazy = df.lazy()
    names = lazy.collect_schema().names()
    present = [c for c in expected if c in names]
    counts = lazy.select(pl.len().alias("__rows"), *[pl.col(c).null_count() for c in present]).collect(
        engine="streaming").row(0, named=True)
    return names, int(counts["__rows"]), {c: int(counts[c]) for c in present}
