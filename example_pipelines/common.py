"""What the three example pipelines share: the datasets, model names and the generation switch.

Everything is read from the environment so the same pipelines run against ``sutro-local`` or hosted
Sutro unchanged:

- ``SUTRO_API_URL`` / ``SUTRO_API_KEY``: which Sutro API (read by the core client, the Airflow
  connection, the Dagster resource and the Prefect block).
- ``SUTRO_DEMO_EMBEDDING_MODEL``: the embedding model (default ``all-minilm-l6-v2``).
- ``SUTRO_DEMO_GENERATION_MODEL``: a generative model the API serves; when unset, the generation
  steps are left out (never faked). ``example_pipelines.demo`` sets it when it configures sutro-local
  with a local model folder or an OpenAI-compatible server (see ``GENERATION_HELP``).
- ``SUTRO_DEMO_OUTPUT``: where the Airflow and Prefect pipelines write parquet (default ``.demo/output``).

Example:
    >>> from example_pipelines.common import load_tickets
    >>> load_tickets("2026-01-05").height
    45
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

#: The dataset covers 2026-01-01 .. 2026-01-07; the demo runs one day.
FIRST_DAY, LAST_DAY = "2026-01-01", "2026-01-07"
DEMO_DAY = "2026-01-05"

TRIAGE_FUNCTION = "ticket-triage"
REVIEW_FUNCTION = "review-topic"
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"

REPLY_SYSTEM_PROMPT = (
    "You are a friendly customer support agent. Write a short first reply (at most two sentences) to the "
    "customer's ticket. Do not promise refunds or dates."
)
REPLY_SAMPLING = {"temperature": 0.0, "max_tokens": 80}

GENERATION_HELP = """\
Generation steps skipped: no generative model is configured (outputs are never faked).
To enable them, give sutro-local a model and run the demo again:
  SUTRO_DEMO_MODEL_DIR=/path/to/hf-model-folder ./run demo          # e.g. a Qwen2.5-0.5B-Instruct download (CPU ok)
  SUTRO_DEMO_OPENAI_URL=http://localhost:11434 SUTRO_DEMO_OPENAI_MODEL=llama3.2 ./run demo   # Ollama, vLLM, ...
Against hosted Sutro set SUTRO_DEMO_GENERATION_MODEL (e.g. qwen-3-4b) instead."""


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
    """How many tickets a day get a drafted reply (``SUTRO_DEMO_GENERATION_ROWS``, default 10):
    generation on a CPU is slow, the rest of the demo is not."""
    raw = os.environ.get("SUTRO_DEMO_GENERATION_ROWS", "10")
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"SUTRO_DEMO_GENERATION_ROWS must be a positive integer, got {raw!r}") from None
    if n < 1:
        raise ValueError(f"SUTRO_DEMO_GENERATION_ROWS must be a positive integer, got {n}")
    return n


def output_root() -> str:
    """Where the Airflow and Prefect pipelines write (``SUTRO_DEMO_OUTPUT``; a folder or an fsspec URI)."""
    return os.environ.get("SUTRO_DEMO_OUTPUT") or str(Path(".demo/output").resolve())


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
    """Support tickets (ticket_id, created_date, channel, text), optionally only one day's.

    Example:
        >>> load_tickets().columns
        ['ticket_id', 'created_date', 'channel', 'text']
    """
    df = pl.read_csv(TICKETS_CSV)
    return df if day is None else df.filter(pl.col("created_date") == _check_day(day))


def load_reviews(day: str | None = None) -> pl.DataFrame:
    """Product reviews (review_id, created_date, product, rating, text), optionally only one day's.

    Example:
        >>> load_reviews("2026-01-05").height
        30
    """
    df = pl.read_csv(REVIEWS_CSV)
    return df if day is None else df.filter(pl.col("created_date") == _check_day(day))
