"""Benchmark 1: results of a large job to parquet / a DataFrame, ours vs the official SDK vs raw curl.

A job of N rows (default 1M) with ~100-byte outputs runs on a fresh sutro-local server through the
real submit -> worker -> chunked parquet results path (the ``echo`` plumbing engine, so no model is the
bottleneck). Then, each as its own process, interleaved, ``--repeats`` times (median reported):

- raw limit: ``curl`` of ``GET jobs/{id}/results?result_format=parquet`` over loopback to disk
- ours: ``SutroClient.download_results(job_id, path)`` (streamed, footer metadata, atomic rename)
- ours: ``SutroClient.get_job_results(job_id)`` -> polars DataFrame
- official SDK 0.1.67: ``Sutro.get_job_results(job_id, disable_cache=True)`` (its own venv)

Peak RSS is each process's own ``ru_maxrss``. Time is the operation alone (in-process, after
imports) for the Python contenders and curl's own ``time_total``; process wall times are shown too.

Usage::

    .venv/bin/python benchmarks/results_download.py --quick          # 100k rows, 1 repeat
    .venv/bin/python benchmarks/results_download.py                  # 1M rows, 3 repeats
    .venv/bin/python benchmarks/results_download.py --rows 5000000 --repeats 1 --no-sdk
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    rows_main,
    BENCH_DIR, OUR_PYTHON, SCRATCH, Measured, bench_server, command_line, ensure_sdk_venv, machine_line, measure,
    median_of, table, wait_succeeded,
)

OUTPUT_CHARS = 100
CHUNK_ROWS = 50_000


def server_config() -> dict:
    """An echo model with ~100-character outputs, big chunks, and no row quota."""
    return {
        "models": {"echo-100": {"engine": "echo", "options": {"output_chars": OUTPUT_CHARS},
                                "chunk_size": CHUNK_ROWS}},
        "quotas": [{"job_priority": 0, "row_quota": None}, {"job_priority": 1, "row_quota": None}],
    }  # fmt: skip


def make_job(url: str, key: str, rows: int) -> tuple[str, float]:
    """Submit an N-row job with our client and wait for it; returns (job_id, seconds to SUCCEEDED)."""
    import polars as pl

    from sutro_core import BatchJobRequest, SutroClient

    df = pl.DataFrame({"text": [f"customer review {i}" for i in range(rows)]})
    t0 = time.perf_counter()
    with SutroClient(api_key=key, api_url=url, timeout=600) as client:
        job_id = client.submit_job(BatchJobRequest.for_inference(df, model="echo-100", column="text",
                                                                 job_priority=1)).job_id
    wait_succeeded(url, key, job_id, timeout=3600, interval=0.2)
    return job_id, time.perf_counter() - t0


def growth(m: Measured) -> float:
    """MB of peak RSS added during the operation itself."""
    return m.peak_rss_mb - float(m.report.get("rss_before_mb", 0.0))


def run(rows: int, repeats: int, with_sdk: bool) -> str:
    """Run every contender; return the markdown section."""
    out_dir = SCRATCH / "results-out"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    sdk_python = ensure_sdk_venv() if with_sdk else None
    with bench_server("results", server_config()) as srv:
        key = srv.api_key
        job_id, job_s = make_job(srv.url, key, rows)
        results_url = f"{srv.url}/jobs/{job_id}/results?result_format=parquet"
        env = {"SUTRO_API_KEY": key, "SUTRO_API_URL": srv.url, "HOME": str(SCRATCH / "home")}
        # Warm the server's cached projection (outputs only) so every contender reads the same file.
        warm = measure(["curl", "-sf", "-o", str(out_dir / "warm.parquet"), "-H", f"Authorization: Key {key}",
                        results_url])  # fmt: skip
        assert warm.returncode == 0, warm.stderr_tail
        file_bytes = (out_dir / "warm.parquet").stat().st_size
        contenders = {
            "raw: curl to disk": ["curl", "-sf", "-o", str(out_dir / "curl.parquet"), "-w",
                                  '{"op_s": %{time_total}}\\n', "-H", f"Authorization: Key {key}", results_url],
            "ours: download_results -> parquet": [OUR_PYTHON, str(BENCH_DIR / "_our_contender.py"), "download",
                                                  job_id, str(out_dir / "ours.parquet")],
            "ours: get_job_results -> DataFrame": [OUR_PYTHON, str(BENCH_DIR / "_our_contender.py"), "dataframe",
                                                   job_id],
            "floor: pl.read_parquet of the file": [OUR_PYTHON, str(BENCH_DIR / "_our_contender.py"), "read-floor",
                                                   str(out_dir / "warm.parquet")],
        }  # fmt: skip
        if sdk_python:
            contenders["official SDK: get_job_results (no cache)"] = [
                sdk_python, str(BENCH_DIR / "_sdk_contender.py"), "results", job_id]
        runs: dict[str, list[Measured]] = {name: [] for name in contenders}
        for _ in range(repeats):
            for name, cmd in contenders.items():  # interleaved: drift on a shared machine hits all alike
                m = measure(cmd, env=env)
                if m.returncode != 0:
                    raise RuntimeError(f"{name} failed ({m.returncode}):\n{m.stderr_tail}")
                runs[name].append(m)
                for f in out_dir.glob("*.parquet"):
                    if f.name != "warm.parquet":
                        f.unlink()
    med = {name: median_of(r) for name, r in runs.items()}
    raw = med["raw: curl to disk"]
    ours_dl = med["ours: download_results -> parquet"]
    ours_df = med["ours: get_job_results -> DataFrame"]
    sdk = med.get("official SDK: get_job_results (no cache)")
    rows_out = []
    for name, m in med.items():
        floor = m.report.get("rss_before_mb")
        rows_out.append([name, round(m.op_s, 3), round(m.wall_s, 2), round(floor) if floor else "-",
                         round(m.peak_rss_mb), round(m.peak_rss_mb - floor) if floor else "-",
                         round(m.op_s / raw.op_s, 2)])
    floor = med["floor: pl.read_parquet of the file"]
    lines = [
        f"### 1. Results to parquet: {rows:,} rows, ~{OUTPUT_CHARS}-byte outputs, results file {file_bytes / 1e6:.1f} MB",
        "",
        f"Command: `{command_line()}`  ",
        machine_line() + f" Median of {repeats} interleaved run(s); job took {job_s:.1f} s submit-to-SUCCEEDED.",
        "",
        table(["contender", "time (s)", "process wall (s)", "RSS before (MB)", "peak RSS (MB)", "growth (MB)",
               "time / raw"],
              rows_out),
        "",
        f"- get_job_results -> DataFrame / pl.read_parquet of the file: **{ours_df.op_s / floor.op_s:.2f}x** time "
        f"(goal <= 1.3x); memory growth {growth(ours_df):.0f} MB for a {ours_df.report.get('frame_mb', 0):.0f} MB frame "
        f"(**{growth(ours_df) / max(ours_df.report.get('frame_mb', 1), 1):.2f}x**, goal <= 1.2x; the floor: "
        f"{growth(floor):.0f} MB)",
        f"- download_results / raw curl: **{ours_dl.op_s / raw.op_s:.2f}x** time (target <= 1.25x); "
        f"peak RSS {ours_dl.peak_rss_mb:.0f} MB (target < 200 MB), of which {growth(ours_dl):.0f} MB came during "
        "the download (the rest: the interpreter, imports, client)",
    ]
    if sdk:
        lines.append(
            f"- official SDK / ours (DataFrame): **{sdk.op_s / ours_df.op_s:.1f}x** time, "
            f"**{sdk.peak_rss_mb / ours_df.peak_rss_mb:.1f}x** memory; official SDK / ours (download_results): "
            f"**{sdk.op_s / ours_dl.op_s:.1f}x** time, **{sdk.peak_rss_mb / ours_dl.peak_rss_mb:.1f}x** memory "
            "(targets: >= 3x faster, >= 10x less memory)"
        )
        lines.append(
            f"- memory that grows during the call (peak RSS minus RSS before it): official SDK "
            f"{growth(sdk):.0f} MB vs ours {growth(ours_dl):.0f} MB (download_results, "
            f"**{growth(sdk) / max(growth(ours_dl), 1):.0f}x** less), {growth(ours_df):.0f} MB (DataFrame)"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    rows_main(__doc__, run, rows_help="job size")


if __name__ == "__main__":
    main()
