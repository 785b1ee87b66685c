"""The demo (``./run demo`` == ``python -m example_pipelines.demo``) end to end, minus the install.

``demo.main`` starts its own sutro-local, runs the Airflow DAG (``dag.test()``), the Dagster assets
(``materialize``) and the Prefect flow in child processes for two days (each pipeline with a row store),
checks and prints what they wrote and what each day billed and reused. These tests then open the parquet
files as a user would, and hold the billed rows against the server's own job list.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from example_pipelines import common, demo

TICKET_LABELS = {"billing", "bug", "feature_request", "account", "other"}
REVIEW_TOPICS = {"product_quality", "delivery", "price_value", "ease_of_use", "customer_service"}
DAY = common.DEMO_DAY
DAY2 = demo.demo_days(DAY, 2)[1]
#: Each pipeline's steps with a row store: what their rows are ("open": the day's open tickets; "sample": the
#: oldest of them, which get a drafted reply) and the output columns a stored row must carry unchanged.
STORE_STEPS = {
    "airflow": {"triage_tickets": ("open", ["label"]), "embed_tickets": ("open", ["inference_result"]),
                "draft_replies": ("sample", ["inference_result"])},
    "dagster": {"ticket_triage": ("open", ["label"]), "ticket_embeddings": ("open", ["inference_result"]),
                "ticket_replies": ("sample", ["inference_result"]),
                "ticket_fields": ("sample", common.FIELDS_COLUMNS)},
    "prefect": {"triage": ("open", ["label"]), "embeddings": ("open", ["inference_result"]),
                "replies": ("sample", ["inference_result"])},
}


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
def test_demo_runs_the_three_pipelines_for_two_days_and_reuses_rows(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "demo"
    code = demo.main(["--workdir", str(workdir)])
    out = capsys.readouterr().out
    assert code == 0, out
    _check_first_day(workdir, out)
    _check_reuse(workdir, out)


def _check_first_day(workdir: Path, out: str) -> None:
    """What the first day wrote, file by file, as a user would look at it."""
    tickets = common.open_tickets(DAY)
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
    assert airflow_json["days"][0]["notes"]["label_counts"] == dict(common.labels(triage).value_counts().iter_rows())

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

    # The printed summary names every file of both days, and says which model wrote the generated text.
    for day in (DAY, DAY2):
        for path in (f"airflow/{day}/triage.parquet", f"dagster/ticket_triage/{day}.parquet",
                     f"prefect/{day}/review_topics.parquet", f"dagster/ticket_fields/{day}.parquet"):
            assert path in out
    assert "smollm2-135m-instruct (a 135M model" in out and "SUTRO_DEMO_MODEL_DIR" in out
    assert "demo OK: 2 day(s)" in out


def _steps(workdir: Path, pipeline: str) -> dict[tuple[str, str], dict]:
    """The pipeline's steps as its runner reported them (the manifests), by (day, step)."""
    result = json.loads((workdir / "logs" / f"{pipeline}.json").read_text())
    assert [d["day"] for d in result["days"]] == [DAY, DAY2]
    return {(d["day"], s["step"]): s for d in result["days"] for s in d["steps"]}


def _server_jobs(workdir: Path) -> dict[str, Any]:
    """The billed (not dry-run) jobs in the demo's sutro-local, read back from its data folder by starting
    it again (the demo stopped it): the server's word, not the manifests'."""
    from sutro_core import SutroClient
    from sutro_local.testing import LocalServer

    with LocalServer(workdir / "sutro-local", demo.server_config()[0], startup_timeout=120) as server:
        with SutroClient(api_key=server.api_key, api_url=server.url) as client:
            return {j.job_id: j for j in client.list_jobs() if not j.get("dry_run")}


