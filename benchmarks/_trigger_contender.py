"""Contender for benchmarks/triggers.py: N ``SutroJobTrigger``s in one asyncio loop, as a triggerer runs them.

Each trigger is rebuilt from its serialized kwargs (what the triggerer does with the row Airflow stored)
and its ``run()`` is driven for ``SECONDS``. Polls are counted as they are sent (the core client's send),
time to first poll per job is recorded, and client-side TCP connections to the server are sampled from
``/proc/net/tcp`` every second (distinct local ports = connections opened; CLOSE-WAIT counted).
Prints one JSON line as its last stdout line.

Usage::

    .venv/bin/python benchmarks/_trigger_contender.py JOB_IDS_FILE SECONDS
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from urllib.parse import urlsplit


def _tcp_sample(port: int) -> tuple[set[int], int]:
    """Local ports of this host's TCP connections to ``port``, and how many sit in CLOSE-WAIT."""
    ports, close_wait = set(), 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, remote, state = parts[1], parts[2], parts[3]
            if int(remote.rsplit(":", 1)[1], 16) == port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
                close_wait += state == "08"
    return ports, close_wait


def main(ids_file: str, seconds: float) -> dict:
    from airflow_provider_sutro.triggers.sutro import SutroJobTrigger
    from sutro_core import AsyncSutroClient, JobHandle

    url, key = os.environ["SUTRO_API_URL"], os.environ["SUTRO_API_KEY"]
    port = urlsplit(url).port
    job_ids = open(ids_file).read().split()
    first_poll: dict[str, float] = {}
    polls = 0
    original = AsyncSutroClient._send

    async def counted(self, call):  # noqa: ANN001 - instrumentation only
        nonlocal polls
        if call.path.startswith("job-status/"):
            polls += 1
            first_poll.setdefault(call.path.rsplit("/", 1)[1], time.perf_counter())
        return await original(self, call)

    AsyncSutroClient._send = counted  # type: ignore[method-assign]
    now = time.time()
    kwargs = []
    for job_id in job_ids:  # what the task pushed when it deferred, serialized as Airflow stores it
        handle = JobHandle(job_id=job_id, api_url=url, url=f"{url}/console/jobs/{job_id}", started_at=now,
                           deadline=now + seconds + 600)
        kwargs.append(json.loads(json.dumps(SutroJobTrigger(handle=handle.to_dict(), api_key=key).serialize()[1])))

    async def run() -> dict:
        seen_ports: set[int] = set()
        close_wait_max = 0
        start = time.perf_counter()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        triggers = [SutroJobTrigger(**kw) for kw in kwargs]
        tasks = [asyncio.ensure_future(t.run().__anext__()) for t in triggers]
        while time.perf_counter() - start < seconds:
            await asyncio.sleep(1.0)
            ports, cw = _tcp_sample(port)
            seen_ports |= ports
            close_wait_max = max(close_wait_max, cw)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        waits = sorted(first_poll.get(j, float("inf")) - start for j in job_ids)
        return {
            "op_s": seconds, "jobs": len(job_ids), "polls": polls, "cpu_s": cpu,
            "first_poll_all_s": waits[-1], "first_poll_p50_s": waits[len(waits) // 2],
            "tcp_connections": len(seen_ports), "close_wait_max": close_wait_max,
        }

    return asyncio.run(run())


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], float(sys.argv[2]))))
