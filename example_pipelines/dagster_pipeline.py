"""Dagster example: daily support tickets -> Sutro Function triage + Sutro embeddings, stored as parquet.

Load it in the Dagster UI (``dagster dev -m example_pipelines.dagster_pipeline``) with SUTRO_API_KEY set
(and SUTRO_API_URL pointing at a ``sutro-local`` server for a free local run), or run one partition
from Python:

    >>> from example_pipelines.dagster_pipeline import run_partition
    >>> summary = run_partition("2026-01-02", storage_dir=".demo/dagster")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

import polars as pl
from dagster import (
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
from dagster_polars import PolarsParquetIOManager

from dagster_sutro import SutroResource, build_sutro_function_asset, build_sutro_inference_asset

DAYS = DailyPartitionsDefinition(start_date="2026-01-01")
STORAGE_DIR = os.environ.get("SUTRO_DEMO_STORAGE", ".demo/dagster")

_TICKETS = [
    "I was charged twice for my subscription this month",
    "The app crashes every time I open the settings page",
    "How do I export all my invoices as CSV?",
    "Please cancel my account, I no longer need it",
    "The new dashboard is great, thanks!",
    "Login fails with 'invalid token' since the last update",
]


@asset(partitions_def=DAYS, group_name="support", kinds={"polars"})
def support_tickets(context: AssetExecutionContext) -> pl.DataFrame:
    """The day's tickets (a stand-in for a warehouse query filtered on the partition's day)."""
    day = context.partition_key
    offset = sum(map(ord, day)) % len(_TICKETS)
    texts = _TICKETS[offset:] + _TICKETS[:offset]
    return pl.DataFrame({"ticket_id": [f"{day}-{i}" for i in range(len(texts))], "day": day, "text": texts})


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
)

ticket_embeddings = build_sutro_inference_asset(
    name="ticket_embeddings",
    upstream=support_tickets,
    model="all-minilm-l6-v2",
    column="text",
    partitions_def=DAYS,
    group_name="support",
    job_priority=1,  # cheaper batch priority: embeddings are not urgent
)

triage_job = define_asset_job("daily_ticket_triage", selection=AssetSelection.groups("support"), partitions_def=DAYS)

defs = Definitions(
    assets=[support_tickets, ticket_triage, ticket_embeddings],
    jobs=[triage_job],
    resources={
        # api_url falls back to SUTRO_API_URL, then the hosted API.
        "sutro": SutroResource(api_key=EnvVar("SUTRO_API_KEY")),
        "io_manager": PolarsParquetIOManager(base_dir=STORAGE_DIR),
    },
)


def run_partition(
    day: str, *, storage_dir: str = STORAGE_DIR, api_key: str | None = None, api_url: str | None = None
) -> dict[str, Any]:
    """Materialize one day in-process and return what a user would look at in the UI.

    Example:
        >>> run_partition("2026-01-02", api_url="http://127.0.0.1:8765")["ticket_triage"]["rows"]  # doctest: +SKIP
        6
    """
    result = materialize(
        [support_tickets, ticket_triage, ticket_embeddings],
        partition_key=day,
        resources={
            "sutro": SutroResource(api_key=api_key, api_url=api_url),
            "io_manager": PolarsParquetIOManager(base_dir=storage_dir),
        },
    )
    summary: dict[str, Any] = {"success": result.success}
    for name in ("ticket_triage", "ticket_embeddings"):
        [mat] = result.asset_materializations_for_node(name)
        meta = mat.metadata
        summary[name] = {
            "job_id": meta["sutro/job_id"].value,
            "job_url": meta["sutro/job_url"].value,
            "rows": meta["dagster/row_count"].value,
            "path": meta["path"].value,
            "cost_estimate_usd": meta["sutro/cost_estimate_usd"].value if "sutro/cost_estimate_usd" in meta else None,
        }
    summary["checks_passed"] = all(e.passed for e in result.get_asset_check_evaluations())
    return summary


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run_partition(sys.argv[1] if len(sys.argv) > 1 else "2026-01-02"), indent=2))
