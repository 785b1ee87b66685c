"""A Prefect API server subprocess for tests that cannot outlive them.

Prefect's own harness and its "ephemeral" mode start a uvicorn child and stop it from ``atexit``: a test
process that is SIGKILLed (or a driver a test kills on purpose) leaves that server running, e.g. on port
8128. Here the server runs in its own process group, is killed with the group, is told by the kernel
to die with its parent (PR_SET_PDEATHSIG), and its temporary home is removed on stop.

Example:
    >>> with PrefectTestServer() as server:            # doctest: +SKIP
    ...     env = {"PREFECT_API_URL": server.api_url}
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

# Runs uvicorn in a fresh interpreter that first asks the kernel to SIGKILL it when its parent dies
# (PR_SET_PDEATHSIG = 1; Linux only, elsewhere the process-group kill on stop still applies). Done after
# exec rather than in a preexec_fn, which is unsafe in a process with threads.
_BOOTSTRAP = """
import ctypes, os, runpy, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)  # the parent is already gone
sys.argv = ["uvicorn", *sys.argv[2:]]
runpy.run_module("uvicorn", run_name="__main__")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrefectTestServer:
    """``prefect.server`` (SQLite, no UI) on a free port; ``.api_url``, ``.stop()``; a context manager.

    ``home``: where its database lives; a temporary folder (removed on stop) when not given.
    """

    def __init__(self, home: str | Path | None = None, startup_timeout: float = 90.0) -> None:
        self._owns_home = home is None
        self.home = Path(home or tempfile.mkdtemp(prefix="sutro-prefect-server-"))
        self.port = _free_port()
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        """The URL to set as PREFECT_API_URL."""
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> PrefectTestServer:
        """Start the server and wait until it answers ``/api/health``."""
        import prefect

        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{self.home / 'prefect.db'}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        env.pop("PREFECT_API_URL", None)
        log = open(self.home / "server.log", "ab")  # noqa: SIM115 - the child owns it; closed on stop
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, str(os.getpid()), "--app-dir", str(Path(prefect.__file__).parent.parent),
             "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = (self.home / "server.log").read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"the Prefect test server exited with {self.proc.returncode}: {out}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the Prefect test server did not answer within {self.startup_timeout} s")

    def stop(self) -> None:
        """Kill the server's process group and remove the temporary home. Safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is not None:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            try:  # anything else left in the group (the server's own children)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._owns_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> PrefectTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def drain_prefect_workers() -> None:
    """Flush this process's Prefect log and event workers before the server goes (as Prefect's own harness
    does); otherwise they try to reach the stopped server at exit and log connection errors."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        import inspect

        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:  # the worker was never started
            pass
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(drain())
