"""Encoded job records stored in SQLite (`job_wire`): written with every change the Store makes,
dropped by triggers on any other write, never served stale, kept across restarts and kill -9."""

from __future__ import annotations

import json
import sqlite3

import httpx
from pydantic_core import to_json
from sutro_local.store import TERMINAL_STATUSES, Store, hash_key
from sutro_local.testing import LocalServer

from .helpers import api_client, submit, wait_status

ROW = {"status": "QUEUED", "model": "m", "job_priority": 0, "num_rows": 3, "description": "café ☕ [x]"}


def _store(tmp_path) -> tuple[Store, str]:
    store = Store(tmp_path / "db.sqlite")
    return store, hash_key(store.create_key("me"))


def _create(store: Store, owner: str, job_id: str, **extra) -> str:
    return store.create_job({**ROW, "job_id": job_id, "owner": owner, **extra}, dedupe=False)[0]


def _built(store: Store, job_id: str) -> bytes:
    """The record encoded from the job's columns now (what a read without a stored record answers)."""
    return to_json(store.get_job(job_id).to_wire())


def _stored(store: Store, job_id: str) -> bytes | None:
    row = store._conn().execute(
        "SELECT w.wire FROM jobs j JOIN job_wire w ON w.seq=j.seq WHERE j.job_id=?", (job_id,)
    ).fetchone()
    return None if row is None else row[0]


def _listed(store: Store, owner: str, **kw) -> list[dict]:
    return json.loads(b'{"jobs":[' + store.list_json(owner, **kw).joined + b"]}")["jobs"]


def test_every_store_write_stores_the_current_record(tmp_path):
    store, owner = _store(tmp_path)
    _create(store, owner, "job-a")
    assert _stored(store, "job-a") == _built(store, "job-a")  # a new job is stored at once
    steps = [
        lambda: store.transition("job-a", ("QUEUED",), "STARTING", started_at="2026-12-01T10:00:00.000Z"),
        lambda: store.transition("job-a", ("STARTING",), "RUNNING"),
        lambda: store.record_chunk("job-a", 0, 0, 2, 10, 5, 0.1 + 0.2),  # a float that must survive as is
        lambda: store.transition("job-a", ("RUNNING",), "SUCCEEDED", finished_at="2026-12-01T10:00:01.000Z"),
    ]
    for step in steps:
        step()
        assert _stored(store, "job-a") == _built(store, "job-a")
    found, body = store.key_and_job_json(owner, "job-a")
    assert found and json.loads(body)["job_cost"] == 0.30000000000000004 and b"caf\xc3\xa9 \xe2\x98\x95" in body
    assert json.loads(body) == store.get_job("job-a").to_wire()
    assert not store.transition("job-a", ("RUNNING",), "FAILED")  # a terminal job keeps its record
    assert json.loads(_stored(store, "job-a"))["status"] == "SUCCEEDED"


def test_a_list_is_the_same_bytes_as_encoding_the_records_together(tmp_path):
    store, owner = _store(tmp_path)
    ids = [_create(store, owner, f"job-{i:03d}", job_cost=i / 3) for i in range(250)]
    for job_id in ids[::3]:
        store.transition(job_id, ("QUEUED",), "CANCELLED", finished_at="t")
    whole = b'{"jobs":[' + store.list_json(owner).joined + b"]}"
    rows = [store.get_job(i).to_wire() for i in reversed(ids)]  # newest first
    assert whole == to_json({"jobs": rows})
    assert store.list_json(owner, limit=10) == (10, b",".join(to_json(r) for r in rows[:10]), 0)
    assert store.list_json("nobody").joined == b"" and store.list_json("nobody").count == 0
    store._conn().execute("DELETE FROM job_wire WHERE seq % 2 = 0")  # some not stored: built the same
    unstored = len([i for i in ids[::3] if (int(i[4:]) + 1) % 2 == 0])  # seq = index + 1
    assert store.list_json(owner) == (250, whole[9:-2], unstored)


