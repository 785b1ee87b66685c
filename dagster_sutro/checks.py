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

from sutro_core.results.row_status import ROW_STATUS
from sutro_core.results.tables import completeness

RESULTS_CHECK_NAME = "sutro_results_complete"


def results_check_spec(asset_key: AssetKey) -> AssetCheckSpec:
    """The spec of the completeness check attached to a Sutro results asset."""
    return AssetCheckSpec(name=RESULTS_CHECK_NAME, asset=asset_key,
                          description="One result row per input row, and every field of the output schema present.")


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
    passed, problems, height, missing, nulls = completeness(df, input_rows, expected_columns, input_columns)
    statuses = _row_statuses(df)
    not_ok = {s: n for s, n in statuses.items() if s != "ok" and n}
    severity = AssetCheckSeverity.ERROR
    if passed and not_ok:
        # Within max_failed_rows (past it the step itself fails): visible as a warning, not hidden.
        passed, severity = False, AssetCheckSeverity.WARN
        problems = [f"{sum(not_ok.values())} rows are not ok ({not_ok}); see sutro_row_status"]
    return AssetCheckResult(
        check_name=RESULTS_CHECK_NAME,
        asset_key=asset_key,
        passed=passed,
        severity=severity,
        description="; ".join(problems) if problems else "every input row has a result with all fields",
        metadata={
            "input_rows": MetadataValue.int(input_rows),
            "result_rows": MetadataValue.int(height),
            "expected_fields": MetadataValue.json(list(expected_columns)),
            "missing_fields": MetadataValue.json(missing),
            "null_values": MetadataValue.json(nulls),
            "row_status_counts": MetadataValue.json(statuses),
        },
    )


def _row_statuses(df: pl.DataFrame | pl.LazyFrame) -> dict[str, int]:
    """Rows per ``sutro_row_status`` ({} for results without the column)."""
    names = df.collect_schema().names() if isinstance(df, pl.LazyFrame) else df.columns
    if ROW_STATUS not in names:
        return {}
    frame = df.lazy().group_by(ROW_STATUS).len().collect()
    return dict(zip(frame[ROW_STATUS].to_list(), frame["len"].to_list()))
