"""Benchmark 3: submitting 1M short rows from a polars DataFrame, ours vs the official SDK.

Each contender builds a DataFrame of N short rows (``"review 123: works fine"``) and submits it once
(``job_priority=1``, detached), as its own process:

- ours: ``client.submit_job(BatchJobRequest.for_inference(df, column="text"))``
- official SDK 0.1.67: ``Sutro.infer(df, column="text", stay_attached=False)`` (its own venv)

Time is the submit call alone (in-process, after imports and building the DataFrame; it includes the
server accepting the job, the same for both); peak RSS is the process's own. Request bytes on the
wire are counted by a loopback TCP proxy in a separate pass. Every submitted job is cancelled at once,
so the worker does not compete for the CPU.

Usage::

    .venv/bin/python benchmarks/submission.py --quick       # 100k rows, 1 repeat
    .venv/bin/python benchmarks/submission.py               # 1M rows, 3 repeats
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    rows_main,
    BENCH_DIR, OUR_PYTHON, SCRATCH, ByteCountingProxy, Measured, bench_server, command_line, ensure_sdk_venv,
    machine_line, measure, median_of, table,
)


def server_config() -> dict:
    """An echo model in small chunks (a cancel takes effect within one chunk) and no row quota."""
    return {
        "models": {"sink": {"engine": "echo", "chunk_size": 1000}},
        "quotas": [{"job_priority": 0, "row_quota": None}, {"job_priority": 1, "row_quota": None}],
    }


def cancel(url: str, key: str, job_id: str) -> None:
    """Cancel a benchmark job so its rows are not processed."""
    import httpx

    httpx.get(f"{url}/job-cancel/{job_id}", headers={"Authorization": f"Key {key}"}, timeout=60)


def run(rows: int, repeats: int, with_sdk: bool) -> str:
    """Measure both submitters; return the markdown section."""
    sdk_python = ensure_sdk_venv() if with_sdk else None
    contenders = {"ours: submit_job(BatchJobRequest.for_inference(df))": (
        [OUR_PYTHON, str(BENCH_DIR / "_our_contender.py"), "submit", "sink", str(rows)])}  # fmt: skip
    if sdk_python:
        contenders["official SDK: infer(df, stay_attached=False)"] = [
            sdk_python, str(BENCH_DIR / "_sdk_contender.py"), "submit", "sink", str(rows)]
    runs: dict[str, list[Measured]] = {n: [] for n in contenders}
    wire: dict[str, int] = {}
    with bench_server("submission", server_config()) as srv:
        env = {"SUTRO_API_KEY": srv.api_key, "SUTRO_API_URL": srv.url, "HOME": str(SCRATCH / "home")}

        def once(name: str, cmd: list[str], url: str) -> Measured:
            m = measure(cmd, env={**env, "SUTRO_API_URL": url})
            if m.returncode != 0 or "job_id" not in m.report:
                raise RuntimeError(f"{name} failed ({m.returncode}):\n{m.stderr_tail}")
            cancel(srv.url, srv.api_key, m.report["job_id"])
            return m

        # Warm the server (its first submit imports pyarrow etc.) so neither contender pays for that.
        import httpx

        warm = httpx.post(f"{srv.url}/batch-inference", json={"model": "sink", "inputs": ["warm up"] * 1000},
                          headers={"Authorization": f"Key {srv.api_key}"}, timeout=60)  # fmt: skip
        cancel(srv.url, srv.api_key, warm.json()["results"])
        for _ in range(repeats):
            for name, cmd in contenders.items():
                runs[name].append(once(name, cmd, srv.url))
        for name, cmd in contenders.items():
            with ByteCountingProxy(srv.host, srv.port) as proxy:
                once(name, cmd, proxy.url)
            wire[name] = proxy.sent_bytes
    med = {n: median_of(r) for n, r in runs.items()}
    ours_name = next(iter(contenders))
    ours = med[ours_name]
    table_rows = [[n, round(m.op_s, 2), round(m.wall_s, 2), round(m.peak_rss_mb), round(wire[n] / 1e6, 1),
                   round(wire[n] / rows, 1)] for n, m in med.items()]  # fmt: skip
    lines = [
        f"### 3. Submission: {rows:,} short rows from a polars DataFrame",
        "",
        f"Command: `{command_line()}`  ",
        machine_line() + f" Median of {repeats} interleaved run(s).",
        "",
        table(["submitter", "submit (s)", "process wall (s)", "peak RSS (MB)", "request on the wire (MB)",
               "bytes/row"], table_rows),  # fmt: skip
    ]
    if with_sdk:
        sdk_name = [n for n in contenders if n != ours_name][0]
        sdk = med[sdk_name]
        lines += ["", f"- official SDK / ours: {sdk.op_s / ours.op_s:.2f}x time, {sdk.peak_rss_mb / ours.peak_rss_mb:.2f}x "
                  f"peak RSS, {wire[sdk_name] / wire[ours_name]:.2f}x request bytes."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    rows_main(__doc__, run, rows_help="rows to submit")


if __name__ == "__main__":
    main()