def test_any_other_write_drops_the_record_and_the_read_is_current(tmp_path):
    store, owner = _store(tmp_path)
    _create(store, owner, "job-a")
    store.transition("job-a", ("QUEUED",), "FAILED", failure_reason="first", finished_at="t")
    conn = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)  # another writer: no Store
    conn.execute("UPDATE jobs SET failure_reason='second' WHERE job_id='job-a'")
    assert _stored(store, "job-a") is None
    assert json.loads(store.key_and_job_json(owner, "job-a")[1])["failure_reason"] == {"message": "second"}
    assert _listed(store, owner)[0]["failure_reason"] == {"message": "second"}
    store.update_job("job-a", failure_reason="third")
    assert json.loads(_stored(store, "job-a"))["failure_reason"] == {"message": "third"}
    conn.execute("DELETE FROM jobs WHERE job_id='job-a'")
    assert conn.execute("SELECT count(*) FROM job_wire").fetchone()[0] == 0  # one record a job, gone with it
    assert store.key_and_job_json(owner, "job-a") == (True, None)
    conn.close()


def test_an_upgraded_database_stores_finished_records_on_a_storing_list(tmp_path):
    store, owner = _store(tmp_path)
    for i, status in enumerate(["SUCCEEDED", "RUNNING", "CANCELLED", "QUEUED"]):
        _create(store, owner, f"job-{i}", status=status)
    store._conn().execute("DELETE FROM job_wire")  # as if written before job_wire existed
    plain = store.list_json(owner)
    assert plain.count == 4 and plain.unstored == 2  # built from the rows, finished ones not stored yet
    assert store._conn().execute("SELECT count(*) FROM job_wire").fetchone()[0] == 0
    storing = store.list_json(owner, store_missing=True)
    assert storing == (4, plain.joined, 0)
    stored = {r[0] for r in store._conn().execute(
        "SELECT j.status FROM job_wire w JOIN jobs j ON j.seq=w.seq")}  # fmt: skip
    assert stored == {"SUCCEEDED", "CANCELLED"}  # a live job's record is the writers' to store
    assert store.list_json(owner) == (4, plain.joined, 0)


def test_records_survive_a_restart_and_requeue_rewrites_them(tmp_path):
    store, owner = _store(tmp_path)
    _create(store, owner, "job-run")
    store.transition("job-run", ("QUEUED",), "RUNNING")
    _create(store, owner, "job-stop")
    store.transition("job-stop", ("QUEUED",), "CANCELLING")
    _create(store, owner, "job-done")
    store.transition("job-done", ("QUEUED",), "SUCCEEDED", finished_at="t")
    done = _stored(store, "job-done")
    store._conn().close()
    again = Store(tmp_path / "db.sqlite")  # a restart (the schema script and migrations run again)
    assert again.requeue_interrupted() == ["job-run"]
    by_id = {j["job_id"]: j for j in _listed(again, owner)}
    assert by_id["job-run"]["status"] == "QUEUED" and by_id["job-stop"]["status"] == "CANCELLED"
    assert by_id["job-stop"]["status"] in TERMINAL_STATUSES and by_id["job-stop"]["finished_at"]
    assert _stored(again, "job-done") == done
    for job_id in by_id:
        assert _stored(again, job_id) == _built(again, job_id)


def test_a_job_that_finishes_is_listed_and_read_with_its_final_record(api):
    job_id = submit(api, model="slow-embed", inputs=["a", "b", "c"])
    seen = wait_status(api, job_id, {"RUNNING"})
    assert seen["rows_processed"] < 3
    final = wait_status(api, job_id)
    assert final["status"] == "SUCCEEDED" and final["rows_processed"] == 3 and final["datetime_completed"]
    listed = {j["job_id"]: j for j in api.get("/list-jobs").json()["jobs"]}
    assert listed[job_id] == final == api.get(f"/v1/jobs/{job_id}").json()["job"]
    raw = api.get(f"/jobs/{job_id}").content
    assert raw == to_json({"job": final})  # compact, the bytes FastAPI's default encoding gave


