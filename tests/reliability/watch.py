"""A watcher that checks, many times a second, that every visible ``*.parquet`` file under some
folders is a complete parquet file (a torn or half-written one has no valid footer).

Example:
    >>> with ParquetWatcher([data_dir, out_dir]) as watcher:   # doctest: +SKIP
    ...     run_the_crash()
    >>> assert watcher.torn == [] and watcher.checks > 0
"""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class ParquetWatcher:
    """Scans ``roots`` in a thread; ``torn`` lists files that were visible yet unreadable."""

    def __init__(self, roots: list[Path], interval: float = 0.05) -> None:
        self.roots = roots
        self.interval = interval
        self.torn: list[str] = []
        self.checks = 0
        self.files_seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="parquet-watcher", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.scan()
            self._stop.wait(self.interval)

    def scan(self) -> None:
        """Check every visible parquet file once."""
        for root in self.roots:
            for path in root.rglob("*.parquet"):
                try:
                    pq.read_metadata(path)
                except FileNotFoundError:
                    continue  # removed between listing and reading (parts are deleted after assembly)
                except (pa.ArrowInvalid, OSError) as exc:
                    if path.exists():
                        self.torn.append(f"{path}: {exc}")
                    continue
                self.checks += 1
                self.files_seen.add(str(path))

    def __enter__(self) -> "ParquetWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.scan()
