"""Everything a running sutro-local server shares between its routes and its worker.

Example:
    >>> # state = ServerState.open(Path(".sutro-local"), load_config(None)); worker.start_worker(state)
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ServerConfig
from .engines.registry import EngineRegistry
from .fetch_pool import UrlFetchPool
from .functions import FunctionService
from .store import Store, private_dir, private_file

log = logging.getLogger(__name__)


@dataclass
class ServerState:
    """Store, config, engines, Functions, the worker and the URL-signing secret of one data dir."""

    data_dir: Path
    config: ServerConfig
    store: Store
    engines: EngineRegistry
    functions: FunctionService
    secret: bytes
    worker: Any = field(default=None)
    url_fetches: UrlFetchPool = field(default=None)  # type: ignore[assignment]  # set in __post_init__

    def __post_init__(self) -> None:
        if self.url_fetches is None:
            self.url_fetches = UrlFetchPool(self.config.url_inputs.max_concurrent)

    @classmethod
    def open(cls, data_dir: Path, config: ServerConfig) -> "ServerState":
        """Open (or create) a data dir: database, secret, and the config folder's Functions."""
        data_dir = Path(data_dir).resolve()
        private_dir(data_dir)
        private_dir(data_dir / "jobs")  # job folders hold inputs and results: 0700 whatever the umask
        store = Store(data_dir / "sutro-local.db", track_key_use=True)
        store.enforce_unique_idempotency_keys(config.dedupe_idempotency_keys)
        engines = EngineRegistry(config)
        functions = FunctionService(store, engines)
        if config.functions_dir is not None:
            names = functions.load_dir(config.functions_dir)
            log.info("published %d Function(s) from %s: %s", len(names), config.functions_dir, names)
        return cls(data_dir, config, store, engines, functions, load_secret(data_dir))

    def job_dir(self, job_id: str) -> Path:
        """Folder of one job's files (inputs, chunk parts, results, projections)."""
        return self.data_dir / "jobs" / job_id

    def wake_worker(self) -> None:
        """Tell the worker there is new work (a submit or a cancel)."""
        if self.worker is not None:
            self.worker.wake()

    def stop_worker(self) -> None:
        """Stop the worker after its current chunk."""
        if self.worker is not None:
            # short join: a model load cannot be interrupted, and the thread is a daemon
            self.worker.stop(timeout=2.0)


class DataDirInUseError(RuntimeError):
    """Another sutro-local worker holds this data dir."""


def acquire_worker_lock(data_dir: Path) -> Any:
    """An exclusive, non-blocking flock on <data_dir>/worker.lock (kept open while the server runs)."""
    import fcntl
    import os

    f = open(data_dir / "worker.lock", "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise DataDirInUseError(
            f"data dir {data_dir} is in use by another sutro-local server (pid {holder}); "
            "stop it or pass a different --data-dir"
        ) from None
    f.truncate(0)
    f.write(str(os.getpid()))
    f.flush()
    return f


def load_secret(data_dir: Path) -> bytes:
    """The server's HMAC secret for signed result URLs, created once per data dir (mode 0600)."""
    path = data_dir / "secret.key"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        private_file(tmp)  # 0600 before the secret is written, not after
        tmp.write_bytes(secrets.token_bytes(32))
        tmp.replace(path)
    return path.read_bytes()
