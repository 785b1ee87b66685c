"""Contenders that use our ``sutro_core`` client; run with the project's venv python.

Each prints one JSON line (``op_s``: the operation alone, after imports) as its last stdout line.

Usage::

    .venv/bin/python benchmarks/_our_contender.py download JOB_ID DEST.parquet
    .venv/bin/python benchmarks/_our_contender.py dataframe JOB_ID
    .venv/bin/python benchmarks/_our_contender.py submit MODEL ROWS
    .venv/bin/python benchmarks/_our_contender.py wait JOB_IDS_FILE SECONDS
"""

from __future__ import annotations

import json
import sys
import time


def download(job_id: str, dest: str) -> dict:
    from sutro_core import SutroClient

    with SutroClient() as client:
        t0 = time.perf_counter()
        manifest = client.download_results(job_id, dest)
        op = time.perf_counter() - t0
    return {"op_s": op, "rows": manifest.rows, "bytes": manifest.bytes}


def dataframe(job_id: str) -> dict:
    from sutro_core import SutroClient

    with SutroClient() as client:
        t0 = time.perf_counter()
        df = client.get_job_results(job_id)
        op = time.perf_counter() - t0
    return {"op_s": op, "rows": df.height, "columns": df.columns}


def submit(model: str, rows: int) -> dict:
    import polars as pl

    from sutro_core import BatchJobRequest, SutroClient

    df = pl.DataFrame({"text": [f"review {i}: works fine" for i in range(rows)]})
    with SutroClient() as client:
        t0 = time.perf_counter()
        req = BatchJobRequest.for_inference(df, model=model, column="text", job_priority=1)
        sub = client.submit_job(req)
        op = time.perf_counter() - t0
    return {"op_s": op, "job_id": sub.job_id, "rows": rows}


def wait(ids_file: str, seconds: float) -> dict:
    """Every job awaited concurrently in one event loop (the Airflow trigger / async client path)."""
    import asyncio
    import resource

    import httpx

    from sutro_core import AsyncSutroClient, JobTimeoutError

    job_ids = [line.strip() for line in open(ids_file) if line.strip()]
    polls = 0

    class CountingTransport(httpx.AsyncHTTPTransport):
        """The real transport; only counts requests."""

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal polls
            polls += 1
            return await super().handle_async_request(request)

    async def main() -> tuple[float, int]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)  # httpx's defaults
        async with AsyncSutroClient(transport=CountingTransport(limits=limits)) as client:

            async def one(job_id: str) -> int:
                try:
                    await client.await_job_completion(job_id, timeout=seconds, obtain_results=False)
                    return 0
                except JobTimeoutError:
                    return 1

            t0 = time.perf_counter()
            timed_out = sum(await asyncio.gather(*(one(j) for j in job_ids)))
            return time.perf_counter() - t0, timed_out

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    wall, timed_out = asyncio.run(main())
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"op_s": wall, "cpu_s": cpu, "polls": polls, "jobs": len(job_ids), "still_waiting": timed_out}


def main() -> None:
    cmd, *args = sys.argv[1:]
    if cmd == "download":
        report = download(args[0], args[1])
    elif cmd == "dataframe":
        report = dataframe(args[0])
    elif cmd == "submit":
        report = submit(args[0], int(args[1]))
    elif cmd == "wait":
        report = wait(args[0], float(args[1]))
    else:
        raise SystemExit(f"unknown contender {cmd!r}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