def _check_reuse(workdir: Path, out: str) -> None:
    """Day 2 billed only the rows the pipeline's store did not hold as ok after day 1, and the server ran
    exactly those; stored rows carry day 1's results and name day 1's jobs."""
    jobs = _server_jobs(workdir)
    reported = set()
    for pipeline, store_steps in STORE_STEPS.items():
        steps = _steps(workdir, pipeline)
        reported |= {j for s in steps.values() for j in (s["job_ids"] or [s["job_id"]]) if j}
        assert list((workdir / "output" / pipeline / "row-store").glob("*.parquet")), pipeline
        for name, (rows, outputs) in store_steps.items():
            day1, day2 = steps[DAY, name], steps[DAY2, name]
            first, second = pl.read_parquet(day1["path"]), pl.read_parquet(day2["path"])
            inputs = {day: common.open_tickets(day) for day in (DAY, DAY2)}
            if rows == "sample":
                inputs = {day: frame.head(common.generation_rows()) for day, frame in inputs.items()}
            assert first["text"].to_list() == inputs[DAY]["text"].to_list()
            assert second["text"].to_list() == inputs[DAY2]["text"].to_list()
            stored_ok = set(first.filter(pl.col("sutro_row_status") == "ok")["text"])
            # Day 1: every distinct row billed once (identical tickets are sent once), nothing reused.
            assert (day1["rows_submitted"], day1["rows_from_store"]) == (first["text"].n_unique(), 0), name
            # Day 2: only the rows day 1 did not store as ok are billed; the others come from the store.
            billed = len(set(second["text"]) - stored_ok)
            reused = int(second["text"].is_in(list(stored_ok)).sum())
            assert (day2["rows_submitted"], day2["rows_from_store"]) == (billed, reused), (pipeline, name)
            # The server ran exactly those rows: its job (none when every row was stored) has that many.
            for step, count in ((day1, day1["rows_submitted"]), (day2, billed)):
                assert (jobs[step["job_id"]].num_rows if step["job_id"] else 0) == count, (pipeline, name)
            # A stored row is day 1's result for the same ticket text, paid for by a day-1 job of this step.
            day1_jobs = set(day1["job_ids"] or [day1["job_id"]])
            came = second.filter(~pl.col("sutro_job_id").is_in(day2["job_ids"] or [day2["job_id"]]))
            assert came.height == reused and set(came["sutro_job_id"]) <= day1_jobs, (pipeline, name)
            assert set(came["text"]) <= stored_ok and (came["sutro_row_status"] == "ok").all(), (pipeline, name)
            then = first.unique("text", keep="first").select("text", *outputs)
            same = came.select("text", *outputs).join(then, on="text", how="left", suffix="_day1").select(
                [pl.col(c).eq_missing(pl.col(f"{c}_day1")).all() for c in outputs])
            assert same.row(0) == (True,) * len(outputs), (pipeline, name)
            if rows == "open":  # triage and embeddings: every row ok, so every ticket still open is reused
                shared = inputs[DAY2].filter(pl.col("text").is_in(inputs[DAY]["text"].implode())).height
                assert shared > 0 and reused == shared and billed < day1["rows_submitted"], (pipeline, name)
            line = re.search(rf"^{pipeline} +{name} +billed {day1['rows_submitted']} of {first.height}\b.*"
                             rf"billed {billed} of {second.height}\b", out, re.MULTILINE)
            assert line, (pipeline, name, out)
    # The server billed no job the manifests do not name.
    assert set(jobs) == reported
    # The review topics have no row store (a day's reviews are new ones): each day pays for every review.
    prefect = _steps(workdir, "prefect")
    for day in (DAY, DAY2):
        assert prefect[day, "review_topics"]["rows_from_store"] is None
        assert jobs[prefect[day, "review_topics"]["job_id"]].num_rows == common.load_reviews(day).height


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
    # This key's billed jobs are the demo's: triage and embeddings on each day (the triage steps' cost dry
    # runs are not billed). The second day's are smaller: the tickets still open came from the row store.
    billed = [j for j in sutro_client.list_jobs() if not j.get("dry_run")]
    assert all(j.job_id in out and j.status.value == "SUCCEEDED" for j in billed)
    day1, day2 = common.open_tickets(DAY)["text"], common.open_tickets(DAY2)["text"]
    new = day2.filter(~day2.is_in(day1.implode())).n_unique()
    expected = [(model, n) for model in ("ticket-triage", common.DEFAULT_EMBEDDING_MODEL)
                for n in (day1.n_unique(), new)]
    assert sorted((j.model, j.num_rows) for j in billed) == sorted(expected)
    assert new < day1.n_unique()


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


@pytest.mark.parametrize("args", [["--day", "2025-12-31"], ["--day", common.LAST_DAY], ["--days", "0"],
                                  ["--day", "2026-01-06", "--days", "3"]])
