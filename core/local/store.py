"""SQLite (WAL) persistence for sutro-local: API keys, jobs, finished chunks, Functions.

One connection per thread (sqlite3 connections are not shared across threads); WAL lets the
API threads read while the worker writes, and lets `sutro-local keys create` add a key from
another process while the server runs. Keys are stored as SHA-256 hashes only.

Example:
    >>> import tempfile, pathlib
    >>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "db.sqlite")
    >>> key = s.create_key("me")
    >>> s.resolve_key(key).name
    'me'
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ACTIVE_STATUSES = ("QUEUED", "STARTING", "RUNNING")
TERMINAL_STATUSES = ("SUCCEEDED", "FAILED", "CANCELLED")
GLOBAL_OWNER = ""  # Functions from the config folder: visible to every key

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
  key_hash TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT UNIQUE NOT NULL, owner TEXT NOT NULL, status TEXT NOT NULL,
  model TEXT NOT NULL, name TEXT, description TEXT, job_priority INTEGER NOT NULL,
  num_rows INTEGER NOT NULL, created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT,
  input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
  job_cost REAL, cost_estimate REAL, failure_reason TEXT,
  rows_processed INTEGER NOT NULL DEFAULT 0, dry_run INTEGER NOT NULL DEFAULT 0,
  est_tokens INTEGER NOT NULL DEFAULT 0, params TEXT NOT NULL DEFAULT '{}', idem_key TEXT
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, seq);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, job_priority, seq);
CREATE TABLE IF NOT EXISTS chunks (
  job_id TEXT NOT NULL, chunk_index INTEGER NOT NULL, row_start INTEGER NOT NULL,
  row_end INTEGER NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
  finished_at TEXT NOT NULL, PRIMARY KEY (job_id, chunk_index)
);
CREATE TABLE IF NOT EXISTS functions (
  owner TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, definition TEXT NOT NULL,
  revision INTEGER NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (owner, name)
);
"""

# Jobs whose idempotency key a new submit reattaches to (the client's reattachable statuses).
LIVE_STATUSES = ("QUEUED", "STARTING", "RUNNING", "SUCCEEDED")
_LIVE_SQL = "status IN ('QUEUED','STARTING','RUNNING','SUCCEEDED')"
# Unique per key among live non-dry-run jobs: the database itself refuses a second live job with a key.
_IDEM_UNIQUE = (
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem_live ON jobs(owner, idem_key) "
    f"WHERE idem_key IS NOT NULL AND dry_run = 0 AND {_LIVE_SQL}"
)

JOB_FIELDS = (
    "job_id", "status", "num_rows", "model", "name", "description", "job_priority", "created_at",
    "started_at", "finished_at", "input_tokens", "output_tokens", "job_cost", "cost_estimate",
    "failure_reason", "rows_processed",
)  # fmt: skip


# The columns a job's wire record is built from (no `params`: reads never parse it).
WIRE_COLUMNS = (*JOB_FIELDS, "dry_run")
_WIRE_SELECT = ", ".join(f"j.{c}" for c in WIRE_COLUMNS)
_FAILURE_AT = JOB_FIELDS.index("failure_reason")
_CREATED_AT, _STARTED_AT, _FINISHED_AT = (JOB_FIELDS.index(c) for c in ("created_at", "started_at", "finished_at"))


def wire_record(values: Sequence[Any]) -> dict[str, Any]:
    """The wire record (`jobs/{id}`, `list-jobs`) of one job from its WIRE_COLUMNS values.

    Example:
        >>> rec = wire_record(("job-1", "RUNNING", 2, "m", None, None, 0, "t0", "t1", None, 0, 0, None, None,
        ...                    None, 1, 0))
        >>> rec["failure_reason"], rec["dry_run"], rec["datetime_started"]
        (None, False, 't1')
    """
    out = dict(zip(JOB_FIELDS, values))
    failure = values[_FAILURE_AT]
    out["failure_reason"] = {"message": failure} if failure else None
    out["dry_run"] = bool(values[-1])
    # The official SDK/CLI (`sutro jobs list`) read these names; ours stay beside them.
    out["datetime_created"] = out["datetime_added"] = values[_CREATED_AT]
    out["datetime_started"] = values[_STARTED_AT]
    out["datetime_completed"] = values[_FINISHED_AT]
    return out


