"""One ``AsyncSutroClient`` per (event loop, API URL, API key), shared by every trigger that waits on it.

The triggerer runs all its triggers in one event loop; a client (connection pool) per trigger meant 1,000
pools for 1,000 deferred tasks. The core client is built for many concurrent waits through one pool (it
queues requests itself, see ``AsyncSutroClient``), and each wait takes its poll policy from its handle,
so triggers of the same API and key can share one. It is closed when its last user is done.

Example::

    async with shared_client(handle.api_url, api_key) as client:
        job = await client.wait(handle)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sutro_core import AsyncSutroClient


@dataclass
class _Shared:
    loop: asyncio.AbstractEventLoop
    client: AsyncSutroClient
    users: int = 0


_SHARED: dict[tuple[int, str | None, str | None], _Shared] = {}


@asynccontextmanager
async def shared_client(api_url: str | None, api_key: str | None) -> AsyncIterator[AsyncSutroClient]:
    """The loop's client for ``api_url`` and ``api_key`` (created on first use, closed after the last)."""
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