def test_days_outside_the_data_are_refused_before_anything_starts(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # The demo runs --day and the day after it (--days 2): the last data day has no day after it.
    with pytest.raises(SystemExit) as exc:
        demo.main(["--workdir", str(tmp_path / "demo"), *args])
    assert exc.value.code == 2
    assert not (tmp_path / "demo").exists()
    assert "--day" in capsys.readouterr().err


def test_consecutive_days_share_open_tickets_and_the_data_regenerates_identically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second demo day shares tickets with the first (what the row stores reuse), and make_data.py
    writes exactly the committed CSVs (the data is deterministic)."""
    import importlib.util

    first, second = common.open_tickets(DAY), common.open_tickets(DAY2)
    shared = set(first["ticket_id"]) & set(second["ticket_id"])
    assert 0 < len(shared) < second.height
    assert first.columns == common.TICKET_COLUMNS  # no closed_date: a day's query cannot know the future
    assert set(common.load_tickets(DAY)["ticket_id"]) <= set(first["ticket_id"])
    spec = importlib.util.spec_from_file_location("make_data", common.DATA_DIR / "make_data.py")
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    monkeypatch.setattr(make_data, "HERE", tmp_path / "example_pipelines" / "data")
    make_data.HERE.mkdir(parents=True)
    make_data.main()
    for name in ("support_tickets.csv", "product_reviews.csv"):
        assert (make_data.HERE / name).read_bytes() == (common.DATA_DIR / name).read_bytes(), name


class _Jobs:
    """A stand-in for SutroClient.get_job: the jobs a server would hold."""

    def __init__(self, *jobs: tuple[str, int]) -> None:
        from sutro_core.models import Job

        self.jobs = {job_id: Job(job_id=job_id, status="SUCCEEDED", num_rows=n) for job_id, n in jobs}

    def get_job(self, job_id: str) -> Any:
        return self.jobs[job_id]


def _artifact(path: Path, job_ids: list[str], statuses: list[str] | None = None) -> str:
    pl.DataFrame({"text": [f"t{i}" for i in range(len(job_ids))], "inference_result": "x",
                  "sutro_row_status": statuses or ["ok"] * len(job_ids), "sutro_job_id": job_ids}).write_parquet(path)
    return str(path)


def _two_days(tmp_path: Path, **day2: Any) -> demo.PipelineRun:
    """Day 1 billed 3 rows in job-1; day 2's 3 rows all came from the store: no job (overridable)."""
    steps = [
        {"day": DAY, "step": "triage", "job_id": "job-1", "job_ids": [], "rows": 3, "rows_submitted": 3,
         "rows_from_store": 0, "row_status_counts": {"ok": 3, "cut": 0},
         "path": _artifact(tmp_path / "1.parquet", ["job-1"] * 3)},
        {"day": DAY2, "step": "triage", "job_id": None, "job_ids": [], "rows": 3, "rows_submitted": 0,
         "rows_from_store": 3, "row_status_counts": {"ok": 3},
         "path": _artifact(tmp_path / "2.parquet", ["job-1"] * 3)},
    ]
    steps[1].update(day2)
    return demo.PipelineRun("airflow", steps=steps)


def test_check_steps_accepts_a_step_whose_rows_were_all_stored(tmp_path: Path) -> None:
    run = _two_days(tmp_path)
    demo.check_steps(run, _Jobs(("job-1", 3)))
    assert run.error is None and run.ok
    assert run.steps[1]["job_seconds"] is None and run.steps[1]["repair_rows"] == 0
    assert "(none: every row stored)" in demo.format_summary([run])
    assert "billed 0 of 3 (3 reused)" in demo.format_reuse([run])


def test_check_steps_accepts_billed_reused_and_repaired_rows(tmp_path: Path) -> None:
    # Day 2: one row stored (job-1), two billed in job-2, one of them repaired by job-3.
    path = _artifact(tmp_path / "2b.parquet", ["job-1", "job-2", "job-3"])
    run = _two_days(tmp_path, job_id="job-2", job_ids=["job-2", "job-3"], rows_submitted=2, rows_from_store=1,
                    path=path)
    demo.check_steps(run, _Jobs(("job-1", 3), ("job-2", 2), ("job-3", 1)))
    assert run.error is None
    assert "billed 2 of 3 (1 reused) +1 repaired" in demo.format_reuse([run])


@pytest.mark.parametrize(("day2", "jobs", "said"), [
    # stored rows that name a job this step never ran on an earlier day
    ({"path": "other"}, [("job-1", 3)], "no earlier day of this step ran"),
    # the manifest says 2 rows were billed, the server's job ran 3
    ({"job_id": "job-2", "rows_submitted": 2, "rows_from_store": 0, "path": "job-2"}, [("job-1", 3), ("job-2", 3)],
     "2 distinct rows were billed, but job job-2 ran 3"),
    # every row stored, but the manifest claims some were billed
    ({"rows_submitted": 1}, [("job-1", 3)], "1 distinct rows were billed, but no job ran"),
    # the manifest says 2 rows came from the store, the file has 3 from earlier jobs
    ({"rows_from_store": 2}, [("job-1", 3)], "the manifest says 2 came from the row store"),
    # the statuses in the file are not the manifest's
    ({"row_status_counts": {"ok": 2, "cut": 1}}, [("job-1", 3)], "counts rows by status"),
    # one row too many in the manifest
    ({"rows": 4}, [("job-1", 3)], "the manifest says 4 rows"),
])
def test_check_steps_rejects_what_the_server_or_the_file_contradicts(
    tmp_path: Path, day2: dict[str, Any], jobs: list[tuple[str, int]], said: str
) -> None:
    if day2.get("path") == "other":
        day2["path"] = _artifact(tmp_path / "x.parquet", ["job-9"] * 3)
    elif day2.get("path") == "job-2":
        day2["path"] = _artifact(tmp_path / "y.parquet", ["job-2"] * 3)
    run = _two_days(tmp_path, **day2)
    demo.check_steps(run, _Jobs(*jobs))
    assert run.error is not None and said in run.error and run.error.startswith(f"{DAY2} triage"), run.error
    assert not run.ok
