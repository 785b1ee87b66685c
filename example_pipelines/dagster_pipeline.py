"""Dagster example: daily open support tickets -> Sutro Function triage + Sutro embeddings, stored as parquet.

A day's partition holds the tickets open on that day (``common.open_tickets``); about half are still open
the next day. Every Sutro asset keeps its rows' results in a row store (``ROW_STORE``:
``<output>/dagster/row-store``, ``SUTRO_DEMO_OUTPUT`` or ``.demo/output``), so a ticket is triaged,
embedded and answered once, on the first day it is open; the materialization's metadata says how many rows
were billed (``sutro.input.rows_submitted``) and reused (``sutro.input.rows_from_store``).

When ``SUTRO_DEMO_GENERATION_MODEL`` names a generative model, a ``ticket_replies`` asset drafts a first
reply to the day's oldest open tickets and a ``ticket_fields`` asset runs the ``ticket-fields`` extraction
Function (JSON schema) over them, stored with typed columns (``customer_name``, ``urgent``,
``sentiment``); see ``example_pipelines.common``. Otherwise both are left out.

Load it in the Dagster UI (``dagster dev -m example_pipelines.dagster_pipeline``) with SUTRO_API_KEY set
(and SUTRO_API_URL pointing at a ``sutro-local`` server for a free local run), or run one partition
from Python:

    >>> from example_pipelines.dagster_pipeline import run_partition
    >>> summary = run_partition("2026-01-02", storage_dir=".demo/dagster")  # doctest: +SKIP
"""

# No `from __future__ import annotations` here: Dagster inspects the `context` annotation at definition
# time and rejects it as a string.
import os
from typing import Any

import polars as pl
from dagster import (
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetSelection,
    DailyPartitionsDefinition,
    Definitions,
    EnvVar,
    RetryPolicy,
    asset,
    define_asset_job,
    materialize,
)

from dagster_sutro import SutroParquetIOManager, SutroResource, build_sutro_function_asset, build_sutro_inference_asset
from example_pipelines import common
from sutro_core.lineage import ROW_STATUS_PREFIX

# The shipped dataset covers 2026-01-01 .. 2026-01-07 (end_date is exclusive).
DAYS = DailyPartitionsDefinition(start_date=common.FIRST_DAY, end_date="2026-01-08")
STORAGE_DIR = os.environ.get("SUTRO_DEMO_STORAGE", ".demo/dagster")
#: Results of rows paid for on earlier days (and partitions): a ticket still open is not paid for again.
ROW_STORE = common.row_store("dagster")


@asset(partitions_def=DAYS, group_name="support", kinds={"polars"})
def support_tickets(context: AssetExecutionContext) -> pl.DataFrame:
    """The tickets open on the partition's day (a stand-in for a warehouse query of the support queue)."""
    return common.open_tickets(context.partition_key)


ticket_triage = build_sutro_function_asset(
    name="ticket_triage",
    upstream=support_tickets,
    function="ticket-triage",
    input_columns=["text"],
    output_columns=["label", "rationale", "confidence_score"],
    partitions_def=DAYS,
    group_name="support",
    max_cost_usd=5.0,  # dry-run first; fail before anything billed if the day would cost more
    retry_policy=RetryPolicy(max_retries=2, delay=30),  # retries reattach to the running job
    row_store=ROW_STORE,
)

ticket_embeddings = build_sutro_inference_asset(
    name="ticket_embeddings",
    upstream=support_tickets,
    model="all-minilm-l6-v2",
    column="text",
    partitions_def=DAYS,
    group_name="support",
    job_priority=1,  # cheaper batch priority: embeddings are not urgent
    row_store=ROW_STORE,
)

