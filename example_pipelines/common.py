"""What the three example pipelines share: the datasets, model names and the generation switch.

Everything is read from the environment so the same pipelines run against ``sutro-local`` or hosted
Sutro unchanged:

- ``SUTRO_API_URL`` / ``SUTRO_API_KEY``: which Sutro API (read by the core client, the Airflow
  connection, the Dagster resource and the Prefect block).
- ``SUTRO_DEMO_EMBEDDING_MODEL``: the embedding model (default ``all-minilm-l6-v2``).
- ``SUTRO_DEMO_GENERATION_MODEL``: a generative model the API serves; when unset, the generation
  steps are left out (never faked). ``example_pipelines.demo`` sets it for its sutro-local: the
  built-in ``smollm2-135m-instruct``, or ``demo-llm`` when given a model folder or an
  OpenAI-compatible server (see ``GENERATION_HELP``).
- ``SUTRO_DEMO_OUTPUT``: where the pipelines write parquet and keep their row stores (default
  ``.demo/output``).

Each pipeline processes a day's *open* tickets (``open_tickets``): the ones created that day and the ones
still open from earlier days, so consecutive days share tickets and a row store (``row_store``) pays for
each ticket's triage, embedding and drafted reply once.

Example:
    >>> from example_pipelines.common import load_tickets, open_tickets
    >>> load_tickets("2026-01-05").height, open_tickets("2026-01-05").height
    (45, 81)
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
FUNCTIONS_DIR = PACKAGE_DIR / "functions"
SERVER_CONFIG = PACKAGE_DIR / "sutro-local.yaml"  # sutro-local config: models + the Functions folder
TICKETS_CSV = DATA_DIR / "support_tickets.csv"
REVIEWS_CSV = DATA_DIR / "product_reviews.csv"

#: The dataset covers 2026-01-01 .. 2026-01-07; the demo runs DEMO_DAY and the day after.
FIRST_DAY, LAST_DAY = "2026-01-01", "2026-01-07"
DEMO_DAY = "2026-01-05"
TICKET_COLUMNS = ["ticket_id", "created_date", "channel", "text"]

TRIAGE_FUNCTION = "ticket-triage"
FIELDS_FUNCTION = "ticket-fields"  # extraction with a JSON schema, on the generative model (Dagster example)
FIELDS_COLUMNS = ["customer_name", "urgent", "sentiment"]
REVIEW_FUNCTION = "review-topic"
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"

# Worded for small models too (the default is a 135M one): a plain instruction, no negations to echo.
REPLY_SYSTEM_PROMPT = (
    "You are a helpful customer support agent. Reply to the customer's message in two short sentences."
)
REPLY_SAMPLING = {"temperature": 0.0, "max_tokens": 48}  # rows cut here have finish_reason "length"

GENERATION_HELP = """\
Generation steps skipped: this API was given no generative model (outputs are never faked).
Set SUTRO_DEMO_GENERATION_MODEL to a model it serves (e.g. qwen-3-4b on hosted Sutro, after publishing the
ticket-fields Function), or unset SUTRO_API_URL to run on sutro-local's built-in smollm2-135m-instruct."""

GENERATION_NOTE = """\
Drafted replies and ticket fields come from {model}{small}: outputs are what the model wrote.
A bigger model: SUTRO_DEMO_MODEL_DIR=/path/to/hf-model-folder ./run demo, or
SUTRO_DEMO_OPENAI_URL=http://localhost:11434 SUTRO_DEMO_OPENAI_MODEL=llama3.2 ./run demo (Ollama, vLLM, ...)."""


def embedding_model() -> str:
    """The embedding model name (``SUTRO_DEMO_EMBEDDING_MODEL``, default ``all-minilm-l6-v2``)."""
    return os.environ.get("SUTRO_DEMO_EMBEDDING_MODEL") or DEFAULT_EMBEDDING_MODEL


