"""Real backing services and long-running processes for the multi-worker deployment tests (tests/deploy).

- ``PostgresServer``: Debian's PostgreSQL (``initdb`` + ``postgres``) in a temporary folder on a free
  loopback port; as root it runs as an unprivileged user (PostgreSQL refuses to run as root).
- ``RedisServer``: ``redis-server`` on a free loopback port, nothing persisted.
- ``Service``: any command in its own process group with its log in a file; ``kill()`` SIGKILLs the
  group and every descendant (a machine lost), ``stop()`` asks first.
- ``require_tool``: skip a test when a Debian package is missing, or fail it where the tier is
  required (``SUTRO_REQUIRE_DEPLOY=1``, which ``.ci/run`` sets, or ``CI=true``).

Every process started here dies with the test process too (PR_SET_PDEATHSIG), so a test run that is
itself SIGKILLed leaves no database or broker behind; temporary folders are removed on stop.

Example:
    >>> with PostgresServer() as pg, RedisServer() as redis:   # doctest: +SKIP
    ...     url = pg.create_database("airflow"); broker = redis.url
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from sutro_local.testing import free_port

# Execs the command after asking the kernel to SIGKILL it when the test process dies (PR_SET_PDEATHSIG;
# Linux only). A fresh interpreter does it rather than a preexec_fn, which is unsafe in a threaded process.
# It drops to another user first when told (argv[2] = "uid:gid", else "-"): the kernel clears the death
# signal when the user changes, and that user may not be able to read this interpreter's files.
_EXEC_WITH_PDEATHSIG = """
import ctypes, os, signal, sys
if sys.argv[2] != "-":
    uid, gid = map(int, sys.argv[2].split(":"))
    os.setgroups([]); os.setgid(gid); os.setuid(uid)
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)  # the parent is already gone
os.execvp(sys.argv[3], sys.argv[3:])
"""


def deploy_tier_required() -> bool:
    """Whether a missing package fails the deployment tests instead of skipping them (CI)."""
    return os.environ.get("SUTRO_REQUIRE_DEPLOY") == "1" or os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(path: str | None, package: str, what: str) -> str:
    """``path`` when it names an executable; otherwise skip the test (locally) or fail it (CI)."""
    if path and os.access(path, os.X_OK):
        return path
    reason = f"{what} not found (Debian package {package!r})"
    if deploy_tier_required():
        pytest.fail(f"the deployment tier is required here (SUTRO_REQUIRE_DEPLOY=1 or CI=true) but {reason}; "
                    f"install it: apt-get install -y {package}", pytrace=False)
    pytest.skip(f"{reason}; install it with apt-get install -y {package} (CI installs it and requires these tests)")


def postgres_bindir() -> str | None:
    """The folder of Debian's newest installed PostgreSQL server binaries (``initdb``, ``postgres``), if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return str(Path(found[-1]).parent)
    on_path = shutil.which("postgres")
    return str(Path(on_path).parent) if on_path else None


