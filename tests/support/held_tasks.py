"""Strong references for the handler tasks of the tests' asyncio servers.

asyncio drops its own reference to a ``start_server`` handler task when the client hangs up. A task then
awaiting something only its own frame holds (an upstream read, an Event) is left in a reference cycle,
and the GC may destroy it mid-way (seen in CI: a proxy's hit never logged).
"""

from __future__ import annotations

import asyncio


def hold_current_task(held: set[asyncio.Task]) -> None:
    """Keep the running task in ``held`` until it is done."""
    task = asyncio.current_task()
    assert task is not None
    held.add(task)
    task.add_done_callback(held.discard)
