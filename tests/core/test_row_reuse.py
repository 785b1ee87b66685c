"""Row reuse across runs (``JobSpec(row_store=...)``, issue 24) against a real sutro-local: only rows without a
stored ``ok`` result are sent (each distinct row once), the artifact is the one a fresh run writes, and the
rows paid for are added to the store. The server's own job list (rows per job) is the proof of what was
billed.

The ``echo`` model answers each row with its text, cut at ``max_tokens`` words: deterministic on any machine.
"""

from __future__ import annotations

import threading
import warnings

import polars as pl
import pytest

from sutro_core import AsyncSutroClient, InputValidationError, JobSpec, PollPolicy, SutroClient, load_results
from sutro_core.row_store import RowStore, RowStoreWarning

FAST = PollPolicy(initial_interval=0.05, max_interval=0.2)
SAME = ["id", "text", "inference_result", "sutro_row_status"]  # what a fresh run and a reusing run share


@pytest.fixture
def client(sutro_server, sutro_key):
    with SutroClient(api_key=sutro_key, api_url=sutro_server.url, poll=FAST) as c:
        yield c


def tickets(ids) -> pl.DataFrame:
    return pl.DataFrame({"id": list(ids), "text": [f"ticket number {i} is open" for i in ids]})


def spec(frame: pl.DataFrame, out, store, **settings) -> JobSpec:
    return JobSpec.for_inference(frame, "echo", column="text", poll=FAST, output_uri=str(out),
                                 row_store=None if store is None else str(store), **settings)


def billed(client: SutroClient) -> list[int]:
    """Rows of every real (not dry-run) job this test's key submitted, oldest first."""
    jobs = [j for j in client.list_jobs() if not (j.model_extra or {}).get("dry_run")]
    return [j.num_rows for j in sorted(jobs, key=lambda j: j.created_at)]


def test_a_rerun_with_90_percent_stored_sends_only_the_other_10_and_writes_what_a_fresh_run_writes(client, tmp_path):
    store = tmp_path / "rows"
    day1 = client.run(spec(tickets(range(90)), tmp_path / "d1.parquet", store), scope=("daily", "d1"))
    assert (day1.manifest.rows_submitted, day1.manifest.rows_from_store) == (90, 0)

    day2 = client.run(spec(tickets(range(100)), tmp_path / "d2.parquet", store), scope=("daily", "d2"))
    assert billed(client) == [90, 10]  # the server's own row counts: day two paid for 10 rows
    assert (day2.manifest.rows_submitted, day2.manifest.rows_from_store) == (10, 90)
    assert (day2.handle.rows_submitted, day2.handle.rows_from_store) == (10, 90)

    fresh = client.run(spec(tickets(range(100)), tmp_path / "fresh.parquet", None), scope=("fresh", "d2"))
    reused, alone = load_results(day2.manifest), load_results(fresh.manifest)
    assert reused.select(SAME).equals(alone.select(SAME))
    assert reused.columns == alone.columns
    # each row names the job that paid for it: day one's for the 90 stored rows, day two's for the rest
    assert reused["sutro_job_id"].to_list() == [day1.handle.job_id] * 90 + [day2.handle.job_id] * 10
    assert day2.manifest.row_status_counts["ok"] == 100


def test_a_third_identical_run_sends_nothing_and_still_writes_the_artifact(client, tmp_path):
    store = tmp_path / "rows"
    first = client.run(spec(tickets(range(20)), tmp_path / "a.parquet", store), scope=("daily", "a"))
    again = client.run(spec(tickets(range(20)), tmp_path / "b.parquet", store), scope=("daily", "b"))
    assert billed(client) == [20]
    assert again.job is None and again.handle.job_id is None and not again.handle.has_job
    assert (again.manifest.rows_submitted, again.manifest.rows_from_store, again.manifest.cost) == (0, 20, 0.0)
    assert again.manifest.job_id is None and again.manifest.job_ids == [] and again.manifest.model == "echo"
    assert load_results(again.manifest).select(SAME).equals(load_results(first.manifest).select(SAME))


def test_identical_rows_in_one_run_are_sent_once_and_fanned_out(client, tmp_path):
    frame = pl.DataFrame({"id": range(6), "text": ["same words", "other", "same words", "same words", "other", "x"]})
    outcome = client.run(spec(frame, tmp_path / "o.parquet", tmp_path / "rows"), scope=("dups", "1"))
    assert billed(client) == [3]
    assert outcome.manifest.rows_submitted == 3 and outcome.manifest.rows == 6
    df = load_results(outcome.manifest)
    assert df["id"].to_list() == list(range(6))
    assert df["inference_result"].to_list() == frame["text"].to_list()


