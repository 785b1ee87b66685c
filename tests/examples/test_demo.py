"""The demo (``./run demo`` == ``python -m example_pipelines.demo``) end to end, minus the install.

``demo.main`` starts its own sutro-local, runs the Airflow DAG (``dag.test()``), the Dagster assets
(``materialize``) and the Prefect flow in child processes, checks and prints what they wrote. These tests
then open the parquet files as a user would and check what is in them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from example_pipelines import common, demo

TICKET_LABELS = {"billing", "bug", "feature_request", "account", "other"}
REVIEW_TOPICS = {"product_quality", "delivery", "price_value", "ease_of_use", "customer_service"}
DAY = common.DEMO_DAY


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No Sutro or demo settings from the developer's shell: the demo must start its own server."""
    for var in ("SUTRO_API_URL", "SUTRO_API_KEY", "SUTRO_DEMO_MODEL_DIR", "SUTRO_DEMO_OPENAI_URL",
                "SUTRO_DEMO_GENERATION_MODEL", "SUTRO_DEMO_OUTPUT", "PREFECT_API_URL"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _vectors_ok(column: pl.Series) -> bool:
    return all(len(v) == 384 and abs(sum(x * x for x in v) - 1.0) < 1e-3 for v in column.to_list())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_runs_the_three_pipelines_and_writes_real_parquet(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "demo"
    code = demo.main(["--workdir", str(workdir)])
    out = capsys.readouterr().out
    assert code == 0, out
    tickets = common.load_tickets(DAY)
    reviews = common.load_reviews(DAY)
    output = workdir / "output"

    # Airflow: the one results shape (the tickets' columns, then label/rationale/confidence_score), one row
    # per ticket, in input order.
    airflow = output / "airflow" / DAY
    triage = pl.read_parquet(airflow / "triage.parquet")
    assert triage.height == tickets.height and triage["ticket_id"].to_list() == tickets["ticket_id"].to_list()
    assert set(common.labels(triage).to_list()) <= TICKET_LABELS
    assert triage["confidence_score"].is_between(0, 1).all()
    assert _vectors_ok(pl.read_parquet(airflow / "embeddings.parquet")["inference_result"])
    # The report task got the triage manifest through XCom and counted the labels of the same file.
    airflow_json = json.loads((workdir / "logs" / "airflow.json").read_text())
    assert airflow_json["notes"]["label_counts"] == dict(common.labels(triage).value_counts().iter_rows())

    # Dagster: the IO manager stores the tickets joined with their results, per day partition.
    dagster_triage = pl.read_parquet(output / "dagster" / "ticket_triage" / f"{DAY}.parquet")
    assert dagster_triage["ticket_id"].to_list() == tickets["ticket_id"].to_list()
    assert set(dagster_triage["label"].to_list()) <= TICKET_LABELS
    # What a support lead would check: unmistakable tickets land in the right queue.
    by_text = dict(zip(dagster_triage["text"], dagster_triage["label"]))
    for text, label in by_text.items():
        if "reset link" in text or "transfer ownership" in text:
            assert label == "account", text
        if "gives a 500 error" in text or "crashes every time" in text:
            assert label == "bug", text
        if "charged twice" in text or "VAT invoice" in text:
            assert label == "billing", text
    dagster_vectors = pl.read_parquet(output / "dagster" / "ticket_embeddings" / f"{DAY}.parquet")
    assert dagster_vectors.height == tickets.height and _vectors_ok(dagster_vectors["inference_result"])

    # Prefect: tickets triaged the same way as Airflow (same Function, same rows), reviews tagged by topic.
    prefect = output / "prefect" / DAY
    prefect_triage = pl.read_parquet(prefect / "triage.parquet")
    assert common.labels(prefect_triage).to_list() == common.labels(triage).to_list()
    topics = pl.read_parquet(prefect / "review_topics.parquet")
    assert topics.height == reviews.height and set(common.labels(topics).to_list()) <= REVIEW_TOPICS
    assert _vectors_ok(pl.read_parquet(prefect / "embeddings.parquet")["inference_result"])

    # The same job through the three orchestrators: the same parquet schema, and the job in the footer.
    for a, d, p in (("triage.parquet", "ticket_triage", "triage.parquet"),
                    ("embeddings.parquet", "ticket_embeddings", "embeddings.parquet")):
        schemas = [pq.read_schema(path) for path in (airflow / a, output / "dagster" / d / f"{DAY}.parquet", prefect / p)]
        assert schemas[0].remove_metadata() == schemas[1].remove_metadata() == schemas[2].remove_metadata(), a
        assert all(s.metadata[b"sutro.job_id"].startswith(b"job-") for s in schemas)

    # Generation ran by default on the built-in SmolLM2-135M-Instruct: a drafted reply (what the model
    # wrote, never empty) for each of the first tickets, with a finish reason per row.
    sample = tickets.head(common.generation_rows())
    for path in (airflow / "replies.parquet", output / "dagster" / "ticket_replies" / f"{DAY}.parquet",
                 prefect / "replies.parquet"):  # fmt: skip
        replies = pl.read_parquet(path)
        assert replies.height == sample.height and replies["ticket_id"].to_list() == sample["ticket_id"].to_list()
        assert all(text.strip() for text in replies["inference_result"].to_list()), (path, replies["inference_result"])
        assert set(replies["finish_reason"].to_list()) <= {"stop", "length"}, path
    # The ticket-fields extraction Function (JSON schema): typed columns in the Dagster asset's parquet.
    fields = pl.read_parquet(output / "dagster" / "ticket_fields" / f"{DAY}.parquet")
    assert fields["ticket_id"].to_list() == sample["ticket_id"].to_list()
    assert fields.schema["urgent"] == pl.Boolean and fields.schema["customer_name"] == pl.String
    assert set(fields["sentiment"].drop_nulls().to_list()) <= {"negative", "neutral", "positive"}
    assert fields["urgent"].null_count() < fields.height  # the schema held: rows were parsed, not dropped

    # The printed summary names every job and file, and says which model wrote the generated text.
    job_ids = re.findall(r"job-[0-9a-f]{32}", out)
    assert len(set(job_ids)) == 11
    for path in ("airflow/2026-01-05/triage.parquet", "dagster/ticket_triage/2026-01-05.parquet",
                 "prefect/2026-01-05/review_topics.parquet", "dagster/ticket_fields/2026-01-05.parquet"):
        assert path in out
    assert "smollm2-135m-instruct (a 135M model" in out and "SUTRO_DEMO_MODEL_DIR" in out
    assert "demo OK" in out


@pytest.mark.slow
def test_demo_uses_the_api_named_by_the_environment(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, sutro_server, sutro_key: str, sutro_client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With SUTRO_API_URL/SUTRO_API_KEY set (as for hosted Sutro) the demo starts no server of its own."""
    clean_env.setenv("SUTRO_API_URL", sutro_server.url)
    clean_env.setenv("SUTRO_API_KEY", sutro_key)
    code = demo.main(["--workdir", str(tmp_path / "demo"), "--only", "dagster"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"using the Sutro API at {sutro_server.url}" in out
    assert not (tmp_path / "demo" / "sutro-local").exists()
    # This key's jobs are the demo's: the two it reports (plus the triage step's cost dry run).
    reported = {j.job_id: j for j in sutro_client.list_jobs() if j.job_id in out}
    assert sorted(j.model for j in reported.values()) == sorted(["ticket-triage", common.DEFAULT_EMBEDDING_MODEL])
    assert all(j.status.value == "SUCCEEDED" for j in reported.values())


@pytest.mark.slow
def test_demo_fails_loudly_when_a_pipeline_fails(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, sutro_server, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("SUTRO_API_URL", sutro_server.url)
    clean_env.setenv("SUTRO_API_KEY", "not-a-valid-key")
    code = demo.main(["--workdir", str(tmp_path / "demo"), "--only", "dagster"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED" in out and "demo FAILED: dagster" in out
    assert "demo OK" not in out


def test_demo_refuses_a_url_without_a_key(tmp_path: Path, clean_env: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv("SUTRO_API_URL", "https://api.sutro.sh")
    assert demo.main(["--workdir", str(tmp_path / "demo")]) == 2
    assert "SUTRO_API_KEY is not" in capsys.readouterr().out


def test_generation_config_errors_name_the_variable_and_the_fix(tmp_path: Path,
                                                                clean_env: pytest.MonkeyPatch) -> None:
    assert demo.server_config()[1] == "smollm2-135m-instruct"  # the built-in default
    clean_env.setenv("SUTRO_DEMO_MODEL_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="SUTRO_DEMO_MODEL_DIR=.*no config.json"):
        demo.server_config()
    clean_env.delenv("SUTRO_DEMO_MODEL_DIR")
    clean_env.setenv("SUTRO_DEMO_OPENAI_URL", "http://127.0.0.1:11434")
    with pytest.raises(ValueError, match="SUTRO_DEMO_OPENAI_MODEL"):
        demo.server_config()
    clean_env.setenv("SUTRO_DEMO_OPENAI_MODEL", "llama3.2")
    config, model = demo.server_config()
    assert model == "demo-llm"
    assert config["models"]["demo-llm"]["options"] == {"base_url": "http://127.0.0.1:11434", "model": "llama3.2"}


def test_bad_day_is_refused_before_anything_starts(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as exc:
        demo.main(["--workdir", str(tmp_path / "demo"), "--day", "2025-12-31"])
    assert exc.value.code == 2
    assert not (tmp_path / "demo").exists()