def generation_model() -> str | None:
    """The generative model for the reply-drafting steps, or None when none is configured.

    Example:
        >>> generation_model()      # "qwen-3-4b" when SUTRO_DEMO_GENERATION_MODEL=qwen-3-4b  # doctest: +SKIP
    """
    return os.environ.get("SUTRO_DEMO_GENERATION_MODEL") or None


def generation_rows() -> int:
    """How many tickets a day get a drafted reply (``SUTRO_DEMO_GENERATION_ROWS``, default 4):
    generation on a CPU is slow, the rest of the demo is not."""
    raw = os.environ.get("SUTRO_DEMO_GENERATION_ROWS", "4")
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"SUTRO_DEMO_GENERATION_ROWS must be a positive integer, got {raw!r}") from None
    if n < 1:
        raise ValueError(f"SUTRO_DEMO_GENERATION_ROWS must be a positive integer, got {n}")
    return n


def output_root() -> str:
    """Where the pipelines write (``SUTRO_DEMO_OUTPUT``; a folder or an fsspec URI)."""
    return os.environ.get("SUTRO_DEMO_OUTPUT") or str(Path(".demo/output").resolve())


def row_store(pipeline: str, root: str | None = None) -> str:
    """The row store of one example pipeline: ``<output>/<pipeline>/row-store``. One per pipeline, so each
    orchestrator pays for its own rows once (and the demo shows each one's reuse).

    Example:
        >>> row_store("airflow", "/data/out")
        '/data/out/airflow/row-store'
    """
    return f"{(root or output_root()).rstrip('/')}/{pipeline}/row-store"


def labels(results: pl.DataFrame) -> pl.Series:
    """The ``label`` of each row of a classification Function's results file (its ``outputs`` are JSON
    ``{"label", "rationale"}``; a frame with a ``label`` column already unpacked is taken as is).

    Example:
        >>> labels(pl.DataFrame({"outputs": ['{"label": "bug", "rationale": "crash"}']})).to_list()
        ['bug']
    """
    if "label" in results.columns:
        return results["label"]
    return results["outputs"].str.json_path_match("$.label").alias("label")


def _check_day(day: str) -> str:
    if not (FIRST_DAY <= day <= LAST_DAY) or len(day) != 10:
        raise ValueError(f"day {day!r} is outside the dataset; pick a YYYY-MM-DD from {FIRST_DAY} to {LAST_DAY}")
    return day


def load_tickets(day: str | None = None) -> pl.DataFrame:
    """Support tickets (ticket_id, created_date, channel, text, closed_date), optionally only those created
    on ``day``. ``closed_date`` is the day a ticket was closed (null: still open after the last day).

    Example:
        >>> load_tickets().columns
        ['ticket_id', 'created_date', 'channel', 'text', 'closed_date']
    """
    df = pl.read_csv(TICKETS_CSV, schema_overrides={"closed_date": pl.String})
    return df if day is None else df.filter(pl.col("created_date") == _check_day(day))


def open_tickets(day: str) -> pl.DataFrame:
    """The tickets open on ``day`` (created on or before it, closed on or after it), oldest first: what the
    pipelines triage, embed and draft replies to (a stand-in for a query of the support queue). The
    columns are a query's on that day: ticket_id, created_date, channel, text (not the future closed_date).

    Example:
        >>> open_tickets("2026-01-06").height, open_tickets("2026-01-06")["created_date"].min()
        (86, '2026-01-01')
    """
    df = load_tickets()
    still_open = pl.col("closed_date").is_null() | (pl.col("closed_date") >= day)
    return df.filter((pl.col("created_date") <= _check_day(day)) & still_open).select(TICKET_COLUMNS)


def load_reviews(day: str | None = None) -> pl.DataFrame:
    """Product reviews (review_id, created_date, product, rating, text), optionally only one day's.

    Example:
        >>> load_reviews("2026-01-05").height
        30
    """
    df = pl.read_csv(REVIEWS_CSV)
    return df if day is None else df.filter(pl.col("created_date") == _check_day(day))