def descendants(pid: int) -> list[int]:
    """Every process whose ancestry leads to ``pid`` (read from /proc: no psutil needed)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        frontier += kids
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Call ``predicate`` every ``interval`` s until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Service:
    """One long-running command in its own process group, output in ``log``.

    ``kill()``: SIGKILL to the group and to every descendant that left it (what losing the machine does:
    no handler runs). ``stop()``: SIGTERM (or ``stop_signal``), then SIGKILL after ``grace`` seconds.
    """

    def __init__(self, name: str, argv: Sequence[str], log: Path, *, env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None, user: str | None = None, stop_signal: int = signal.SIGTERM,
                 grace: float = 20.0) -> None:
        self.name, self.argv, self.log = name, list(argv), Path(log)
        self.env = dict(env) if env is not None else None
        self.cwd, self.user, self.stop_signal, self.grace = cwd, user, stop_signal, grace
        self.proc: subprocess.Popen[bytes] | None = None
        self._seen: set[int] = set()

    def start(self) -> Service:
        """Start the command (it dies with this process); returns self."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        ids = "-"
        if self.user is not None:
            record = pwd.getpwnam(self.user)
            ids = f"{record.pw_uid}:{record.pw_gid}"
        with open(self.log, "ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _EXEC_WITH_PDEATHSIG, str(os.getpid()), ids, *self.argv], env=self.env,
                cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        atexit.register(self.kill)
        return self

    @property
    def pid(self) -> int:
        """The process id (the group id too)."""
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def running(self) -> bool:
        """Whether the main process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def tree(self) -> list[int]:
        """The main process and its descendants now (remembered, so ``kill`` reaches any that re-parented)."""
        if self.proc is None:
            return []
        pids = [self.proc.pid, *descendants(self.proc.pid)] if self.running() else descendants(self.proc.pid)
        self._seen.update(pids)
        return pids

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _signal_all(self, sig: int) -> None:
        assert self.proc is not None
        pids = set(self.tree()) | self._seen
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def kill(self) -> None:
        """SIGKILL the whole tree at once, and reap the main process. Safe to call twice."""
        if self.proc is None:
            return
        self._signal_all(signal.SIGKILL)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            pass

    def stop(self) -> None:
        """Ask the process to stop; SIGKILL whatever is left after ``grace`` s. Safe to call twice."""
        if self.proc is None:
            return
        self.tree()
        if self.running():
            try:
                os.kill(self.proc.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(self.grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in self._seen):
            time.sleep(0.1)


def _service_user() -> str | None:
    """The user PostgreSQL runs as: none needed unless we are root (SUTRO_PG_USER, default ``nobody``)."""
    return os.environ.get("SUTRO_PG_USER", "nobody") if os.geteuid() == 0 else None


class _FolderService:
    """A server process with a folder of its own: ``stop`` (safe twice) stops it and removes the folder; as a
    context manager a failed start leaves no process or folder behind."""

    root: Path | None = None
    service: Service | None = None

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server (SIGKILL after a grace period), then remove its folder. Safe to call twice."""
        if self.service is not None:
            self.service.stop()
            self.service = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> Any:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PostgresServer(_FolderService):
    """A throwaway PostgreSQL cluster: trust auth for user ``postgres`` on 127.0.0.1:``port``.

    ``create_database(name)`` returns a SQLAlchemy URL for it; ``connect(db)`` a psycopg2 connection.
    Durability is off (fsync, full-page writes): the data is thrown away with the folder.
    """

    def __init__(self, bindir: str | None = None, startup_timeout: float = 60.0) -> None:
        self.bindir = bindir or postgres_bindir()
        self.startup_timeout = startup_timeout
        self.user = _service_user()
        self.root: Path | None = None
        self.port = 0
        self.service: Service | None = None

    def start(self) -> PostgresServer:
        """initdb, start ``postgres``, wait until it accepts connections."""
        assert self.bindir, "no PostgreSQL server binaries found"
        # Not under pytest's tmp_path: that is 0700 root, which the unprivileged user cannot enter.
        self.root = Path(tempfile.mkdtemp(prefix="sutro-pg-"))
        if self.user:
            record = pwd.getpwnam(self.user)
            os.chown(self.root, record.pw_uid, record.pw_gid)
        data = self.root / "data"
        initdb = Service("initdb", [f"{self.bindir}/initdb", "-D", str(data), "-U", "postgres", "-A", "trust",
                                    "--no-sync", "-E", "UTF8", "--locale=C"], self.root / "initdb.log",
                         user=self.user, env={**os.environ, "LC_ALL": "C"}).start()
        try:
            rc = initdb.proc.wait(120)
            assert rc == 0, f"initdb failed ({rc}): {initdb.log_tail()}"
        finally:
            initdb.kill()
        for _attempt in range(3):  # a free port can be taken before postgres binds it
            self.port = free_port()
            self.service = Service(
                "postgres",
                [f"{self.bindir}/postgres", "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port),
                 "-k", str(self.root), "-c", "fsync=off", "-c", "full_page_writes=off",
                 "-c", "synchronous_commit=off", "-c", "max_connections=200"],
                self.root / "postgres.log", user=self.user, stop_signal=signal.SIGINT,  # SIGINT: fast shutdown
            ).start()
            if self._wait_ready():
                return self
            self.service.kill()
        raise RuntimeError(f"PostgreSQL did not start: {self.service.log_tail()}")

    def _wait_ready(self) -> bool:
        import psycopg2

        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.service.running():
                return False
            try:
                psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                                 connect_timeout=3).close()
                return True
            except psycopg2.OperationalError:
                time.sleep(0.2)
        return False

    def connect(self, dbname: str = "postgres") -> Any:
        """A psycopg2 connection (autocommit) to ``dbname``."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, connect_timeout=10)
        conn.autocommit = True
        return conn

    def create_database(self, name: str) -> str:
        """Create database ``name``; return its SQLAlchemy URL (psycopg2 driver)."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def url(self, dbname: str) -> str:
        """The SQLAlchemy URL of ``dbname``."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{dbname}"



class RedisServer(_FolderService):
    """``redis-server`` on 127.0.0.1:``port`` with persistence off; ``.url`` is ``redis://...``."""

    def __init__(self, binary: str | None = None, startup_timeout: float = 30.0) -> None:
        self.binary = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        self.startup_timeout = startup_timeout
        self.root: Path | None = None
        self.port = 0
        self.service: Service | None = None

    @property
    def url(self) -> str:
        """The broker URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        import redis

        self.root = Path(tempfile.mkdtemp(prefix="sutro-redis-"))
        for _attempt in range(3):  # a free port can be taken before redis binds it
            self.port = free_port()
            self.service = Service(
                "redis", [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(self.root), "--daemonize", "no"],
                self.root / "redis.log").start()
            deadline = time.monotonic() + self.startup_timeout
            while time.monotonic() < deadline and self.service.running():
                try:
                    if redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2).ping():
                        return self
                except redis.RedisError:
                    time.sleep(0.1)
            self.service.kill()
        raise RuntimeError(f"redis-server did not start: {self.service.log_tail()}")

