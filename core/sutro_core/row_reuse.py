"""Row reuse in a step (``JobSpec(row_store=...)``): send only the rows the store has no ``ok`` result for,
each distinct row once, and put the step's rows back together in input order.

- ``plan``: each input row's key (``row_store.row_keys``) and the keys the step's job is sent. The first try
  of a step looks the keys up and records the missing ones under the step's idempotency key
  (``RowStore.claim_submission``) before anything is submitted; every later try reads that record, so it
  sends the same rows and reattaches to the same job even when the store has gained rows since.
- ``assemble``: the step's distinct rows, in first-seen order: the job's results for the rows it was sent,
  the stored results for the others (a stored row keeps the ``sutro_job_id`` of the job that paid for it; a
  stored row pruned meanwhile is ``missing``, which a repair round sends again).
- ``remember``: the ``ok`` rows this step paid for, appended to the store (rows stored meanwhile by
  another step are not written twice).
- ``fan_out``: the distinct rows back to one row per input row.

Example:
    >>> spec = JobSpec.for_inference(tickets, "qwen-3-4b", row_store="s3://bucket/rows")  # doctest: +SKIP
    >>> client.run(spec, scope=("daily", "triage", "2026-12-05")).manifest.rows_from_store  # doctest: +SKIP
    9000
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import polars as pl

from .errors import InputValidationError
from .results import row_status
from .results.shape import OUTPUTS
from .row_store import KEY, RowStore, request_identity, row_keys

if TYPE_CHECKING:
    from .request import BatchJobRequest
    from .spec import JobSpec


@dataclass(frozen=True)
class RowPlan:
    """Which rows a step sends: ``keys`` (one per input row) and ``submitted`` (the distinct keys its job is
    sent, in the order sent)."""

    keys: list[str]
    submitted: list[str]

    @cached_property
    def distinct(self) -> list[str]:
        """The distinct keys in first-seen order."""
        return list(dict.fromkeys(self.keys))

    @cached_property
    def first_rows(self) -> dict[str, int]:
        """Each distinct key's first input row."""
        first: dict[str, int] = {}
        for i, key in enumerate(self.keys):
            first.setdefault(key, i)
        return first

    def request(self, request: "BatchJobRequest") -> "BatchJobRequest":
        """``request`` with only the rows to send (one per distinct key not stored)."""
        rows = request.inputs.inline
        assert rows is not None
        first = self.first_rows
        sent = [rows[first[key]] for key in self.submitted]
        return dataclasses.replace(request, inputs=dataclasses.replace(request.inputs, inline=sent))


def open_store(spec: "JobSpec") -> RowStore:
    """The spec's row store (``row_store`` with ``row_store_options``)."""
    assert spec.row_store is not None
    return RowStore(spec.row_store, spec.row_store_options)


def plan(spec: "JobSpec", step_key: str) -> RowPlan:
    """The step's rows and what its job is sent: the record under ``step_key`` if a try wrote one, else the
    distinct rows without a stored result, recorded now (before anything is submitted)."""
    rows = spec.request.inputs.inline
    if rows is None:
        raise InputValidationError(
            "row_store", "row reuse needs the rows themselves (a DataFrame, a list or a .csv/.parquet file), "
            "not a URL the server reads")
    keys = row_keys(request_identity(spec.request), rows)
    store = open_store(spec)
    recorded = store.submission(step_key)
    if recorded is None:
        distinct = pl.Series(KEY, keys, dtype=pl.String).unique(maintain_order=True)
        stored = store.lookup(distinct, keys_only=True)[KEY]
        recorded = store.claim_submission(step_key, distinct.filter(~distinct.is_in(stored.implode())).to_list())
    unknown = set(recorded).difference(keys)
    if unknown:
        raise InputValidationError(
            "idempotency_key", f"the row store's record for key {step_key} lists {len(unknown)} rows this step "
            "does not have: the key was used for other inputs. Give each step's inputs their own key (or use "
            "scope=, which derives it from the inputs)")
    return RowPlan(keys=keys, submitted=recorded)


def assemble(row_plan: RowPlan, sent: pl.DataFrame | None, store: RowStore, job_id: str | None) -> pl.DataFrame:
    """The distinct rows in first-seen order, one raw results row each (``KEY``, the job's result columns,
    ``sutro_job_id``): ``sent`` (the job's raw results, in the order ``submitted``) for the rows it was sent,
    the store's rows for the others; a row in neither has a null output (``missing``)."""
    distinct = pl.DataFrame({KEY: row_plan.distinct}, schema={KEY: pl.String})
    parts = []
    if sent is not None:
        if sent.height != len(row_plan.submitted):
            raise InputValidationError(
                "row_store", f"job {job_id} returned {sent.height} rows for the {len(row_plan.submitted)} it was "
                "sent; its results cannot be matched to the step's rows")
        parts.append(sent.drop("inputs", strict=False).with_columns(
            pl.Series(KEY, row_plan.submitted, dtype=pl.String), pl.lit(job_id).alias(row_status.ROW_JOB_ID)))
    submitted = set(row_plan.submitted)
    others = [k for k in row_plan.distinct if k not in submitted]
    if others:
        parts.append(store.lookup(others))
    if not parts:
        return distinct.with_columns(pl.lit(None, pl.String).alias(OUTPUTS), pl.lit(None, pl.String).alias(
            row_status.ROW_JOB_ID))
    found = pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]
    if OUTPUTS not in found.columns:
        found = found.with_columns(pl.lit(None, pl.String).alias(OUTPUTS))
    return distinct.join(found, on=KEY, how="left", maintain_order="left")


def remember(store: RowStore, table: pl.DataFrame, status: pl.Series, paid_by: set[str]) -> int:
    """Append the ``ok`` rows of ``table`` (distinct rows with ``KEY``) that jobs in ``paid_by`` produced and
    the store does not hold yet; returns how many were written."""
    new = table.filter(status.eq(row_status.OK) & table[row_status.ROW_JOB_ID].is_in(list(paid_by)))
    if new.is_empty():
        return 0
    held = set(store.lookup(new[KEY], keys_only=True)[KEY].to_list())
    new = new.filter(~pl.col(KEY).is_in(list(held)))
    store.append(new)
    return new.height


def fan_out(row_plan: RowPlan, table: pl.DataFrame, rows: list[Any] | None, include_inputs: bool) -> pl.DataFrame:
    """One row per input row (in input order) from the distinct rows' ``table``, without ``KEY``; with
    ``include_inputs``, an ``inputs`` column of the rows as sent (Function rows as JSON)."""
    full = (pl.DataFrame({KEY: row_plan.keys}, schema={KEY: pl.String})
            .join(table, on=KEY, how="left", maintain_order="left").drop(KEY))
    if include_inputs and rows is not None:
        texts = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
        full = full.insert_column(0, pl.Series("inputs", texts, dtype=pl.String))
    return full
