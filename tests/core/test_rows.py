"""Rows: every artifact says how good each row is, repair rounds re-run only the rows that are not ok, and
``max_failed_rows`` fails the step after the artifact is written (issue 24), against a real sutro-local.

The `echo` engine cuts a row at ``max_tokens`` words and says ``finish_reason: length``: deterministic,
so which rows are cut, and what a repair with twice the ``max_tokens`` gives back, is known exactly.
"""

from __future__ import annotations

import polars as pl
import pytest

from sutro_core import (
    AsyncSutroClient,
    JobSpec,
    PollPolicy,
    RowsFailedError,
    SutroClient,
    is_retryable,
    load_results,
)
from sutro_core.results.row_status import matches, statuses

FAST = PollPolicy(initial_interval=0.05, max_interval=0.2)
# 2, 5 and 9 words: at max_tokens=3 rows 2 and 3 are cut; a repair at 6 fixes row 2, a second at 12 row 3.
ROWS = ["one two", "one two three four five", "a b c d e f g h i"]


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory):
    from sutro_local.testing import LocalServer

    cfg = {"models": {"echo": {"engine": "echo", "price": {"input_per_1m": 1.0, "output_per_1m": 1.0}}}}
    with LocalServer(tmp_path_factory.mktemp("rows") / "srv", cfg) as server:
        yield server


@pytest.fixture
def client(echo_server):
    with SutroClient(api_key=echo_server.api_key, api_url=echo_server.url, poll=FAST) as c:
        yield c


def _spec(tmp_path, **settings):
    frame = pl.DataFrame({"id": [1, 2, 3], "text": ROWS})
    return JobSpec.for_inference(frame, "echo", column="text", carry_columns=["id"], poll=FAST,
                                 sampling_params={"max_tokens": 3}, output_uri=str(tmp_path / "out.parquet"),
                                 **settings)


def _jobs(client: SutroClient) -> list:
    return sorted((j for j in client.list_jobs() if not (j.model_extra or {}).get("dry_run")),
                  key=lambda j: j.created_at)


def test_every_artifact_says_each_rows_status_and_job(client, tmp_path):
    outcome = client.run(_spec(tmp_path), scope=("rows", "status", "1"))
    df = load_results(outcome.manifest)
    assert df["sutro_row_status"].to_list() == ["ok", "cut", "cut"]
    assert df["sutro_job_id"].to_list() == [outcome.handle.job_id] * 3
    assert df["inference_result"].to_list() == ["one two", "one two three", "a b c"]  # what was paid for, kept
    assert outcome.manifest.row_status_counts == {"ok": 1, "cut": 2, "invalid": 0, "missing": 0}
    assert outcome.manifest.failed_rows == 2


def test_repair_rounds_rerun_only_the_rows_that_are_not_ok(client, tmp_path):
    before = {j.job_id for j in _jobs(client)}
    outcome = client.run(_spec(tmp_path, repair_rounds=2), scope=("rows", "repair", "1"))
    jobs = [j for j in _jobs(client) if j.job_id not in before]
    # main job: 3 rows; round 1: the 2 cut rows at max_tokens 6; round 2: the one still cut, at 12
    assert [j.num_rows for j in jobs] == [3, 2, 1]
    assert outcome.manifest.job_ids == [j.job_id for j in jobs]
    df = load_results(outcome.manifest)
    assert df["id"].to_list() == [1, 2, 3]  # input order
    assert df["inference_result"].to_list() == ROWS
    assert df["sutro_row_status"].to_list() == ["ok"] * 3
    assert df["sutro_job_id"].to_list() == [jobs[0].job_id, jobs[1].job_id, jobs[2].job_id]
    assert outcome.manifest.row_status_counts["ok"] == 3
    assert outcome.manifest.cost == pytest.approx(sum(j.job_cost for j in jobs))