GENERATION_MODEL = common.generation_model()
generation_assets = []
if GENERATION_MODEL:  # only with a real generative model: outputs are never faked

    @asset(partitions_def=DAYS, group_name="support", kinds={"polars"})
    def tickets_needing_reply(support_tickets: pl.DataFrame) -> pl.DataFrame:
        """The day's oldest open tickets (generation on a CPU is slow; SUTRO_DEMO_GENERATION_ROWS sets how many)."""
        return support_tickets.head(common.generation_rows())

    ticket_replies = build_sutro_inference_asset(
        name="ticket_replies",
        upstream=tickets_needing_reply,
        model=GENERATION_MODEL,
        column="text",
        system_prompt=common.REPLY_SYSTEM_PROMPT,
        sampling_params=common.REPLY_SAMPLING,
        partitions_def=DAYS,
        group_name="support",
        repair_rounds=1,  # a reply cut at max_tokens goes again, alone, with twice the tokens
        row_store=ROW_STORE,  # temperature 0: yesterday's draft for a still-open ticket is today's
    )
    ticket_fields = build_sutro_function_asset(
        name="ticket_fields",
        upstream=tickets_needing_reply,
        function=common.FIELDS_FUNCTION,  # extraction with a JSON schema: one typed column per field
        input_columns=["text"],
        output_columns=common.FIELDS_COLUMNS,
        partitions_def=DAYS,
        group_name="support",
        row_store=ROW_STORE,
    )
    generation_assets = [tickets_needing_reply, ticket_replies, ticket_fields]

SUTRO_ASSETS = ["ticket_triage", "ticket_embeddings"]
if GENERATION_MODEL:
    SUTRO_ASSETS += ["ticket_replies", "ticket_fields"]

triage_job = define_asset_job("daily_ticket_triage", selection=AssetSelection.groups("support"), partitions_def=DAYS)

defs = Definitions(
    assets=[support_tickets, ticket_triage, ticket_embeddings, *generation_assets],
    jobs=[triage_job],
    resources={
        # api_url falls back to SUTRO_API_URL, then the hosted API.
        "sutro": SutroResource(api_key=EnvVar("SUTRO_API_KEY")),
        "io_manager": SutroParquetIOManager(base_dir=STORAGE_DIR),
    },
)


def run_partition(
    day: str, *, storage_dir: str = STORAGE_DIR, api_key: str | None = None, api_url: str | None = None
) -> dict[str, Any]:
    """Materialize one day in-process and return what a user would look at in the UI.

    Example:
        >>> run_partition("2026-01-02", api_url="http://127.0.0.1:8765")["ticket_triage"]["rows"]  # doctest: +SKIP
        45
    """
    result = materialize(
        [support_tickets, ticket_triage, ticket_embeddings, *generation_assets],
        partition_key=day,
        resources={
            "sutro": SutroResource(api_key=api_key, api_url=api_url),
            "io_manager": SutroParquetIOManager(base_dir=storage_dir),
        },
    )
    summary: dict[str, Any] = {"success": result.success}
    for name in SUTRO_ASSETS:
        [mat] = result.asset_materializations_for_node(name)
        meta = {key: value.value for key, value in mat.metadata.items()}
        summary[name] = {
            "job_id": meta.get("sutro.job.id"),  # None: every row came from the row store, no job needed
            "job_url": meta.get("sutro.job.url"),
            "job_ids": meta.get("sutro.job.ids") or [],  # the main job, then repairs (only when there were any)
            "rows": meta["dagster/row_count"],
            "rows_submitted": meta.get("sutro.input.rows_submitted"),
            "rows_from_store": meta.get("sutro.input.rows_from_store"),
            "row_status_counts": {key.removeprefix(ROW_STATUS_PREFIX): value for key, value in meta.items()
                                  if key.startswith(ROW_STATUS_PREFIX)},
            "path": meta["path"],
            "cost_estimate_usd": meta.get("sutro.cost.estimate_usd"),
        }
    # A warning (rows that are not ok, within max_failed_rows) is shown, not a failure.
    summary["checks_passed"] = all(e.passed or e.severity == AssetCheckSeverity.WARN
                                   for e in result.get_asset_check_evaluations())
    return summary


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run_partition(sys.argv[1] if len(sys.argv) > 1 else "2026-01-02"), indent=2))
