"""The pollers' hot reads (job-status, jobs/{id}, list-jobs) answered without FastAPI dependencies:
same records everywhere, auth checked fresh on every call, long lists off the event loop."""

from __future__ import annotations

import sqlite3

import httpx
import pytest
from sutro_local.api.jobs import INLINE_LIST_MAX
from sutro_local.store import hash_key

from .helpers import api_client, submit, wait_status


def _db(server) -> sqlite3.Connection:
    return sqlite3.connect(server.data_dir / "sutro-local.db", timeout=30, isolation_level=None)


def _clone(server, job_id: str, count: int, **overrides) -> list[str]:
    """`count` copies of a job straight in the database (new ids, `overrides` set); their ids."""
    conn = _db(server)
    conn.row_factory = sqlite3.Row
    row = dict(conn.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone())
    row.pop("seq")
    row["idem_key"] = None
    ids = [f"{job_id}-c{i:04d}" for i in range(count)]
    rows = [tuple(dict(row, job_id=i, **overrides).values()) for i in ids]
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(f"INSERT INTO jobs({','.join(row)}) VALUES ({','.join('?' * len(row))})", rows)
    conn.execute("COMMIT")
    conn.close()
    return ids


def test_job_record_is_the_same_in_jobs_and_list_jobs(api, sutro_server):
    job_id = submit(api, model="all-minilm-l6-v2", inputs=["one", "two"])
    done = wait_status(api, job_id)
    [failed] = _clone(sutro_server, job_id, 1, status="FAILED", failure_reason="engine said no", dry_run=1)
    record = api.get(f"/jobs/{failed}").json()["job"]
    assert record["failure_reason"] == {"message": "engine said no"}
    assert record["dry_run"] is True and record["status"] == "FAILED"
    assert record["datetime_created"] == record["datetime_added"] == record["created_at"]
    assert record["datetime_started"] == record["started_at"] and record["datetime_completed"] == record["finished_at"]
    assert done["failure_reason"] is None and done["dry_run"] is False and done["num_rows"] == 2
    listed = {j["job_id"]: j for j in api.get("/list-jobs").json()["jobs"]}
    assert listed == {job_id: api.get(f"/jobs/{job_id}").json()["job"], failed: record}
    assert api.get(f"/v1/jobs/{failed}").json() == {"job": record}
    assert api.get(f"/job-status/{failed}").json() == {"job_status": {failed: "FAILED"}}


def test_a_removed_key_is_refused_on_the_next_read(sutro_server):
    key = sutro_server.create_key("soon-gone")
    with api_client(sutro_server.url, key) as api:
        job_id = submit(api, model="all-minilm-l6-v2", inputs=["x"])
        for path in (f"/job-status/{job_id}", f"/jobs/{job_id}", "/list-jobs"):
            assert api.get(path).status_code == 200
        conn = _db(sutro_server)
        conn.execute("DELETE FROM keys WHERE key_hash=?", (hash_key(key),))
        conn.close()
        for path in (f"/job-status/{job_id}", f"/v1/jobs/{job_id}", "/list-jobs", "/job-status/not-a-job-id"):
            r = api.get(path)
            assert r.status_code == 401 and r.json()["code"] == "invalid_api_key", (path, r.text)


@pytest.mark.parametrize("path", ["/job-status/{}", "/jobs/{}", "/v1/job-status/{}"])
def test_auth_comes_before_the_job_lookup(sutro_server, api, path):
    bad = httpx.get(sutro_server.url + path.format("job-nope"), headers={"Authorization": "Key sk-local-wrong"})
    assert bad.status_code == 401 and bad.json()["code"] == "invalid_api_key"
    malformed = httpx.get(sutro_server.url + path.format("bad id!"), headers={"Authorization": "Basic x"})
    assert malformed.status_code == 401 and malformed.json()["code"] == "malformed_authorization"
    missing = api.get(path.format("job-nope"))
    assert missing.status_code == 404 and missing.json()["code"] == "job_not_found"
    impossible = api.get(path.format("not a job"))
    assert impossible.status_code == 404 and impossible.json()["code"] == "job_not_found"


def test_a_long_list_is_whole_and_newest_first(api, sutro_server):
    first = submit(api, model="all-minilm-l6-v2", inputs=["a"],
                   description="[sutro-idempotency-key:fastreads-0001]")  # fmt: skip
    wait_status(api, first)
    clones = _clone(sutro_server, first, INLINE_LIST_MAX + 50)  # past the inline limit: read in a thread
    last = submit(api, model="all-minilm-l6-v2", inputs=["b"])
    wait_status(api, last)  # a finished list cannot change between the two reads compared below
    jobs = api.get("/list-jobs").json()["jobs"]
    assert [j["job_id"] for j in jobs] == [last, *reversed(clones), first]
    assert api.get("/v1/list-jobs").json()["jobs"] == api.get("/list-jobs").json()["jobs"]
    only = api.get("/list-jobs", params={"idempotency_key": "fastreads-0001"}).json()["jobs"]
    assert [j["job_id"] for j in only] == [first]  # the clones carry no key
    bad = api.get("/list-jobs", params={"idempotency_key": "no"})
    assert bad.status_code == 400 and "idempotency_key" in bad.json()["detail"]


def test_openapi_still_documents_the_read_parameters(sutro_server):
    paths = httpx.get(sutro_server.url + "/openapi.json").json()["paths"]
    assert [p["name"] for p in paths["/job-status/{job_id}"]["get"]["parameters"]] == ["job_id"]
    assert [p["name"] for p in paths["/jobs/{job_id}"]["get"]["parameters"]] == ["job_id"]
    assert [p["name"] for p in paths["/list-jobs"]["get"]["parameters"]] == ["idempotency_key"]
