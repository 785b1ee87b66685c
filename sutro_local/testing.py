"""Run a real sutro-local server process for tests and demos.

`LocalServer` starts `python -m sutro_local serve` as a subprocess on a free port, with a
data dir and a config dict, and waits until it answers `/health`. It can be SIGKILLed and
restarted on the same port and data dir (crash-recovery tests). Started from the main thread, it
dies with its parent (Linux), so a killed test run leaves no server behind.

Example:
    >>> with LocalServer(tmp_path / "srv", {"models": {"all-minilm-l6-v2": {"engine": "embedding"}}}) as srv:  # doctest: +SKIP
    ...     httpx.get(f"{srv.url}/auth/check", headers={"Authorization": f"Key {srv.api_key}"})
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """A sutro-local server subprocess: `.url`, `.api_key`, `.data_dir`, `.create_key()`,
    `.kill()` (SIGKILL), `.restart()`, `.stop()`; usable as a context manager."""

    def __init__(
        self,
        data_dir: str | Path,
        config: dict[str, Any] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.config = config
        self.host = host
        self.port = port or free_port()
        self.env = env or {}
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._api_key: str | None = None

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. http://127.0.0.1:51234."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_key(self) -> str:
        """The data dir's first API key (created before the first start)."""
        if self._api_key is None:
            from .cli import default_key

            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._api_key = default_key(self.data_dir)
        return self._api_key

    @property
    def log_path(self) -> Path:
        """The server's combined stdout/stderr log."""
        return self.data_dir / "server.log"

    def create_key(self, name: str) -> str:
        """A new API key, usable by the running server at once (auth reads the store)."""
        from .store import Store

        return Store(self.data_dir / "sutro-local.db").create_key(name)

    def start(self) -> "LocalServer":
        """Start the process and wait until it is healthy."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _ = self.api_key
        cmd = [sys.executable, "-m", "sutro_local", "serve", "--host", self.host, "--port", str(self.port),
               "--data-dir", str(self.data_dir)]  # fmt: skip
        if self.config is not None:
            cfg = self.data_dir / "config.yaml"
            cfg.write_text(json.dumps(self.config, indent=2))  # JSON is valid YAML
            cmd += ["--config", str(cfg)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
               **self.env}  # fmt: skip
        if threading.current_thread() is threading.main_thread():
            # The server dies with this process (see sutro_local.__main__). Not from other threads: the
            # kernel's signal follows the thread that started the child.
            env["SUTRO_LOCAL_PARENT_PID"] = str(os.getpid())
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        finally:
            log.close()
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"sutro-local exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"sutro-local did not become healthy in {self.startup_timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server log (for failure messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the server (no cleanup: simulates a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server gracefully (SIGTERM, then SIGKILL after `timeout`)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> "LocalServer":
        """Stop (or, if already killed, just) start again on the same port and data dir."""
        self.stop()
        self.proc = None
        return self.start()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
