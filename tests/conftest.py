"""Shared test fixtures: one real sutro-local server process per session, a fresh key per test.

- `sutro_server`: a `LocalServer` (subprocess, HTTP) built from `session_server_config(...)`.
- `sutro_key`: a new API key per test, so each test sees only its own jobs; the `ticket-triage`
  Function comes from the config's Functions folder, which every key sees.
- `sutro_client`: a `sutro_core.SutroClient` for that key.
- `s3_server`: a real S3 endpoint (moto's server mode, a subprocess over HTTP; `support.s3_server`), started
  on first use; `s3_bucket`: a fresh bucket per test (an `S3Bucket`), emptied and deleted after it.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import re  # noqa: E402
import signal  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from support.tiny_llama import cached_tiny_llama  # noqa: E402


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    # A run stopped with SIGTERM (`timeout`, CI) then tears its fixtures down and runs atexit handlers
    # like Ctrl-C does: servers stopped, temporary homes removed.
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _sigterm_as_interrupt)

TICKET_TRIAGE_YAML = """\
name: ticket-triage
type: classification
description: Route a customer support ticket to the team that handles it.
inputs: [text]
prompt_template: "Support ticket: {text}"
labels:
  - name: billing
    description: charges, invoices, refunds, payments, credit cards and subscription prices
  - name: bug
    description: something in the product is broken, crashes, shows an error or does not work
  - name: feature_request
    description: a request or suggestion for a new feature or an improvement to the product
  - name: account
    description: logging in, passwords, account access, profile settings and user management
examples:
  - {input: {text: "I was charged twice for my subscription this month"}, label: billing}
  - {input: {text: "Please refund my last invoice"}, label: billing}
  - {input: {text: "The app crashes every time I open the settings page"}, label: bug}
  - {input: {text: "Export to CSV gives a 500 error"}, label: bug}
  - {input: {text: "It would be great if you added a dark mode"}, label: feature_request}
  - {input: {text: "Please support exporting reports to PDF"}, label: feature_request}
  - {input: {text: "I forgot my password and cannot log in"}, label: account}
  - {input: {text: "How do I change the email address on my account?"}, label: account}
"""


def session_server_config(tmp_path: Path) -> dict[str, Any]:
    """The config of the session's sutro-local server (writes its Functions folder under tmp_path).

    Models: `all-minilm-l6-v2` (embedding) and `slow-embed` (the same model, one row a chunk and at
    least 0.3 s a chunk: jobs that stay RUNNING long enough to cancel or kill mid-run).
    `tiny-llama` (transformers): a tiny random-weight Llama built at test time; for tests only;
    `tiny-llama-reasoning`: the same with a <think>-opening template and `reasoning: true`;
    `echo` (no model): each row back, cut at `max_tokens` words.
    Add further models here.
    """
    functions_dir = tmp_path / "functions"
    functions_dir.mkdir(parents=True, exist_ok=True)
    (functions_dir / "ticket-triage.yaml").write_text(TICKET_TRIAGE_YAML)
    return {
        "models": {
            "all-minilm-l6-v2": {
                "engine": "embedding",
                "price": {"input_per_1m": 0.02, "output_per_1m": 0.0},
            },
            # Cuts a row at sampling_params.max_tokens words (finish_reason "length"): row status and repairs.
            "echo": {"engine": "echo", "price": {"input_per_1m": 1.0, "output_per_1m": 1.0}},
            "slow-embed": {
                "engine": "embedding",
                "chunk_size": 1,
                "min_seconds_per_chunk": 0.3,
                "price": {"input_per_1m": 0.02, "output_per_1m": 0.0},
            },
            # Generative engines (S2): built once per machine, loaded lazily on first use.
            "tiny-llama": {
                "engine": "transformers",
                "options": {"path": str(cached_tiny_llama()), "max_tokens": 16, "batch_size": 4, "threads": 1},
                "chunk_size": 4,
                "price": {"input_per_1m": 0.1, "output_per_1m": 0.2},
            },
            "tiny-llama-reasoning": {  # same weights; its template opens <think> like DeepSeek-R1
                "engine": "transformers",
                "options": {"path": str(cached_tiny_llama(reasoning=True)), "max_tokens": 16, "reasoning": True,
                            "threads": 1},
                "chunk_size": 4,
            },
        },
        "quotas": [
            {"job_priority": 0, "row_quota": 1_000_000, "token_quota": None},
            {"job_priority": 1, "row_quota": 10_000_000, "token_quota": None},
        ],
        "functions_dir": str(functions_dir),
        # tests serve URL inputs from 127.0.0.1; a real server refuses private addresses (SSRF)
        "url_inputs": {"allow_private": True},
    }


@pytest.fixture(scope="session")
def tiny_llama_dir():
    """Folder of the tiny random-weight Llama (HF format) the `tiny-llama` model serves; tests only."""
    return cached_tiny_llama()


@pytest.fixture(scope="session")
def sutro_server(tmp_path_factory: pytest.TempPathFactory):
    """A real sutro-local server process for the whole session."""
    from sutro_local.testing import LocalServer

    root = tmp_path_factory.mktemp("sutro-local")
    server = LocalServer(root / "data", session_server_config(root))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sutro_key(sutro_server, request: pytest.FixtureRequest) -> str:
    """A fresh API key for this test: list-jobs shows only this test's jobs."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:60]
    return sutro_server.create_key(name)


@pytest.fixture
def sutro_client(sutro_server, sutro_key):
    """A sutro_core.SutroClient bound to this test's key and the session server."""
    from sutro_core import SutroClient

    client = SutroClient(api_key=sutro_key, api_url=sutro_server.url)
    yield client
    close = getattr(client, "close", None)
    if callable(close):
        close()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible endpoint (moto server subprocess over HTTP) for the session: `S3TestServer`."""
    from support.s3_server import S3TestServer

    with S3TestServer() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh bucket for this test (`S3Bucket`: `.name`, `.uri(key)`, `.keys()`), deleted afterwards."""
    from support.s3_server import S3Bucket

    bucket = S3Bucket(s3_server.create_bucket(), s3_server)
    yield bucket
    s3_server.delete_bucket(bucket.name)
