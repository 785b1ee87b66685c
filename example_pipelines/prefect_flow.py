"""Prefect example: a day's open tickets and product reviews -> Sutro Functions + embeddings (+ drafted replies).

The ticket steps keep their rows' results in a row store (``<output>/prefect/row-store``): about half of a
day's open tickets were open the day before too (``common.open_tickets``), and those are not paid for
again. Each step's summary artifact shows "Rows billed / reused".

Each Sutro job is a ``sutro_batch_job`` subflow named after its step and job (submit or reattach, wait,
parquet, manifest) that leaves a job link, a preview table, a parquet link and a summary in its Artifacts;
this run gets the table of all its jobs (``support-insights-sutro-jobs``) and a markdown report of its
own (``support-insights-report``). Cancelling a run (also a deployed one) cancels its Sutro jobs.

Credentials come from a saved ``SutroCredentials`` block when ``credentials_block`` names one, else from
``SUTRO_API_KEY`` / ``SUTRO_API_URL``. Run one day from the shell::

    SUTRO_API_URL=http://127.0.0.1:8000 SUTRO_API_KEY=... python -m example_pipelines.prefect_flow 2026-01-05

Example:
    >>> import asyncio
    >>> from example_pipelines.prefect_flow import support_insights
    >>> result = asyncio.run(support_insights("2026-01-05"))       # doctest: +SKIP
    >>> result["triage"]["rows"]                                    # doctest: +SKIP
    45
"""

from __future__ import annotations

import os
from typing import Any

import polars as pl
from prefect import task
from prefect.artifacts import acreate_markdown_artifact

from example_pipelines import common
from prefect_sutro import SutroCredentials, load_results, sutro_batch_job, sutro_flow

POLL = {"poll_interval_seconds": 1.0, "max_poll_interval_seconds": 10.0}  # small demo jobs finish in seconds


async def _credentials(block_name: str | None) -> SutroCredentials:
    if block_name:
        return await SutroCredentials.load(block_name)
    key = os.environ.get("SUTRO_API_KEY")
    if not key:
        raise ValueError(
            "no Sutro credentials: set SUTRO_API_KEY (and SUTRO_API_URL for sutro-local), or pass "
            "credentials_block='<name of a saved SutroCredentials block>'"
        )
    url = os.environ.get("SUTRO_API_URL")
    return SutroCredentials(api_key=key, **({"api_url": url} if url else {}))


@task
def load_day(day: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The tickets open on the day and the day's product reviews (a stand-in for a warehouse query)."""
    tickets, reviews = common.open_tickets(day), common.load_reviews(day)
    if tickets.is_empty():
        raise ValueError(f"no tickets for {day}; pick a day from {common.FIRST_DAY} to {common.LAST_DAY}")
    return tickets, reviews


def _report(day: str, triage: pl.DataFrame, reviews: pl.DataFrame, topics: pl.DataFrame) -> str:
    labels = common.labels(triage).value_counts(sort=True)
    by_topic = (
        reviews.with_columns(common.labels(topics).alias("topic"))
        .group_by("topic").agg(pl.len().alias("reviews"), pl.col("rating").mean().round(2).alias("avg_rating"))
        .sort("avg_rating")
    )
    lines = [f"# Support insights for {day}", "", "| ticket label | tickets |", "| --- | --- |"]
    lines += [f"| {label} | {n} |" for label, n in labels.iter_rows()]
    lines += ["", "| review topic | reviews | average rating |", "| --- | --- | --- |"]
    lines += [f"| {t} | {n} | {r} |" for t, n, r in by_topic.iter_rows()]
    return "\n".join(lines)


# @sutro_flow, not @flow: a runner that cancels this deployed flow runs only this flow's hooks (not its
# subflows'), so it is this flow that must cancel the Sutro jobs, even when its process is frozen or gone.
@sutro_flow(name="support-insights", log_prints=False)
async def support_insights(day: str = common.DEMO_DAY, credentials_block: str | None = None) -> dict[str, Any]:
    """Triage the day's tickets, tag its reviews by topic, embed the tickets, draft replies if a
    generative model is configured; return the manifests (uri, rows, job_id, tokens, cost) by step.

    Example:
        >>> manifests = asyncio.run(support_insights("2026-01-05"))   # doctest: +SKIP
        >>> sorted(manifests)                                          # doctest: +SKIP
        ['embeddings', 'review_topics', 'triage']
    """
    creds = await _credentials(credentials_block)
    tickets, reviews = load_day(day)
    out = f"{common.output_root().rstrip('/')}/prefect/{day}"
    # Open tickets come back day after day: their results are paid for once and reused from here.
    store = common.row_store("prefect")
    manifests: dict[str, Any] = {}
    # The whole tickets frame: the Function reads `text`, the other columns are carried into the results,
    # so this file has the same schema as the Airflow and Dagster triage files.
    manifests["triage"] = await sutro_batch_job(
        tickets, f"{out}/triage.parquet", creds, function_name=common.TRIAGE_FUNCTION,
        column=["text"], max_cost_usd=1.0, artifact_key="ticket-triage", row_store=store, **POLL,
    )
    # No row store: a day's reviews are new ones, not yesterday's again (the generated texts repeat a few
    # sentences; real reviews rarely do), so a store would only grow.
    manifests["review_topics"] = await sutro_batch_job(
        reviews.select("text"), f"{out}/review_topics.parquet", creds, function_name=common.REVIEW_FUNCTION,
        column=["text"], artifact_key="review-topics", **POLL,
    )
    manifests["embeddings"] = await sutro_batch_job(
        tickets, f"{out}/embeddings.parquet", creds, model=common.embedding_model(), column="text",
        job_priority=1, artifact_key="ticket-embeddings", preview_rows=3, row_store=store, **POLL,
    )
    model = common.generation_model()
    if model:
        manifests["replies"] = await sutro_batch_job(
            tickets.head(common.generation_rows()), f"{out}/replies.parquet", creds, model=model, column="text",
            system_prompt=common.REPLY_SYSTEM_PROMPT, sampling_params=common.REPLY_SAMPLING,
            repair_rounds=1,  # a reply cut at max_tokens goes again, alone, with twice the tokens
            row_store=store,  # temperature 0: yesterday's draft for a still-open ticket is today's
            artifact_key="ticket-replies", **POLL,
        )
    report = _report(day, load_results(manifests["triage"]), reviews, load_results(manifests["review_topics"]))
    await acreate_markdown_artifact(key="support-insights-report", markdown=report,
                                    description=f"Ticket labels and review topics for {day}")
    return manifests


if __name__ == "__main__":
    import asyncio
    import json
    import sys

    result = asyncio.run(support_insights(sys.argv[1] if len(sys.argv) > 1 else common.DEMO_DAY))
    sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
