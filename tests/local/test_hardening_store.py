"""The store's idempotency-key column: old databases are migrated and backfilled from descriptions."""

from __future__ import annotations

import sqlite3

from sutro_core.idempotency import marker
from sutro_local.store import Store

OLD_SCHEMA = """
CREATE TABLE jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT UNIQUE NOT NULL, owner TEXT NOT NULL, status TEXT NOT NULL,
  model TEXT NOT NULL, name TEXT, description TEXT, job_priority INTEGER NOT NULL,
  num_rows INTEGER NOT NULL, created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT,
  input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
  job_cost REAL, cost_estimate REAL, failure_reason TEXT,
  rows_processed INTEGER NOT NULL DEFAULT 0, dry_run INTEGER NOT NULL DEFAULT 0,
  est_tokens INTEGER NOT NULL DEFAULT 0, params TEXT NOT NULL DEFAULT '{}'
);
"""


def _old_db(path, jobs):
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    for job_id, status, desc in jobs:
        conn.execute("INSERT INTO jobs(job_id, owner, status, model, description, job_priority, num_rows, created_at) "
                     "VALUES (?, 'o', ?, 'm', ?, 0, 1, 't')", (job_id, status, desc))
    conn.commit()
    conn.close()


def test_an_old_database_gets_the_key_column_backfilled(tmp_path):
    db = tmp_path / "db.sqlite"
    _old_db(db, [("job-a", "SUCCEEDED", f"daily {marker('backfill-key-1')}"), ("job-b", "FAILED", "no key")])
    store = Store(db)
    assert store.get_job("job-a").idem_key == "backfill-key-1" and store.get_job("job-b").idem_key is None
    assert [j.job_id for j in store.list_jobs("o", idem_key="backfill-key-1")] == ["job-a"]
    assert store.live_job_with_key("o", "backfill-key-1") == "job-a"
    Store(db)  # opening again is a no-op


def test_the_unique_index_refuses_a_second_live_job_with_a_key(tmp_path):
    import pytest

    store = Store(tmp_path / "db.sqlite")
    store.enforce_unique_idempotency_keys(True)
    row = {"owner": "o", "status": "QUEUED", "model": "m", "job_priority": 0, "num_rows": 1, "created_at": "t",
           "idem_key": "unique-key-1", "dry_run": 0}
    store.insert_job({**row, "job_id": "job-1"})
    with pytest.raises(sqlite3.IntegrityError):
        store.insert_job({**row, "job_id": "job-2"})  # the database itself, not only the submit code
    store.insert_job({**row, "job_id": "job-3", "dry_run": 1})  # dry runs are not live jobs of the key
    store.update_job("job-1", status="CANCELLED")
    store.insert_job({**row, "job_id": "job-4"})  # a terminal job frees the key
    assert store.create_job({**row, "job_id": "job-5"}, dedupe=True) == ("job-4", True)
