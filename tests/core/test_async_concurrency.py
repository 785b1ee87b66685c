"""AsyncSutroClient bounds its requests in flight (many waits share one client without pool thrash)."""

from __future__ import annotations

import asyncio

import httpx

from sutro_core import AsyncSutroClient
from sutro_core.async_client import MAX_CONNECTIONS


class PeakTransport(httpx.AsyncHTTPTransport):
    """The real transport; records the most requests it had in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.peak = 0
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.sent += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.005)  # hold the slot a moment so overlap is certain without the limit
            return await super().handle_async_request(request)
        finally:
            self.in_flight -= 1


async def test_requests_in_flight_never_exceed_max_connections(sutro_server, sutro_key):
    transport = PeakTransport()
    async with AsyncSutroClient(api_key=sutro_key, api_url=sutro_server.url, transport=transport,
                                max_connections=3) as client:  # fmt: skip
        results = await asyncio.gather(*(client.check_auth() for _ in range(40)))
    assert len(results) == 40 and all(isinstance(r, dict) for r in results)
    assert transport.sent == 40
    assert transport.peak == 3


def test_default_pool_is_small():
    # httpcore rescans its pool per request; a small pool keeps 1,000 shared waits cheap (benchmarks/waiting.py)
    assert 1 <= MAX_CONNECTIONS <= 16
