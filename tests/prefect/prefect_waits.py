"""Polling helper shared by the runner tests (a served flow run moves on its own; the test waits)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_for(predicate: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Await ``predicate()`` every 0.3 s until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