def test_only_ok_rows_are_stored_so_a_cut_row_is_paid_again_until_repaired(client, tmp_path):
    store = tmp_path / "rows"
    frame = pl.DataFrame({"id": [1, 2], "text": ["short one", "a b c d e f g"]})
    settings = {"sampling_params": {"max_tokens": 3}}
    first = client.run(spec(frame, tmp_path / "1.parquet", store, **settings), scope=("cut", "1"))
    assert load_results(first.manifest)["sutro_row_status"].to_list() == ["ok", "cut"]
    second = client.run(spec(frame, tmp_path / "2.parquet", store, repair_rounds=2, **settings), scope=("cut", "2"))
    # run 2 sends only the cut row; its repair at max_tokens 6 is still cut, the one at 12 is ok
    assert billed(client) == [2, 1, 1, 1]
    df = load_results(second.manifest)
    assert df["sutro_row_status"].to_list() == ["ok", "ok"]
    assert df["inference_result"].to_list() == frame["text"].to_list()
    assert len(second.manifest.job_ids) == 3
    third = client.run(spec(frame, tmp_path / "3.parquet", store, repair_rounds=2, **settings), scope=("cut", "3"))
    assert third.job is None and billed(client) == [2, 1, 1, 1]  # the repaired row was stored
    assert load_results(third.manifest)["sutro_row_status"].to_list() == ["ok", "ok"]


def test_a_retry_reattaches_to_its_job_even_after_the_store_gained_rows(client, tmp_path):
    store = tmp_path / "rows"
    step = spec(tickets(range(30)), tmp_path / "retry.parquet", store)
    handle = client.start(step, scope=("retry", "1"))
    assert handle.rows_submitted == 30
    # another step stores 10 of the same rows before the retry
    client.run(spec(tickets(range(10)), tmp_path / "other.parquet", store), scope=("other", "1"))
    outcome = client.run(step, scope=("retry", "1"))
    assert outcome.handle.job_id == handle.job_id and outcome.handle.reattached
    assert billed(client) == [30, 10]
    df = load_results(outcome.manifest)
    assert df["inference_result"].to_list() == tickets(range(30))["text"].to_list()
    assert df["sutro_job_id"].to_list() == [handle.job_id] * 30  # the rows this step paid for


def test_an_unreadable_store_file_is_skipped_with_a_warning_and_its_rows_are_sent_again(client, tmp_path):
    store = tmp_path / "rows"
    client.run(spec(tickets(range(10)), tmp_path / "1.parquet", store), scope=("corrupt", "1"))
    (name,) = RowStore(store).files()
    (store / name).write_bytes(b"PAR1 not really parquet PAR1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = client.run(spec(tickets(range(10)), tmp_path / "2.parquet", store), scope=("corrupt", "2"))
    assert any(issubclass(w.category, RowStoreWarning) and name in str(w.message) for w in caught)
    assert billed(client) == [10, 10]
    assert load_results(outcome.manifest)["sutro_row_status"].to_list() == ["ok"] * 10


def test_two_steps_writing_one_store_at_once_each_get_every_row(sutro_server, sutro_key, tmp_path):
    results: dict[str, object] = {}

    def step(store, name: str, ids, round_: int) -> None:
        with SutroClient(api_key=sutro_key, api_url=sutro_server.url, poll=FAST) as c:
            try:
                results[name] = c.run(spec(tickets(ids), tmp_path / f"{name}{round_}.parquet", store),
                                      scope=("both", name, round_))
            except Exception as exc:  # noqa: BLE001 - reported below
                results[name] = exc

    # Three rounds, each two writers with overlapping rows on a fresh store (a race: one round proves little).
    for round_ in range(3):
        store = tmp_path / f"rows{round_}"
        writers = {"a": range(0, 40), "b": range(20, 60)}
        threads = [threading.Thread(target=step, args=(store, name, ids, round_)) for name, ids in writers.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for name, ids in writers.items():
            outcome = results.pop(name)
            assert not isinstance(outcome, Exception), outcome
            df = load_results(outcome.manifest)
            assert df["inference_result"].to_list() == tickets(ids)["text"].to_list()
            assert df["sutro_row_status"].to_list() == ["ok"] * len(ids)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RowStoreWarning)  # every file the writers left reads
            assert RowStore(store).info()["unreadable"] == []
            step(store, "all", range(60), round_)
        everything = results.pop("all")
        assert not isinstance(everything, Exception), everything
        assert everything.job is None  # between them the two writers stored all 60 rows


async def test_the_async_client_reuses_rows_too(sutro_server, sutro_key, tmp_path):
    store = tmp_path / "rows"
    async with AsyncSutroClient(api_key=sutro_key, api_url=sutro_server.url, poll=FAST) as c:
        await c.run(spec(tickets(range(5)), tmp_path / "1.parquet", store), scope=("async", "1"))
        outcome = await c.run(spec(tickets(range(8)), tmp_path / "2.parquet", store), scope=("async", "2"))
    assert (outcome.manifest.rows_submitted, outcome.manifest.rows_from_store) == (3, 5)


def test_row_store_settings_that_cannot_work_are_refused_by_name(tmp_path):
    frame = tickets(range(2))
    with pytest.raises(InputValidationError, match="row_store.*parquet"):
        spec(frame, tmp_path / "o.csv", tmp_path / "rows", output_format="csv")
    with pytest.raises(InputValidationError, match="row_store.*URL"):
        JobSpec.for_inference("https://example.com/rows.csv", "echo", column="text", row_store=str(tmp_path))
    with pytest.raises(InputValidationError, match="row_store"):
        spec(frame, tmp_path / "o.parquet", "  ")
    # options (credentials) never travel with the spec
    body = spec(frame, tmp_path / "o.parquet", tmp_path / "rows", row_store_options={"secret": "s3cr3t"}).to_dict()
    assert "s3cr3t" not in str(body) and body["row_store"] == str(tmp_path / "rows")