def test_a_retry_reattaches_to_the_main_and_repair_jobs(client, tmp_path):
    scope = ("rows", "retry", "1")
    client.run(_spec(tmp_path, repair_rounds=2), scope=scope)
    before = {j.job_id for j in _jobs(client)}
    again = client.run(_spec(tmp_path, repair_rounds=2), scope=scope)  # a retry of the same step
    assert {j.job_id for j in _jobs(client)} == before  # nothing submitted, nothing billed twice
    assert load_results(again.manifest)["sutro_row_status"].to_list() == ["ok"] * 3


def test_max_failed_rows_fails_the_step_after_writing_every_paid_row(client, tmp_path):
    spec = _spec(tmp_path, repair_rounds=1, max_failed_rows=0)
    with pytest.raises(RowsFailedError) as info:
        client.run(spec, scope=("rows", "limit", "1"))
    assert not is_retryable(info.value)
    manifest = info.value.manifest
    assert manifest.row_status_counts == {"ok": 2, "cut": 1, "invalid": 0, "missing": 0}
    df = load_results(manifest)  # the artifact was written first: every row, with its status
    assert df["sutro_row_status"].to_list() == ["ok", "ok", "cut"]
    # a count of 1 (not a fraction of 100%) is exceeded by 2 cut rows; a fraction of 0.5 allows 1 of 3
    with pytest.raises(RowsFailedError):
        client.run(_spec(tmp_path, max_failed_rows=1), scope=("rows", "limit", "count"))
    # with one repair round 1 of 3 rows stays cut: within 0.5
    assert client.run(_spec(tmp_path, repair_rounds=1, max_failed_rows=0.5),
                      scope=("rows", "limit", "2")).manifest.failed_rows == 1


def test_the_cost_gate_covers_repairs(client, tmp_path):
    main = client.estimate_cost(_spec(tmp_path).request)
    # A budget that fits the main job but not a repair of its two cut rows: the repairs end, the artifact
    # is written with the rows as they are.
    outcome = client.run(_spec(tmp_path, repair_rounds=2, max_cost_usd=main * 1.1), scope=("rows", "gate", "1"))
    assert outcome.manifest.job_ids in ([], [outcome.handle.job_id])
    assert outcome.manifest.row_status_counts["cut"] == 2
    enough = client.run(_spec(tmp_path, repair_rounds=2, max_cost_usd=main * 3), scope=("rows", "gate", "2"))
    assert len(enough.manifest.job_ids) == 3 and enough.manifest.row_status_counts["ok"] == 3


async def test_the_async_client_repairs_the_same_way(echo_server, tmp_path):
    async with AsyncSutroClient(api_key=echo_server.api_key, api_url=echo_server.url, poll=FAST) as client:
        outcome = await client.run(_spec(tmp_path, repair_rounds=2), scope=("rows", "async", "1"))
    assert load_results(outcome.manifest)["sutro_row_status"].to_list() == ["ok"] * 3


def test_bad_settings_name_the_field(tmp_path):
    from sutro_core import InputValidationError

    with pytest.raises(InputValidationError, match="repair_rounds"):
        _spec(tmp_path, repair_rounds=-1)
    with pytest.raises(InputValidationError, match="max_failed_rows"):
        _spec(tmp_path, max_failed_rows=1.5)


def test_statuses_follow_the_schema():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"enum": ["x", "y"]}},
              "required": ["a"], "additionalProperties": False}
    outputs = pl.Series(['{"a": 1}', '{"a"', None, '{"b": "x"}', '{"a": 1, "c": 2}', '{"a": 1, "b": "z"}', "", "[1]"])
    finish = pl.Series(["stop", "length", "stop", "stop", "stop", "stop", "stop", "stop"])
    assert statuses(outputs, finish, schema).to_list() == [
        "ok", "cut", "missing", "invalid", "invalid", "invalid", "missing", "invalid"]
    assert statuses(pl.Series([[0.1, 0.2], [], None]), None, None).to_list() == ["ok", "missing", "missing"]
    assert statuses(pl.Series(['{"x": 1}', "not json"]), None, None, expect_objects=True).to_list() == ["ok", "invalid"]
    assert matches({"n": 2.0}, {"properties": {"n": {"type": "integer"}}})
    assert not matches({"n": True}, {"properties": {"n": {"type": "number"}}})
