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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from .errors import InputValidationError
from .results import row_status
from .results.shape import OUTPUTS
from .row_store import KEY, RowStore, request_identity, row_keys

if TYPE_CHECKING:
    from .request import BatchJobRequest
    from .spec import JobSpec


#: Rows keyed at a time: the keys become a String Series batch by batch, never one Python list (a Python str
#: costs ~80 bytes, a key in the Series 48).
_KEY_BATCH = 65_536


def _keys_of(identity: dict[str, Any], rows: list[Any]) -> pl.Series:
    """``row_keys`` of ``rows`` as a String Series named ``KEY``."""
    batches = [pl.Series(KEY, row_keys(identity, rows[i:i + _KEY_BATCH]), dtype=pl.String)
               for i in range(0, len(rows), _KEY_BATCH)]
    return pl.concat(batches, rechunk=True) if batches else pl.Series(KEY, [], dtype=pl.String)


@dataclass(frozen=True)
class RowPlan:
    """Which rows a step sends: ``keys`` (one per input row) and ``submitted`` (the distinct keys its job is
    sent, in the order sent), String Series named ``KEY``."""

    keys: pl.Series
    submitted: pl.Series

    @cached_property
    def first_rows(self) -> pl.Series:
        """Each distinct key's first input row, in first-seen order."""
        return self.keys.is_first_distinct().arg_true()

    @property
    def distinct(self) -> pl.Series:
        """The distinct keys in first-seen order (not cached: it shares the keys' strings, but not for free)."""
        return self.keys.gather(self.first_rows)

    def from_store(self) -> int:
        """How many input rows are not sent (their key was stored when the rows to send were recorded)."""
        return self.keys.len() - int(self.keys.is_in(self.submitted.implode()).sum())

    def request(self, request: "BatchJobRequest") -> "BatchJobRequest":
        """``request`` with only the rows to send (one per distinct key not stored)."""
        rows = request.inputs.inline
        assert rows is not None
        first = pl.DataFrame({KEY: self.distinct, "row": self.first_rows})
        at = self.submitted.to_frame().join(first, on=KEY, how="left", maintain_order="left")["row"]
        sent = [rows[i] for i in at]
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
    keys = _keys_of(request_identity(spec.request), rows)
    store = open_store(spec)
    recorded = store.submission(step_key)
    if recorded is None:
        distinct = keys.unique(maintain_order=True)
        stored = store.lookup(distinct, keys_only=True)[KEY]
        recorded = store.claim_submission(step_key, distinct.filter(~distinct.is_in(stored.implode())))
    unknown = recorded.filter(~recorded.is_in(keys.implode())).n_unique()
    if unknown:
        raise InputValidationError(
            "idempotency_key", f"the row store's record for key {step_key} lists {unknown} rows this step "
            "does not have: the key was used for other inputs. Give each step's inputs their own key (or use "
            "scope=, which derives it from the inputs)")
    return RowPlan(keys=keys, submitted=recorded)


def assemble(row_plan: RowPlan, sent: pl.DataFrame | None, store: RowStore, job_id: str | None) -> pl.DataFrame:
    """The distinct rows in first-seen order, one raw results row each (``KEY``, the job's result columns,
    ``sutro_job_id``): ``sent`` (the job's raw results, in the order ``submitted``) for the rows it was sent,
    the store's rows for the others; a row in neither has a null output (``missing``)."""
    distinct = row_plan.distinct
    found = None
    if sent is not None:
        if sent.height != row_plan.submitted.len():
            raise InputValidationError(
                "row_store", f"job {job_id} returned {sent.height} rows for the {row_plan.submitted.len()} it "
                "was sent; its results cannot be matched to the step's rows")
        found = sent.drop("inputs", strict=False).select(
            row_plan.submitted, pl.all(), pl.lit(job_id, pl.String).alias(row_status.ROW_JOB_ID))
        if row_plan.submitted.equals(distinct):  # every row was sent: already in order, no join needed
            return found.with_columns(distinct)
    others = distinct.filter(~distinct.is_in(row_plan.submitted.implode()))
    if others.len():
        stored = store.lookup(others)
        found = stored if found is None else pl.concat([found, stored], how="diagonal_relaxed")
        del stored
    del others
    table = distinct.to_frame()
    if found is None:
        return table.with_columns(pl.lit(None, pl.String).alias(OUTPUTS),
                                  pl.lit(None, pl.String).alias(row_status.ROW_JOB_ID))
    if OUTPUTS not in found.columns:
        found = found.with_columns(pl.lit(None, pl.String).alias(OUTPUTS))
    # Joined on the keys alone, then gathered a column at a time, each dropped once gathered: a gather copies
    # strings, and a join carrying the result columns would copy them all at once (~2x the rows' memory).
    at = (table.lazy().join(found.select(KEY).with_row_index("__at").lazy(), on=KEY, how="left",
                            maintain_order="left").collect(engine="streaming")["__at"])
    for name in [c for c in found.columns if c != KEY]:
        table = table.with_columns(found[name].gather(at))
        found = found.drop(name)
    return table


def remember(store: RowStore, table: pl.DataFrame, status: pl.Series, paid_by: set[str]) -> int:
    """Append the ``ok`` rows of ``table`` (distinct rows with ``KEY``) that jobs in ``paid_by`` produced and
    the store does not hold yet; returns how many were written."""
    new = table.filter(status.eq(row_status.OK) & table[row_status.ROW_JOB_ID].is_in(list(paid_by)))
    if new.is_empty():
        return 0
    held = store.lookup(new[KEY], keys_only=True)[KEY]
    new = new.filter(~pl.col(KEY).is_in(held.implode()))
    store.append(new)
    return new.height


def reused(path: Path, paid_by: set[str]) -> int:
    """How many rows of the fanned-out results at ``path`` came from the store: a job that is not one of
    ``paid_by`` produced them (a row in neither the job's results nor the store has none)."""
    job = pl.col(row_status.ROW_JOB_ID)
    return int(pl.scan_parquet(path).select((job.is_not_null() & ~job.is_in(list(paid_by))).sum()).collect().item())


def fan_out(row_plan: RowPlan, table: pl.DataFrame, rows: list[Any] | None, include_inputs: bool,
            path: Path) -> None:
    """Write one row per input row (in input order) from the distinct rows' ``table``, without ``KEY``, to
    ``path``; with ``include_inputs``, an ``inputs`` column first, of the rows as sent (Function rows as
    JSON). Sunk as a streaming query: the fanned-out rows are written as they are made, never all in memory."""
    if row_plan.first_rows.len() == row_plan.keys.len():  # no two rows alike: the table is in input order
        full = table.lazy()
    else:
        full = row_plan.keys.to_frame().lazy().join(table.lazy(), on=KEY, how="left", maintain_order="left")
    if include_inputs and rows is not None:
        texts = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
        full = full.select(pl.lit(pl.Series("inputs", texts, dtype=pl.String)), pl.all())
    full.drop(KEY).sink_parquet(path)