def test_a_cancelled_job_is_listed_cancelled(api):
    job_id = submit(api, model="slow-embed", inputs=[f"r{i}" for i in range(50)])
    wait_status(api, job_id, {"RUNNING"})
    assert api.post(f"/job-cancel/{job_id}").status_code == 200
    final = wait_status(api, job_id)
    assert final["status"] == "CANCELLED" and final["finished_at"]
    listed = {j["job_id"]: j for j in api.get("/v1/list-jobs").json()["jobs"]}
    assert listed[job_id] == final == api.get(f"/jobs/{job_id}").json()["job"]


ECHO = {"models": {"slow-echo": {"engine": "echo", "chunk_size": 1, "min_seconds_per_chunk": 0.3}}}


def test_kill_9_then_restart_serves_current_records(tmp_path):
    with LocalServer(tmp_path / "data", ECHO) as srv:
        with api_client(srv.url, srv.api_key) as api:
            job_id = submit(api, model="slow-echo", inputs=[f"r{i}" for i in range(4)])
            before = wait_status(api, job_id, {"RUNNING"})
        srv.kill()
        srv.start()
        with api_client(srv.url, srv.api_key) as api:
            record = api.get(f"/jobs/{job_id}").json()["job"]
            assert record["status"] in ("QUEUED", "STARTING", "RUNNING")
            assert record["rows_processed"] >= before["rows_processed"]
            final = wait_status(api, job_id)
            assert final["status"] == "SUCCEEDED" and final["rows_processed"] == 4
            assert api.get("/list-jobs").json()["jobs"] == [final]
            conn = sqlite3.connect(srv.data_dir / "sutro-local.db")
            stored = conn.execute("SELECT wire FROM job_wire").fetchall()
            conn.close()
            assert [json.loads(w) for (w,) in stored] == [final]
        assert httpx.get(f"{srv.url}/list-jobs", headers={"Authorization": "Key sk-local-nope"}).status_code == 401


def test_a_long_list_of_unstored_jobs_is_stored_by_its_first_read(api, sutro_server, sutro_key):
    job_id = submit(api, model="all-minilm-l6-v2", inputs=["a"])
    wait_status(api, job_id)
    conn = sqlite3.connect(sutro_server.data_dir / "sutro-local.db", timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    row = dict(conn.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone())
    row.pop("seq")
    clones = [tuple(dict(row, job_id=f"{job_id}-s{i:03d}").values()) for i in range(300)]  # written as another
    conn.executemany(f"INSERT INTO jobs({','.join(row)}) VALUES ({','.join('?' * len(row))})", clones)  # tool would
    owner = hash_key(sutro_key)
    count = "SELECT count(*) FROM job_wire w JOIN jobs j ON j.seq=w.seq WHERE j.owner=?"
    assert conn.execute(count, (owner,)).fetchone()[0] == 1
    first = api.get("/list-jobs")
    assert first.status_code == 200 and len(first.json()["jobs"]) == 301
    assert conn.execute(count, (owner,)).fetchone()[0] == 301  # finished: stored by that read
    second = api.get("/v1/list-jobs")
    assert second.content == first.content == to_json(first.json())
    assert int(first.headers["content-length"]) == len(first.content)  # sent in parts, declared whole
    conn.close()


def test_a_list_over_sqlites_value_limit_is_joined_in_python(tmp_path):
    store, owner = _store(tmp_path)
    ids = [_create(store, owner, f"job-{i:02d}") for i in range(12)]
    whole = store.list_json(owner).joined
    assert len(whole) > 3000
    store._conn().setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 3000)  # as a list of ~1.5 million jobs meets 1 GB
    assert store.list_json(owner) == (12, whole, 0)
    assert [j["job_id"] for j in _listed(store, owner)] == ids[::-1]
