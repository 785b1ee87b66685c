"""Contenders that use our ``sutro_core`` client; run with the project's venv python.

Each prints one JSON line (``op_s``: the operation alone, after imports) as its last stdout line.

Usage::

    .venv/bin/python benchmarks/_our_contender.py download JOB_ID DEST.parquet
    .venv/bin/python benchmarks/_our_contender.py dataframe JOB_ID
    .venv/bin/python benchmarks/_our_contender.py dataframe-warm JOB_ID        (polars used once before)
    .venv/bin/python benchmarks/_our_contender.py download-then-read JOB_ID    (polars used once before)
    .venv/bin/python benchmarks/_our_contender.py read-floor RESULTS.parquet
    .venv/bin/python benchmarks/_our_contender.py read-floor-warm RESULTS.parquet
    .venv/bin/python benchmarks/_our_contender.py submit MODEL ROWS
    .venv/bin/python benchmarks/_our_contender.py wait JOB_IDS_FILE SECONDS STEADY_FROM [MAX_CONNECTIONS]
"""

from __future__ import annotations

import json
import sys
import time
from _usage import usage_report  # noqa: E402  (this folder is on sys.path: run as a script)


def _rss_mb() -> float:
    """Peak RSS so far (MB): taken just before an operation, after imports and client setup."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: CPU seconds of the operation itself (all threads of this process), set by each contender.
OP_CPU = [0.0]


def _cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def download(job_id: str, dest: str) -> dict:
    from sutro_core import SutroClient

    with SutroClient() as client:
        before = _rss_mb()
        c0 = _cpu_s()
        t0 = time.perf_counter()
        manifest = client.download_results(job_id, dest)
        op = time.perf_counter() - t0
        OP_CPU[0] = _cpu_s() - c0
    return {"op_s": op, "rows": manifest.rows, "bytes": manifest.bytes, "rss_before_mb": before}


def download_then_read(job_id: str) -> dict:
    """The plain reading path: ``download_results`` to a temp file (streamed, validated, atomic), then
    ``pl.read_parquet`` of it; polars used once before (as ``dataframe-warm``)."""
    import os
    import tempfile

    import polars as pl

    from sutro_core import SutroClient

    _warm_polars()
    with SutroClient() as client, tempfile.TemporaryDirectory(prefix="sutro-bench-") as tmp:
        before = _rss_mb()
        c0 = _cpu_s()
        t0 = time.perf_counter()
        dest = os.path.join(tmp, "results.parquet")
        client.download_results(job_id, dest)
        t1 = time.perf_counter()
        df = pl.read_parquet(dest)
        op = time.perf_counter() - t0
        OP_CPU[0] = _cpu_s() - c0
    return {"op_s": op, "download_s": t1 - t0, "after_download_s": op - (t1 - t0), "rows": df.height,
            "rss_before_mb": before, "frame_mb": df.estimated_size() / 2**20}


def _warm_polars() -> None:
    """Use polars' parquet reader once on a tiny file, as any process that already worked with polars has:
    what it costs once per process (library pages, thread pool, allocator arenas: ~25 MB) is then paid."""
    import io

    import polars as pl

    buf = io.BytesIO()
    pl.DataFrame({"outputs": ["warm-up"] * 1000}).write_parquet(buf)
    pl.read_parquet(io.BytesIO(buf.getvalue()))


def dataframe(job_id: str, warm: bool = False) -> dict:
    """``get_job_results``; ``download_s``: until the last byte is on disk (the client's
    ``ProgressiveParquet.body_done_at``, read by a wrapper; benchmark only), so what follows it is known too."""
    import sutro_core.sdk_facade as base
    from sutro_core import SutroClient

    if warm:
        _warm_polars()
    with SutroClient() as client:
        before = _rss_mb()
        c0 = _cpu_s()
        t0 = time.perf_counter()
        df = client.get_job_results(job_id)
        op = time.perf_counter() - t0
        OP_CPU[0] = _cpu_s() - c0
    # frame_mb: polars' estimated_size (string bytes only); views_mb: + the 16-byte view per string it omits
    return {"op_s": op, "rows": df.height, "columns": df.columns, "rss_before_mb": before,
            "frame_mb": df.estimated_size() / 2**20, "views_mb": df.height * 16 / 2**20}


def read_floor(path: str, warm: bool = False) -> dict:
    """The floor for ``dataframe``: ``pl.read_parquet`` of the same results file, already on disk."""
    import polars as pl

    import sutro_core  # noqa: F401 - the same imports as the contender it is the floor of

    if warm:
        _warm_polars()
    before = _rss_mb()
    c0 = _cpu_s()
    t0 = time.perf_counter()
    df = pl.read_parquet(path)
    op = time.perf_counter() - t0
    OP_CPU[0] = _cpu_s() - c0
    return {"op_s": op, "rows": df.height, "frame_mb": df.estimated_size() / 2**20, "rss_before_mb": before}


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


def wait(ids_file: str, seconds: float, steady_from: float, max_connections: int = 0) -> dict:
    """Every job awaited concurrently in one event loop (the Airflow trigger / async client path).

    CPU and polls are also sampled at ``steady_from`` seconds, when every wait has backed off to
    (about) its longest poll interval: the rest of the window is the steady state of a long wait.
    """
    import asyncio
    import resource

    import httpx

    from sutro_core import AsyncSutroClient, JobTimeoutError

    job_ids = [line.strip() for line in open(ids_file) if line.strip()]
    polls = requests = 0  # polls: the waits' status reads; requests: what went out (shared list-jobs reads)

    async def count(_: httpx.Request) -> None:
        nonlocal requests
        requests += 1

    async def main() -> tuple[float, int]:
        kwargs = {"max_connections": max_connections} if max_connections else {}  # experiment knob
        async with AsyncSutroClient(**kwargs) as client:
            client._http.event_hooks = {"request": [count], "response": []}  # counts requests; benchmark only
            perform = client._perform

            async def counted(effect):  # type: ignore[no-untyped-def]  # counts polls; benchmark only
                nonlocal polls
                polls += getattr(effect, "batch_job_id", None) is not None
                return await perform(effect)

            client._perform = counted  # type: ignore[method-assign]

            async def one(job_id: str) -> int:
                try:
                    await client.await_job_completion(job_id, timeout=seconds, obtain_results=False)
                    return 0
                except JobTimeoutError:
                    return 1

            async def sample() -> None:
                await asyncio.sleep(steady_from)
                marks["steady"] = (time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF), polls)
                marks["steady_requests"] = requests

            sampler = asyncio.ensure_future(sample())
            t0 = time.perf_counter()
            timed_out = sum(await asyncio.gather(*(one(j) for j in job_ids)))
            marks["end"] = (time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF), polls)
            sampler.cancel()
            return time.perf_counter() - t0, timed_out

    marks: dict = {}
    marks["start"] = (time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF), 0)
    wall, timed_out = asyncio.run(main())
    report = usage_report(marks)
    report["requests"] = requests
    if report["steady"] is not None:
        report["steady"]["requests"] = requests - marks["steady_requests"]
    return {"op_s": wall, "jobs": len(job_ids), "still_waiting": timed_out, **report}


def main() -> None:
    cmd, *args = sys.argv[1:]
    if cmd == "download":
        report = download(args[0], args[1])
    elif cmd == "dataframe":
        report = dataframe(args[0])
    elif cmd == "dataframe-warm":
        report = dataframe(args[0], warm=True)
    elif cmd == "download-then-read":
        report = download_then_read(args[0])
    elif cmd == "read-floor":
        report = read_floor(args[0])
    elif cmd == "read-floor-warm":
        report = read_floor(args[0], warm=True)
    elif cmd == "submit":
        report = submit(args[0], int(args[1]))
    elif cmd == "wait":
        report = wait(args[0], float(args[1]), float(args[2]), int(args[3]) if len(args) > 3 else 0)
    else:
        raise SystemExit(f"unknown contender {cmd!r}")
    report.setdefault("op_cpu_s", OP_CPU[0])
    print(json.dumps(report))


if __name__ == "__main__":
    main()
