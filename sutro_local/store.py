"""SQLite (WAL) persistence for sutro-local: API keys, jobs (and each job's encoded API record, see
`job_wire`), finished chunks, Functions.

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
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from pydantic_core import to_json

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
-- Each job's encoded wire record (the JSON `jobs/{id}` and `list-jobs` answer), so reads copy bytes
-- instead of building and encoding 17 columns. A cache only: the Store rewrites a job's record in
-- the transaction that changes the job, and these triggers drop it on ANY other write (old code,
-- `sqlite3`, another process), so a stored record is never stale; a missing one is built from the
-- columns. Keyed by jobs.seq (AUTOINCREMENT: never reused).
CREATE TABLE IF NOT EXISTS job_wire (seq INTEGER PRIMARY KEY, wire BLOB NOT NULL);
CREATE TRIGGER IF NOT EXISTS job_wire_on_update AFTER UPDATE ON jobs
  BEGIN DELETE FROM job_wire WHERE seq IN (OLD.seq, NEW.seq); END;
CREATE TRIGGER IF NOT EXISTS job_wire_on_delete AFTER DELETE ON jobs
  BEGIN DELETE FROM job_wire WHERE seq=OLD.seq; END;
CREATE TRIGGER IF NOT EXISTS job_wire_on_insert AFTER INSERT ON jobs
  BEGIN DELETE FROM job_wire WHERE seq=NEW.seq; END;
-- Console sign-ins: a session cookie is valid while its row exists and its key does (sign-out and
-- `sutro-local keys revoke` delete rows; the console checks on every request, one primary-key read).
-- `sid` is the SHA-256 of the cookie's session id, never the id itself.
CREATE TABLE IF NOT EXISTS console_sessions (
  sid TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at INTEGER NOT NULL, created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_owner ON console_sessions(owner);
CREATE TABLE IF NOT EXISTS functions (
  owner TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, definition TEXT NOT NULL,
  revision INTEGER NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (owner, name)
);
"""

# Jobs whose idempotency key a new submit reattaches to (the client's reattachable statuses).
LIVE_STATUSES = ("QUEUED", "STARTING", "RUNNING", "SUCCEEDED")
_LIVE_SQL = f"status IN ({','.join(repr(s) for s in LIVE_STATUSES)})"
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
# (seq, stored record) of a key's job, the key checked in the same statement (no row: unknown key)
_JOB_JSON_SQL = ("SELECT j.seq, w.wire FROM keys k LEFT JOIN jobs j ON j.job_id=? AND j.owner=k.key_hash "
                 "LEFT JOIN job_wire w ON w.seq=j.seq WHERE k.key_hash=?")  # fmt: skip
# group_concat keeps the subquery's order (an aggregate's subquery with ORDER BY is not flattened);
# SQLite 3.44+ can say so
_IN_ORDER = "ORDER BY seq DESC" if sqlite3.sqlite_version_info >= (3, 44, 0) else ""


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


def encode_wire(values: Sequence[Any]) -> bytes:
    """The JSON bytes of `wire_record(values)`, encoded as the API answers it (pydantic-core, compact).
    A list answer is these records joined with commas: `{"jobs":[` + b",".join(...) + `]}`.

    Example:
        >>> encode_wire(("job-1", "QUEUED", 1, "m", None, None, 0, "t0", None, None, 0, 0, 0.1 + 0.2, None,
        ...              None, 0, 1))[:40]
        b'{"job_id":"job-1","status":"QUEUED","num'
    """
    return to_json(wire_record(values))


def utcnow() -> str:
    """Now as an ISO 8601 UTC string (the wire format of job timestamps), rounded up to the millisecond:
    truncating could stamp a job started within a millisecond of its (microsecond) created_at before it."""
    now = datetime.now(UTC)
    now += timedelta(microseconds=-now.microsecond % 1000)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hash_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


