"""Contender for benchmarks/triggers.py: N ``SutroJobTrigger``s in one asyncio loop, as a triggerer runs them.

Each trigger is rebuilt from its serialized kwargs (what the triggerer does with the row Airflow stored)
and its ``run()`` is driven for ``SECONDS``. Polls (a wait's status reads, however answered) and HTTP
requests (``job-status``, ``list-jobs``: the core client batches polls into shared listings) are counted
apart; time to each job's first answered poll is recorded; CPU and counts are also sampled at
``STEADY_FROM`` seconds (every wait polls at its longest interval after it); client-side TCP connections to
the server are sampled from ``/proc/net/tcp`` every second (distinct local ports = connections opened;
CLOSE-WAIT counted). Prints one JSON line as its last stdout line.

Usage::

    .venv/bin/python benchmarks/_trigger_contender.py JOB_IDS_FILE SECONDS [STEADY_FROM]
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


def main(ids_file: str, seconds: float, steady_from: float | None = None) -> dict:
    from sutro_core import AsyncSutroClient, JobHandle

    from airflow_provider_sutro.triggers.sutro import SutroJobTrigger

    url, key = os.environ["SUTRO_API_URL"], os.environ["SUTRO_API_KEY"]
    port = urlsplit(url).port
    job_ids = open(ids_file).read().split()
    first_poll: dict[str, float] = {}
    polls = 0
    requests = {"job-status": 0, "list-jobs": 0}
    original_send, original_perform = AsyncSutroClient._send, AsyncSutroClient._perform

    async def counted_send(self, call):
        route = call.path.split("/", 1)[0]
        if route in requests:
            requests[route] += 1
        return await original_send(self, call)

    async def counted_perform(self, effect):
        nonlocal polls
        job_id = getattr(effect, "batch_job_id", None)
        answer = await original_perform(self, effect)
        if job_id is not None:
            polls += 1
            first_poll.setdefault(job_id, time.perf_counter())
        return answer

    AsyncSutroClient._send = counted_send  # type: ignore[method-assign]
    AsyncSutroClient._perform = counted_perform  # type: ignore[method-assign]
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
        steady = None
        sampler_cpu = steady_sampler_cpu = 0.0  # the /proc/net/tcp sampling itself (~8 ms a sample here)
        while time.perf_counter() - start < seconds:
            await asyncio.sleep(1.0)
            if steady is None and steady_from is not None and time.perf_counter() - start >= steady_from:
                steady = (time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF), polls, dict(requests))
                steady_sampler_cpu = sampler_cpu
            c0 = time.process_time()
            ports, cw = _tcp_sample(port)
            sampler_cpu += time.process_time() - c0
            seen_ports |= ports
            close_wait_max = max(close_wait_max, cw)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        t1, polls1, requests1 = time.perf_counter(), polls, dict(requests)
        done = sum(t.done() for t in tasks)  # a trigger that ended early (an error) would skew the figures
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        waits = sorted(first_poll.get(j, float("inf")) - start for j in job_ids)
        report = {"ended_early": done, "sampler_cpu_s": sampler_cpu}
        if steady is not None:
            t_s, r_s, polls_s, req_s = steady
            report["steady"] = {
                "from_s": t_s - start, "s": t1 - t_s, "polls": polls1 - polls_s,
                "cpu_s": (r1.ru_utime - r_s.ru_utime) + (r1.ru_stime - r_s.ru_stime),
                "requests": {k: requests1[k] - req_s[k] for k in requests1},
                "sampler_cpu_s": sampler_cpu - steady_sampler_cpu,
            }
        return {
            **report, "requests": requests1,
            "op_s": seconds, "jobs": len(job_ids), "polls": polls1, "cpu_s": cpu,
            "first_poll_all_s": waits[-1], "first_poll_p50_s": waits[len(waits) // 2],
            "tcp_connections": len(seen_ports), "close_wait_max": close_wait_max,
        }

    return asyncio.run(run())


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else None)))
