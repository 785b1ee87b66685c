"""One ``AsyncSutroClient`` per (event loop, API URL, API key), shared by every wait running in that loop.

A process that waits on many jobs at once in one event loop (Airflow's triggerer runs all its triggers in
one) would otherwise open a connection pool per wait: 1,000 pools for 1,000 deferred tasks. The async
client is built for many concurrent waits through one pool, and each wait takes its poll policy from its
handle, so waits on the same API and key can share one. It is closed when its last user is done.

Example:
    >>> async with shared_client(handle.api_url, api_key) as client:   # doctest: +SKIP
    ...     job = await client.wait(handle)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from .async_client import AsyncSutroClient


@dataclass
class _Shared:
    loop: asyncio.AbstractEventLoop
    client: AsyncSutroClient
    users: int = 0


_SHARED: dict[tuple[int, str | None, str | None], _Shared] = {}


@asynccontextmanager
async def shared_client(api_url: str | None, api_key: str | None) -> AsyncIterator[AsyncSutroClient]:
    """The running loop's client for ``api_url`` and ``api_key`` (created on first use, closed after the last).

    Example:
        >>> async with shared_client("http://127.0.0.1:8484", "key") as client:   # doctest: +SKIP
        ...     await client.get_job("job-1")
    """
    loop = asyncio.get_running_loop()
    key = (id(loop), api_url, api_key)
    entry = _SHARED.get(key)
    if entry is None or entry.loop is not loop:  # a new loop may reuse a dead one's id
        entry = _SHARED[key] = _Shared(loop, AsyncSutroClient(api_key=api_key, api_url=api_url))
    entry.users += 1
    try:
        yield entry.client
    finally:
        entry.users -= 1
        if entry.users == 0:
            if _SHARED.get(key) is entry:
                del _SHARED[key]
            await entry.client.aclose()
