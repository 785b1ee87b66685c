"""Airflow example: a day's open support tickets -> Sutro triage Function + embeddings (+ drafted replies) -> parquet.

Point ``AIRFLOW__CORE__DAGS_FOLDER`` at ``example_pipelines/`` (with the repo root on ``PYTHONPATH``, as
the DAG imports ``example_pipelines.common``; ``example_pipelines/.airflowignore`` keeps the other modules
out of parsing), migrate a fresh ``AIRFLOW_HOME`` once, and set a ``sutro_default`` connection (API key in
*password*, API URL in *host*), e.g.::

    export PYTHONPATH=$PWD AIRFLOW__CORE__DAGS_FOLDER=$PWD/example_pipelines
    airflow db migrate
    airflow connections add sutro_default --conn-type sutro --conn-host http://127.0.0.1:8484 --conn-password KEY
    airflow dags test support_ticket_triage 2026-01-05

The tickets cover 2026-01-01 .. 2026-01-07. A run whose logical date is one of those days processes that
day; ``dag_run.conf["day"]`` picks one explicitly; any other run (``airflow dags trigger`` without a logical
date, the UI's *Trigger* defaulting to today, a scheduled run) processes the latest data day and says so
in ``extract_tickets``' log. A day's tickets are the ones open on it (``common.open_tickets``): about half
are still open the next day, and the Sutro steps keep a row store (``<output>/airflow/row-store``), so a
ticket's triage, embedding and drafted reply are paid for once, on the first day it is open. The deferrable
batch operators chain on the upstream ``extract_tickets`` task (its XCom is the input file); each writes
parquet under ``<output>/airflow/<day>/`` and returns a small manifest (rows billed and reused included),
which flows through XCom to ``report``. ``<output>`` is ``SUTRO_DEMO_OUTPUT`` when set, else the
absolute ``.demo/output`` folder of this checkout (never relative to the scheduler's working directory). ``draft_replies`` exists only when ``SUTRO_DEMO_GENERATION_MODEL`` names a generative
model (see ``example_pipelines.common``).

Example:
    >>> from example_pipelines.airflow_dag import dag                  # doctest: +SKIP
    >>> sorted(dag.task_ids)                                            # doctest: +SKIP
    ['embed_tickets', 'extract_tickets', 'report', 'triage_tickets']
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, ObjectStoragePath, task

from airflow_provider_sutro.operators.sutro import SutroBatchFunctionOperator, SutroBatchInferenceOperator
from example_pipelines import common

log = logging.getLogger(__name__)

DAG_ID = "support_ticket_triage"
#: SUTRO_DEMO_OUTPUT, else this checkout's .demo/output: absolute, whatever the scheduler's working directory.
OUTPUT_ROOT = os.environ.get("SUTRO_DEMO_OUTPUT") or str(Path(__file__).resolve().parents[1] / ".demo" / "output")
#: The data day extract_tickets chose (templated at run time; see _data_day).
DAY = "{{ ti.xcom_pull(task_ids='extract_tickets')['day'] }}"
OUT = OUTPUT_ROOT.rstrip("/") + "/airflow/" + DAY
FAST_POLL = {"poll_interval": 1.0, "max_poll_interval": 10.0}  # small demo jobs finish in seconds
#: Results of rows paid for on earlier days; a ticket still open today is not paid for again.
ROW_STORE = common.row_store("airflow", OUTPUT_ROOT)


def _as_storage_path(uri: str) -> ObjectStoragePath:
    return ObjectStoragePath(uri if "://" in uri else f"file://{uri}")


def _data_day(ds: str | None, conf: dict[str, Any] | None) -> str:
    """The dataset day this run processes: ``conf["day"]``, else the logical date's day when the dataset has
    it, else the latest data day (a manual trigger has no logical date; the UI's defaults to today)."""
    if conf and conf.get("day"):
        return str(conf["day"])  # load_tickets rejects a day outside the dataset, naming the range
    if ds is not None and common.FIRST_DAY <= ds <= common.LAST_DAY:
        return ds
    why = "this run has no logical date" if ds is None else f"the logical date {ds} is outside the dataset"
    log.warning("%s: processing the latest data day %s (tickets cover %s..%s; pick one with conf "
                "{\"day\": \"YYYY-MM-DD\"})", why, common.LAST_DAY, common.FIRST_DAY, common.LAST_DAY)
    return common.LAST_DAY


with DAG(
    DAG_ID,
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    # No end_date: a run past it would turn green with zero tasks. Days beyond the data use the latest one.
    catchup=False,
    tags=["sutro", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def extract_tickets(ds: str | None = None, dag_run: Any = None) -> dict[str, Any]:
        """Write the day's open tickets (and the few oldest that get a drafted reply) as parquet; return their
        URIs."""
        day = _data_day(ds, getattr(dag_run, "conf", None))
        tickets = common.open_tickets(day)
        if tickets.is_empty():
            raise ValueError(f"no tickets for {day}; run a day from {common.FIRST_DAY} to {common.LAST_DAY}")
        folder = _as_storage_path(OUTPUT_ROOT) / "airflow" / day
        folder.mkdir(parents=True, exist_ok=True)
        uris = {}
        for name, frame in (("tickets", tickets), ("reply_sample", tickets.head(common.generation_rows()))):
            path = folder / f"{name}.parquet"
            with path.open("wb") as fh:
                frame.write_parquet(fh)
            uris[name] = str(path)
        log.info("Extracted %d open tickets for %s to %s", tickets.height, day, uris["tickets"])
        return {**uris, "rows": tickets.height, "day": day}

    extracted = extract_tickets()

    triage = SutroBatchFunctionOperator(
        task_id="triage_tickets",
        function_name=common.TRIAGE_FUNCTION,
        inputs=extracted["tickets"],
        columns=["text"],
        output_uri=f"{OUT}/triage.parquet",
        max_cost_usd=1.0,  # dry run first: fail before anything is billed if the day would cost more
        row_store=ROW_STORE,
        retries=2,  # retries reattach to the submitted job; they never pay twice
        **FAST_POLL,
    )

    embed = SutroBatchInferenceOperator(
        task_id="embed_tickets",
        model=common.embedding_model(),
        inputs=extracted["tickets"],
        column="text",
        output_uri=f"{OUT}/embeddings.parquet",
        job_priority=1,  # cheaper batch priority: embeddings are not urgent
        row_store=ROW_STORE,
        retries=2,
        **FAST_POLL,
    )

    manifests = {"triage": triage.output, "embeddings": embed.output}
    if common.generation_model():
        replies = SutroBatchInferenceOperator(
            task_id="draft_replies",
            model=common.generation_model(),  # type: ignore[arg-type]
            inputs=extracted["reply_sample"],
            column="text",
            system_prompt=common.REPLY_SYSTEM_PROMPT,
            sampling_params=common.REPLY_SAMPLING,
            output_uri=f"{OUT}/replies.parquet",
            repair_rounds=1,  # a reply cut at max_tokens goes again, alone, with twice the tokens
            row_store=ROW_STORE,  # temperature 0: yesterday's draft for a still-open ticket is today's
            retries=2,
            **FAST_POLL,
        )
        manifests["replies"] = replies.output

    @task
    def report(extract: dict[str, Any], manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Join the triage labels back onto the tickets and count them: the manifests arrive through XCom."""
        import polars as pl

        with _as_storage_path(extract["tickets"]).open("rb") as fh:
            tickets = pl.read_parquet(fh)
        with _as_storage_path(manifests["triage"]["uri"]).open("rb") as fh:
            labels = pl.read_parquet(fh)
        if labels.height != tickets.height:  # one result row per input row, in input order
            raise ValueError(f"triage returned {labels.height} rows for {tickets.height} tickets")
        counts = dict(common.labels(labels).value_counts().iter_rows())
        log.info("Ticket labels: %s", counts)
        return {"label_counts": counts, "jobs": {k: m["job_id"] for k, m in manifests.items()}}

    report(extracted, manifests)