def utcnow() -> str:
    """Now as an ISO 8601 UTC string (the wire format of job timestamps), rounded up to the millisecond:
    truncating could stamp a job started within a millisecond of its (microsecond) created_at before it."""
    now = datetime.now(UTC)
    now += timedelta(microseconds=-now.microsecond % 1000)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hash_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    """An API key's identity: `owner` (its hash) scopes jobs and Functions."""

    owner: str
    name: str


@dataclass
class JobRow:
    """A job as stored. `params` holds what the worker needs (prompt, schema, chunk size, ...)."""

    seq: int
    job_id: str
    owner: str
    status: str
    model: str
    name: str | None
    description: str | None
    job_priority: int
    num_rows: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    input_tokens: int
    output_tokens: int
    job_cost: float | None
    cost_estimate: float | None
    failure_reason: str | None
    rows_processed: int
    dry_run: bool
    est_tokens: int
    params: dict[str, Any]
    idem_key: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The job record as `jobs/{id}` and `list-jobs` return it."""
        return wire_record(tuple(getattr(self, f) for f in WIRE_COLUMNS))

    @property
    def is_terminal(self) -> bool:
        """SUCCEEDED, FAILED or CANCELLED."""
        return self.status in TERMINAL_STATUSES


class Store:
    """Thread-safe access to the sutro-local SQLite database (see module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
        self._migrate(conn)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring an older database up to date: the idempotency-key column (backfilled from the
        descriptions that carry the marker) and its lookup index."""
        from ..idempotency import key_in_description

        cols = {r[1] for r in conn.execute("PRAGMA table_info(jobs)")}
        if "idem_key" not in cols:
            with _Tx(conn) as c:
                if "idem_key" in {r[1] for r in c.execute("PRAGMA table_info(jobs)")}:
                    return  # another process (e.g. `sutro-local keys create`) migrated meanwhile
                c.execute("ALTER TABLE jobs ADD COLUMN idem_key TEXT")
                rows = c.execute("SELECT job_id, description FROM jobs WHERE description LIKE '%[sutro-idempotency-key:%'")
                for job_id, description in rows.fetchall():
                    c.execute("UPDATE jobs SET idem_key=? WHERE job_id=?", (key_in_description(description), job_id))
        conn.execute("CREATE INDEX IF NOT EXISTS jobs_idem ON jobs(owner, idem_key)")

    def enforce_unique_idempotency_keys(self, enabled: bool) -> None:
        """With dedupe on, add the partial UNIQUE index; off (hosted-like), drop it so that two live
        jobs may share a key. An old database that already holds duplicate live keys keeps working:
        the submit transaction (BEGIN IMMEDIATE) still checks before it inserts."""
        conn = self._conn()
        if not enabled:
            conn.execute("DROP INDEX IF EXISTS jobs_idem_live")
            return
        try:
            conn.execute(_IDEM_UNIQUE)
        except sqlite3.IntegrityError:
            import logging

            logging.getLogger(__name__).warning(
                "the database holds live jobs sharing an idempotency key (made with dedupe_idempotency_keys: "
                "false); new duplicates are still refused by the submit transaction")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # autocommit mode; writes that must be atomic use explicit BEGIN IMMEDIATE
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def _tx(self) -> _Tx:
        return _Tx(self._conn())

    # ---- keys -------------------------------------------------------------------------
    def create_key(self, name: str) -> str:
        """Create an API key and return it (the only time the plain key is visible)."""
        key = "sk-local-" + secrets.token_urlsafe(24)
        self._conn().execute(
            "INSERT INTO keys(key_hash, name, created_at) VALUES (?,?,?)", (hash_key(key), name, utcnow())
        )
        return key

    def resolve_key(self, key: str) -> KeyRecord | None:
        """The key's record, or None for an unknown key."""
        row = self._conn().execute("SELECT key_hash, name FROM keys WHERE key_hash=?", (hash_key(key),)).fetchone()
        return KeyRecord(owner=row["key_hash"], name=row["name"]) if row else None

    def count_keys(self) -> int:
        """How many keys exist."""
        return int(self._conn().execute("SELECT COUNT(*) FROM keys").fetchone()[0])

    # ---- jobs -------------------------------------------------------------------------
    def insert_job(self, job: dict[str, Any]) -> None:
        """Insert a new job (dict of column values; `params` may be a dict)."""
        job = dict(job)
        job["params"] = json.dumps(job.get("params") or {})
        cols = ",".join(job)
        self._conn().execute(f"INSERT INTO jobs({cols}) VALUES ({','.join('?' * len(job))})", tuple(job.values()))

    def get_job(self, job_id: str, owner: str | None = None) -> JobRow | None:
        """A job by id; with `owner`, only if that key owns it."""
        if not isinstance(job_id, str) or not job_id.isascii():
            return None  # job ids are ASCII; this also keeps lone surrogates away from SQLite
        sql, args = "SELECT * FROM jobs WHERE job_id=?", [job_id]
        if owner is not None:
            sql, args = sql + " AND owner=?", [job_id, owner]
        row = self._conn().execute(sql, args).fetchone()
        return _job(row) if row else None

    def create_job(
        self, job: dict[str, Any], *, dedupe: bool, guard: Callable[[sqlite3.Connection], None] | None = None
    ) -> tuple[str, bool]:
        """Insert a job in one BEGIN IMMEDIATE transaction, so concurrent submits serialise here:
        with `dedupe` and an `idem_key`, a live job of the same owner and key is returned instead
        (job_id, True); `guard(conn)` runs first inside the transaction (the quota check: raising
        aborts the insert). Returns (job_id, reattached)."""
        job = dict(job)
        job["params"] = json.dumps(job.get("params") or {})
        with self._tx() as c:
            # Stamped inside the serialising transaction, to the microsecond: created_at order is commit
            # order, which a client closing a same-key race relies on (it keeps the earliest job).
            job["created_at"] = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
            cols = ",".join(job)
            key = job.get("idem_key")
            if dedupe and key and not job.get("dry_run"):
                row = c.execute(
                    f"SELECT job_id FROM jobs WHERE owner=? AND idem_key=? AND dry_run=0 AND {_LIVE_SQL} "
                    "ORDER BY seq LIMIT 1", (job["owner"], key),
                ).fetchone()  # fmt: skip
                if row:
                    return str(row[0]), True
            if guard is not None:
                guard(c)
            c.execute(f"INSERT INTO jobs({cols}) VALUES ({','.join('?' * len(job))})", tuple(job.values()))
        return str(job["job_id"]), False

    def live_job_with_key(self, owner: str, key: str) -> str | None:
        """The id of a live (reattachable) job of `owner` with idempotency `key`, if any."""
        row = self._conn().execute(
            f"SELECT job_id FROM jobs WHERE owner=? AND idem_key=? AND dry_run=0 AND {_LIVE_SQL} ORDER BY seq LIMIT 1",
            (owner, key),
        ).fetchone()
        return str(row[0]) if row else None

    # ---- reads answered on the event loop: one indexed statement each, tuples, no `params` ----------
    def key_and_status(self, key_hash: str, job_id: str) -> tuple[bool, str | None]:
        """(key exists, status of its job `job_id` or None) in one statement, read fresh on every
        call: a key removed from the database is refused on the next request."""
        row = self._read(
            "SELECT j.status FROM keys k LEFT JOIN jobs j ON j.job_id=? AND j.owner=k.key_hash WHERE k.key_hash=?",
            (job_id, key_hash),
        ).fetchone()
        return (False, None) if row is None else (True, row[0])

    def key_and_wire(self, key_hash: str, job_id: str) -> tuple[bool, dict[str, Any] | None]:
        """(key exists, wire record of its job `job_id` or None) in one statement."""
        row = self._read(
            f"SELECT k.key_hash, {_WIRE_SELECT} FROM keys k LEFT JOIN jobs j ON j.job_id=? AND j.owner=k.key_hash "
            "WHERE k.key_hash=?",
            (job_id, key_hash),
        ).fetchone()
        if row is None:
            return False, None
        return True, (None if row[1] is None else wire_record(row[1:]))

    def key_exists(self, key_hash: str) -> bool:
        """Whether a key with this hash exists (read fresh)."""
        return self._read("SELECT 1 FROM keys WHERE key_hash=?", (key_hash,)).fetchone() is not None

    def list_wire(self, owner: str, idem_key: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Wire records of a key's jobs, newest first (one read of the (owner, seq) index, or of
        (owner, idem_key) with `idem_key`); at most `limit` of them when given."""
        sql = f"SELECT {_WIRE_SELECT} FROM jobs j WHERE j.owner=?"
        args: tuple[Any, ...] = (owner,)
        if idem_key is not None:
            sql, args = sql + " AND j.idem_key=?", (owner, idem_key)
        sql += " ORDER BY j.seq DESC"
        if limit is not None:
            sql, args = sql + " LIMIT ?", (*args, limit)
        return [wire_record(r) for r in self._read(sql, args).fetchall()]

    def _read(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        cur = self._conn().cursor()
        cur.row_factory = None  # plain tuples: no sqlite3.Row per row
        return cur.execute(sql, args)

    def list_jobs(self, owner: str, idem_key: str | None = None) -> list[JobRow]:
        """A key's jobs, newest first; with `idem_key`, only those carrying it (one indexed read)."""
        if idem_key is None:
            rows = self._conn().execute("SELECT * FROM jobs WHERE owner=? ORDER BY seq DESC", (owner,)).fetchall()
        else:
            rows = self._conn().execute(
                "SELECT * FROM jobs WHERE owner=? AND idem_key=? ORDER BY seq DESC", (owner, idem_key)
            ).fetchall()
        return [_job(r) for r in rows]

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Set columns of a job unconditionally."""
        sets = ",".join(f"{k}=?" for k in fields)
        self._conn().execute(f"UPDATE jobs SET {sets} WHERE job_id=?", (*fields.values(), job_id))

    def transition(self, job_id: str, from_statuses: Iterable[str], to_status: str, **fields: Any) -> bool:
        """Compare-and-set the status (plus other columns); False if the job was not in `from_statuses`."""
        froms = tuple(from_statuses)
        fields = {"status": to_status, **fields}
        sets = ",".join(f"{k}=?" for k in fields)
        cur = self._conn().execute(
            f"UPDATE jobs SET {sets} WHERE job_id=? AND status IN ({','.join('?' * len(froms))})",
            (*fields.values(), job_id, *froms),
        )
        return cur.rowcount == 1

    def runnable_jobs(self) -> list[JobRow]:
        """Jobs the worker should advance, in priority order (0 first) then FIFO."""
        rows = self._conn().execute(
            "SELECT * FROM jobs WHERE status IN ('QUEUED','STARTING','RUNNING','CANCELLING') "
            "ORDER BY job_priority ASC, seq ASC"
        ).fetchall()
        return [_job(r) for r in rows]

    def active_usage(
        self, owner: str, job_priority: int, conn: sqlite3.Connection | None = None
    ) -> tuple[int, int]:
        """(rows, estimated tokens) of a key's queued or running jobs at a priority (inside a
        transaction when `conn` is the transaction's connection)."""
        row = (conn or self._conn()).execute(
            "SELECT COALESCE(SUM(num_rows),0), COALESCE(SUM(est_tokens),0) FROM jobs "
            "WHERE owner=? AND job_priority=? AND dry_run=0 AND status IN ('QUEUED','STARTING','RUNNING')",
            (owner, job_priority),
        ).fetchone()
        return int(row[0]), int(row[1])

    def requeue_interrupted(self) -> list[str]:
        """After a crash: STARTING/RUNNING jobs go back to QUEUED (they resume from their last
        finished chunk); CANCELLING ones become CANCELLED. Returns the requeued job ids."""
        with self._tx() as c:
            ids = [r[0] for r in c.execute("SELECT job_id FROM jobs WHERE status IN ('STARTING','RUNNING')")]
            c.execute("UPDATE jobs SET status='QUEUED' WHERE status IN ('STARTING','RUNNING')")
            c.execute("UPDATE jobs SET status='CANCELLED', finished_at=? WHERE status='CANCELLING'", (utcnow(),))
        return ids

    # ---- chunks -----------------------------------------------------------------------
    def finished_chunks(self, job_id: str) -> list[sqlite3.Row]:
        """The job's finished chunks in order."""
        return self._conn().execute(
            "SELECT * FROM chunks WHERE job_id=? ORDER BY chunk_index", (job_id,)
        ).fetchall()

    def count_chunks(self, job_id: str) -> int:
        """How many chunks of the job have finished (they finish in order, so this is the next index)."""
        return int(self._conn().execute("SELECT COUNT(*) FROM chunks WHERE job_id=?", (job_id,)).fetchone()[0])

    def record_chunk(
        self, job_id: str, index: int, row_start: int, row_end: int, input_tokens: int, output_tokens: int,
        job_cost: float,
    ) -> None:  # fmt: skip
        """Record a finished chunk and the job's new progress totals, atomically."""
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO chunks VALUES (?,?,?,?,?,?,?)",
                (job_id, index, row_start, row_end, input_tokens, output_tokens, utcnow()),
            )
            c.execute(
                "UPDATE jobs SET rows_processed=(SELECT COALESCE(SUM(row_end-row_start),0) FROM chunks "
                "WHERE job_id=?), input_tokens=(SELECT COALESCE(SUM(input_tokens),0) FROM chunks WHERE job_id=?),"
                " output_tokens=(SELECT COALESCE(SUM(output_tokens),0) FROM chunks WHERE job_id=?), job_cost=? "
                "WHERE job_id=?",
                (job_id, job_id, job_id, job_cost, job_id),
            )

    # ---- functions --------------------------------------------------------------------
    def put_function(self, owner: str, name: str, type_: str, definition: dict[str, Any]) -> int:
        """Publish (or republish) a Function; returns its new revision."""
        with self._tx() as c:
            row = c.execute(
                "SELECT revision, definition FROM functions WHERE owner=? AND name=?", (owner, name)
            ).fetchone()
            if row and json.loads(row[1]) == definition:
                return int(row[0])  # unchanged (e.g. the config folder re-read on start): same revision
            rev = (row[0] + 1) if row else 1
            c.execute(
                "INSERT OR REPLACE INTO functions VALUES (?,?,?,?,?,?)",
                (owner, name, type_, json.dumps(definition), rev, utcnow()),
            )
        return rev

    def get_function(self, owner: str, name: str) -> tuple[dict[str, Any], int] | None:
        """(definition, revision) of a Function the key can see: its own first, then global ones."""
        if not name.isascii():
            return None  # Function names are ASCII (and lone surrogates must not reach SQLite)
        row = self._conn().execute(
            "SELECT definition, revision FROM functions WHERE name=? AND owner IN (?, ?) "
            "ORDER BY owner = ? ASC LIMIT 1",
            (name, owner, GLOBAL_OWNER, GLOBAL_OWNER),
        ).fetchone()
        return (json.loads(row[0]), int(row[1])) if row else None

    def list_functions(self, owner: str) -> list[dict[str, Any]]:
        """Definitions of the Functions a key can see."""
        rows = self._conn().execute(
            "SELECT owner, definition FROM functions WHERE owner IN (?, ?) ORDER BY name", (owner, GLOBAL_OWNER)
        ).fetchall()
        seen: dict[str, dict[str, Any]] = {}
        for r in rows:
            d = json.loads(r[1])
            if d["name"] not in seen or r[0] == owner:
                seen[d["name"]] = d
        return list(seen.values())


class _Tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _job(row: sqlite3.Row) -> JobRow:
    d = dict(row)
    d["params"] = json.loads(d["params"] or "{}")
    d["dry_run"] = bool(d["dry_run"])
    return JobRow(**d)
