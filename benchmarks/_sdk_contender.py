"""Contenders that use the official ``sutro`` SDK; run with the SDK's own venv python (stdlib + sutro only).

Each prints one JSON line (``op_s``: the operation alone, after imports) as its last stdout line.

Usage::

    benchmarks/.venv-sutro-sdk/bin/python benchmarks/_sdk_contender.py results JOB_ID
    benchmarks/.venv-sutro-sdk/bin/python benchmarks/_sdk_contender.py submit MODEL ROWS
    benchmarks/.venv-sutro-sdk/bin/python benchmarks/_sdk_contender.py wait JOB_IDS_FILE SECONDS STEADY_FROM

The key and URL come from SUTRO_API_KEY / SUTRO_API_URL, as the SDK documents.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time

from _usage import usage_report  # noqa: E402  (this folder is on sys.path: run as a script)


def _rss_mb() -> float:
    """Peak RSS so far (MB): taken just before an operation, after imports and client setup."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _client():
    import sutro.validation as validation

    validation.check_version = lambda *_: None  # it asks pypi.org on every construction; offline here
    import sutro.sdk as sdk

    sdk.check_version = lambda *_: None
    return sdk.Sutro(api_key=os.environ["SUTRO_API_KEY"], api_url=os.environ["SUTRO_API_URL"])


def results(job_id: str) -> dict:
    so = _client()
    before = _rss_mb()
    t0 = time.perf_counter()
    df = so.get_job_results(job_id, disable_cache=True)
    op = time.perf_counter() - t0
    if df is None:
        raise SystemExit("get_job_results returned None (the SDK prints failures instead of raising)")
    return {"op_s": op, "rows": df.height, "columns": df.columns, "rss_before_mb": before}


def submit(model: str, rows: int) -> dict:
    import polars as pl

    df = pl.DataFrame({"text": [f"review {i}: works fine" for i in range(rows)]})
    so = _client()
    t0 = time.perf_counter()
    job_id = so.infer(df, model=model, column="text", job_priority=1, stay_attached=False)
    op = time.perf_counter() - t0
    if not job_id:
        raise SystemExit("infer returned None (the SDK prints failures instead of raising)")
    return {"op_s": op, "job_id": job_id, "rows": rows}


def wait(ids_file: str, seconds: float, steady_from: float) -> dict:
    """One thread per job, each in the SDK's await_job_completion (polls every 5 s).

    CPU and polls are also sampled at ``steady_from`` seconds (see ``_our_contender.wait``).
    """
    import resource

    job_ids = [line.strip() for line in open(ids_file) if line.strip()]
    so = _client()
    import requests

    polls = [0]
    real_get = requests.get

    def counting_get(*a, **kw):  # the SDK calls requests.get module-level for every poll
        polls[0] += 1
        return real_get(*a, **kw)

    requests.get = counting_get
    marks: dict = {}

    def sample() -> None:
        marks["steady"] = (time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF), polls[0])

    threads = [threading.Thread(target=so.await_job_completion, args=(j,), kwargs={"timeout": seconds,
               "obtain_results": False}, daemon=True) for j in job_ids]  # fmt: skip
    timer = threading.Timer(steady_from, sample)
    marks["start"] = (time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF), 0)
    timer.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    marks["end"] = (time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF), polls[0])
    timer.cancel()
    return {"op_s": marks["end"][0] - marks["start"][0], "jobs": len(job_ids), **usage_report(marks)}


def main() -> None:
    cmd, *args = sys.argv[1:]
    # Spinners and colours go to /dev/null: off our JSON line, and no unbounded buffer (yaspin
    # animates its spinner thread whether or not stdout is a terminal).
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        if cmd == "results":
            report = results(args[0])
        elif cmd == "submit":
            report = submit(args[0], int(args[1]))
        elif cmd == "wait":
            report = wait(args[0], float(args[1]), float(args[2]))
        else:
            raise SystemExit(f"unknown contender {cmd!r}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