class JobList(NamedTuple):
    """What `Store.list_json` read: `count` jobs, their encoded records `joined` by commas (the
    answer is `{"jobs":[` + joined + `]}`), and how many finished ones were `unstored` (built from
    their rows; a `store_missing` read stores them)."""

    count: int
    joined: bytes
    unstored: int


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

    def __init__(self, path: Path, *, track_key_use: bool = False) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)
        private_file(self.path)  # before SQLite creates it: its -wal and -shm files copy its mode
        self._local = threading.local()
        # last-used times of keys: noted in memory on each use, written at most once a minute per
        # key by one background thread (never a write on a request's path)
        self._track_key_use = track_key_use
        self._key_used: dict[str, float] = {}
        self._key_use_pool: Any = None
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
        self._migrate(conn)
        for suffix in ("-wal", "-shm"):  # databases from before 0600: tighten what exists
            extra = self.path.with_name(self.path.name + suffix)
            if extra.exists():
                private_file(extra)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring an older database up to date: the idempotency-key column (backfilled from the
        descriptions that carry the marker) and its lookup index."""
        from sutro_core.idempotency import key_in_description

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
        if "last_used_at" not in {r[1] for r in conn.execute("PRAGMA table_info(keys)")}:
            try:
                conn.execute("ALTER TABLE keys ADD COLUMN last_used_at TEXT")
            except sqlite3.OperationalError:  # another process added it meanwhile
                pass

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
        if row is None:
            return None
        self.key_used(row["key_hash"])
        return KeyRecord(owner=row["key_hash"], name=row["name"])

    def count_keys(self) -> int:
        """How many keys exist."""
        return int(self._conn().execute("SELECT COUNT(*) FROM keys").fetchone()[0])

    def list_keys(self) -> list[dict[str, Any]]:
        """Every key's name, created_at and last_used_at (None: never used), oldest first. Never the key
        (the store holds only hashes).

        Example:
            >>> # [{"name": "default", "created_at": "2025-...Z", "last_used_at": None}]
        """
        rows = self._conn().execute("SELECT name, created_at, last_used_at FROM keys ORDER BY created_at")
        return [{"name": r[0], "created_at": r[1], "last_used_at": r[2]} for r in rows.fetchall()]

    def revoke_keys(self, name: str) -> int:
        """Delete every key named `name` and end their console sessions, in one transaction; returns
        how many keys went. The server reads keys and sessions on every request, so both stop at once.

        Example:
            >>> # store.revoke_keys("ci") -> 1
        """
        with self._tx() as c:
            owners = [r[0] for r in c.execute("SELECT key_hash FROM keys WHERE name=?", (name,))]
            for owner in owners:
                c.execute("DELETE FROM console_sessions WHERE owner=?", (owner,))
                c.execute("DELETE FROM keys WHERE key_hash=?", (owner,))
        return len(owners)

    KEY_USE_EVERY_S = 60.0  # how stale a key's last_used_at may be

    def key_used(self, key_hash: str) -> None:
        """Note that a key was used (its last_used_at is written soon, off the request's path)."""
        if not self._track_key_use:
            return
        now = time.monotonic()
        last = self._key_used.get(key_hash)
        if last is not None and now - last < self.KEY_USE_EVERY_S:
            return
        self._key_used[key_hash] = now
        if self._key_use_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._key_use_pool = ThreadPoolExecutor(1, thread_name_prefix="sutro-key-use")
        self._key_use_pool.submit(self._write_key_use, key_hash, utcnow())

    def _write_key_use(self, key_hash: str, when: str) -> None:
        try:
            self._conn().execute("UPDATE keys SET last_used_at=? WHERE key_hash=?", (when, key_hash))
        except sqlite3.Error:  # a busy or closing database: the next use writes it
            self._key_used.pop(key_hash, None)

    # ---- console sessions -----------------------------------------------------------
    def add_session(self, sid: str, owner: str, expires_at: int) -> None:
        """Record a console sign-in (`sid`: the hash of the cookie's session id); expired rows go."""
        with self._tx() as c:
            c.execute("DELETE FROM console_sessions WHERE expires_at < ?", (int(time.time()),))
            c.execute("INSERT OR REPLACE INTO console_sessions VALUES (?,?,?,?)",
                      (sid, owner, int(expires_at), utcnow()))

    def session_valid(self, sid: str, owner: str) -> bool:
        """Whether a console session still stands: its row exists, unexpired, and its key exists
        (one statement over two primary keys; read fresh on every console request)."""
        row = self._read(
            "SELECT 1 FROM console_sessions s JOIN keys k ON k.key_hash=s.owner "
            "WHERE s.sid=? AND s.owner=? AND s.expires_at>=?", (sid, owner, int(time.time())),
        ).fetchone()  # fmt: skip
        return row is not None

    def end_session(self, sid: str) -> None:
        """Sign a console session out (its cookie stops working at once)."""
        self._conn().execute("DELETE FROM console_sessions WHERE sid=?", (sid,))

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
            self._store_wire(c, "j.job_id=?", (job["job_id"],))
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
        if row is None:
            return False, None
        self.key_used(key_hash)
        return True, row[0]

    def key_and_job_json(self, key_hash: str, job_id: str) -> tuple[bool, bytes | None]:
        """(key exists, encoded wire record of its job `job_id` or None) -- the stored record in one
        statement with the key check; a job without one (written by someone else) is built from its row."""
        row = self._read(_JOB_JSON_SQL, (job_id, key_hash)).fetchone()
        if row is None:
            return False, None
        self.key_used(key_hash)
        seq, wire = row
        if wire is not None or seq is None:
            return True, wire
        built = self._read(f"SELECT {_WIRE_SELECT} FROM jobs j WHERE j.seq=?", (seq,)).fetchone()
        return True, (None if built is None else encode_wire(built))

    def key_exists(self, key_hash: str) -> bool:
        """Whether a key with this hash exists (read fresh)."""
        if self._read("SELECT 1 FROM keys WHERE key_hash=?", (key_hash,)).fetchone() is None:
            return False
        self.key_used(key_hash)
        return True

    def list_json(
        self, owner: str, idem_key: str | None = None, limit: int | None = None, *, store_missing: bool = False
    ) -> JobList:
        """A key's jobs as encoded wire records, newest first (one read of the (owner, seq) index, or
        of (owner, idem_key) with `idem_key`); at most `limit` of them when given.

        When every record is stored, SQLite joins them in one statement (one GIL release, however long
        the list). Records not stored yet are built from their rows; with `store_missing` (off the
        event loop: it takes the write lock) those of terminal jobs are stored, read again under the
        lock, so the next list copies them. A terminal job never changes; any write drops its record."""
        where, args = "j.owner=?", [owner]
        if idem_key is not None:
            where, args = where + " AND j.idem_key=?", [owner, idem_key]
        page = f"FROM jobs j LEFT JOIN job_wire w ON w.seq=j.seq WHERE {where} ORDER BY j.seq DESC"
        if limit is not None:
            page, args = page + " LIMIT ?", [*args, limit]
        try:
            n, n_stored, joined = self._read(
                # no `||` around it: SQLite's concatenation of a 3 MB value costs more than the whole read
                f"SELECT count(*), count(wire), CAST(group_concat(wire, ',' {_IN_ORDER}) AS BLOB) "
                f"FROM (SELECT j.seq AS seq, w.wire AS wire {page})", tuple(args),
            ).fetchone()  # fmt: skip
        except sqlite3.DataError:  # over SQLite's 1 GB value limit (~1.5 million jobs): joined below
            n, n_stored, joined = -1, -2, None
        if n == n_stored:
            return JobList(n, joined or b"", 0)
        rows = self._read(f"SELECT j.seq, w.wire {page}", tuple(args)).fetchall()
        built = self._build_wires(self._conn(), [seq for seq, wire in rows if wire is None])
        finished = [seq for seq, (status, _) in built.items() if status in TERMINAL_STATUSES]
        if store_missing and finished:
            with self._tx() as c:  # read again under the write lock: what is stored is the current row
                fresh = self._build_wires(c, finished)
                done = [(seq, wire) for seq, (status, wire) in fresh.items() if status in TERMINAL_STATUSES]
                c.executemany("INSERT OR REPLACE INTO job_wire(seq, wire) VALUES (?,?)", done)
        # a row deleted between the two reads is left out, as if listed a moment later
        records = [built[seq][1] if wire is None else wire for seq, wire in rows if seq in built or wire is not None]
        return JobList(len(records), b",".join(records), 0 if store_missing else len(finished))

    @staticmethod
    def _build_wires(conn: sqlite3.Connection, seqs: list[int]) -> dict[int, tuple[str, bytes]]:
        """{seq: (status, encoded record)} of these jobs, from their rows."""
        out: dict[int, tuple[str, bytes]] = {}
        cur = conn.cursor()
        cur.row_factory = None
        for i in range(0, len(seqs), 500):  # SQLite's bound-parameter limit is 999 on old builds
            part = seqs[i : i + 500]
            sql = f"SELECT j.seq, {_WIRE_SELECT} FROM jobs j WHERE j.seq IN ({','.join('?' * len(part))})"
            for r in cur.execute(sql, part):
                out[r[0]] = (r[2], encode_wire(r[1:]))
        return out

    @staticmethod
    def _store_wire(conn: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> None:
        """Store the encoded records of the jobs matching `where`: call it inside the transaction that
        changed them, after the change (the triggers dropped their old records)."""
        cur = conn.cursor()
        cur.row_factory = None
        rows = cur.execute(f"SELECT j.seq, {_WIRE_SELECT} FROM jobs j WHERE {where}", args).fetchall()
        conn.executemany("INSERT OR REPLACE INTO job_wire(seq, wire) VALUES (?,?)",
                         [(r[0], encode_wire(r[1:])) for r in rows])

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
        with self._tx() as c:
            c.execute(f"UPDATE jobs SET {sets} WHERE job_id=?", (*fields.values(), job_id))
            self._store_wire(c, "j.job_id=?", (job_id,))

    def transition(self, job_id: str, from_statuses: Iterable[str], to_status: str, **fields: Any) -> bool:
        """Compare-and-set the status (plus other columns); False if the job was not in `from_statuses`."""
        froms = tuple(from_statuses)
        fields = {"status": to_status, **fields}
        sets = ",".join(f"{k}=?" for k in fields)
        with self._tx() as c:
            cur = c.execute(
                f"UPDATE jobs SET {sets} WHERE job_id=? AND status IN ({','.join('?' * len(froms))})",
                (*fields.values(), job_id, *froms),
            )
            if cur.rowcount != 1:
                return False
            self._store_wire(c, "j.job_id=?", (job_id,))
        return True

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
            cancelled = [r[0] for r in c.execute("SELECT seq FROM jobs WHERE status='CANCELLING'")]
            c.execute("UPDATE jobs SET status='QUEUED' WHERE status IN ('STARTING','RUNNING')")
            c.execute("UPDATE jobs SET status='CANCELLED', finished_at=? WHERE status='CANCELLING'", (utcnow(),))
            for job_id in ids:
                self._store_wire(c, "j.job_id=?", (job_id,))
            for seq in cancelled:
                self._store_wire(c, "j.seq=?", (seq,))
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
            self._store_wire(c, "j.job_id=?", (job_id,))

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


def private_dir(path: Path) -> None:
    """Create `path` (and parents) and make it 0700 whatever the umask: a data dir holds key hashes,
    the signing secret, inputs and results."""
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != 0o700:
        try:
            os.chmod(path, 0o700)
        except PermissionError:  # not ours (e.g. a shared mount): say so, keep serving
            import logging

            logging.getLogger(__name__).warning("could not make %s private (0700): not its owner", path)


def private_file(path: Path) -> None:
    """Create `path` if missing (empty) and make it 0600 whatever the umask.

    An existing file is never opened here: closing any descriptor of a SQLite database drops every
    POSIX lock this process holds on it (another connection's locks included: "disk I/O error")."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    if path.stat().st_mode & 0o777 != 0o600:
        os.chmod(path, 0o600)


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
