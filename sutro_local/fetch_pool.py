"""A bounded thread pool for submits whose inputs are a URL, off the API's own thread pool.

A URL fetch can take up to ``url_inputs.timeout_seconds``; run in the server's shared worker
threads, 40 slow fetches once took every thread and froze ``/health`` and every other route. Here
at most ``max_concurrent`` fetch at once, up to 4x that many wait (their deadline keeps running
while they wait), and any more are refused at once with 429 + Retry-After.

Example:
    >>> # submitted = await state.url_fetches.run(accept_job, state, owner, body)
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from .errors import ApiError

T = TypeVar("T")
QUEUE_FACTOR = 4
RETRY_AFTER_S = 5


class UrlFetchPool:
    """Runs URL-input submits on `max_concurrent` threads of their own (see the module docstring)."""

    def __init__(self, max_concurrent: int) -> None:
        self.max_concurrent = max_concurrent
        self.limit = max_concurrent * QUEUE_FACTOR
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="sutro-url-fetch")
        self._lock = threading.Lock()
        self._in_flight = 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the pool; 429 when `limit` submits are already fetching or waiting."""
        with self._lock:
            if self._in_flight >= self.limit:
                raise ApiError(
                    429, "too_many_url_fetches",
                    f"{self._in_flight} URL inputs are being fetched or waiting (limit {self.limit}); retry shortly",
                    {"Retry-After": str(RETRY_AFTER_S)},
                )  # fmt: skip
            self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args))
        finally:
            with self._lock:
                self._in_flight -= 1

    def shutdown(self) -> None:
        """Stop taking work (running fetches end at their deadline)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
