"""Benchmark 1: results of a large job to parquet / a DataFrame, ours vs the official SDK vs raw curl.

A job of N rows (default 1M) with ~100-byte outputs runs on a fresh sutro-local server through the
real submit -> worker -> chunked parquet results path (the ``echo`` plumbing engine, so no model is the
bottleneck). Then, each as its own process, interleaved, ``--repeats`` times (median reported):

- raw limit: ``curl`` of ``GET jobs/{id}/results?result_format=parquet`` over loopback to disk
- floor of the DataFrame: ``pl.read_parquet`` of the same file, already on disk
- first vs warm: a fresh job per run, its results curled right at SUCCEEDED and again (the server's
  results projection is built when the job finishes, so the first costs what a warm one does)
- ours: ``SutroClient.download_results(job_id, path)`` (streamed, footer metadata, atomic rename)
- ours: ``SutroClient.get_job_results(job_id)`` -> polars DataFrame (the file streamed to a temp file, then
  read); the same and the floor in a process that has used polars before (its one-time cost already paid)
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
import statistics
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
#: Rounds of every contender per run (each run's figure: their median; one loopback transfer of a 38 MB
#: file varies by 2x on the shared box, more than the ratios claimed).
SAMPLES = 3
WARM_DF = "ours: get_job_results, polars used before in the process"
WARM_FLOOR = "floor: pl.read_parquet, polars used before"


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


def _op_cpu(m: Measured) -> float:
    """CPU seconds of the operation alone (the contender's own figure), else the process's."""
    return float(m.report.get("op_cpu_s", m.cpu_s))


def loadavg() -> str:
    """The 1/5/15-minute load averages, recorded with every run (the box is shared)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def curl_cmd(key: str, url: str, dest: Path) -> list[str]:
    return ["curl", "-sf", "-o", str(dest), "-w", '{"op_s": %{time_total}}\\n', "-H", f"Authorization: Key {key}", url]


def first_vs_warm(url: str, key: str, rows: int, out_dir: Path) -> dict:
    """A fresh job: its first download (curl) right at SUCCEEDED, then three warm ones (their median)."""
    job_id, job_s = make_job(url, key, rows)
    results_url = f"{url}/jobs/{job_id}/results?result_format=parquet"
    times = []
    for i in range(4):
        m = measure(curl_cmd(key, results_url, out_dir / f"fresh-{i}.parquet"))
        if m.returncode != 0:
            raise RuntimeError(f"curl of fresh job {job_id} failed:\n{m.stderr_tail}")
        times.append(m.op_s)
        (out_dir / f"fresh-{i}.parquet").unlink()
    return {"job_s": job_s, "first_s": times[0], "warm_s": statistics.median(times[1:])}


def run(rows: int, repeats: int, with_sdk: bool) -> str:
    """Run every contender, interleaved, ``repeats`` times; return the markdown section."""
    out_dir = SCRATCH / "results-out"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    sdk_python = ensure_sdk_venv() if with_sdk else None
    per_run: list[dict] = []
    with bench_server("results", server_config()) as srv:
        key = srv.api_key
        job_id, job_s = make_job(srv.url, key, rows)
        results_url = f"{srv.url}/jobs/{job_id}/results?result_format=parquet"
        env = {"SUTRO_API_KEY": key, "SUTRO_API_URL": srv.url, "HOME": str(SCRATCH / "home")}
        # The floor reads the same file the contenders download.
        warm = measure(curl_cmd(key, results_url, out_dir / "warm.parquet"))
        assert warm.returncode == 0, warm.stderr_tail
        file_bytes = (out_dir / "warm.parquet").stat().st_size
        contenders = {
            "raw: curl to disk": curl_cmd(key, results_url, out_dir / "curl.parquet"),
            "ours: download_results -> parquet": [OUR_PYTHON, str(BENCH_DIR / "_our_contender.py"), "download",
                                                  job_id, str(out_dir / "ours.parquet")],
            "ours: get_job_results -> DataFrame": [OUR_PYTHON, str(BENCH_DIR / "_our_contender.py"), "dataframe",
                                                   job_id],
            "floor: pl.read_parquet of the file": [OUR_PYTHON, str(BENCH_DIR / "_our_contender.py"), "read-floor",
                                                   str(out_dir / "warm.parquet")],
            WARM_DF: [OUR_PYTHON, str(BENCH_DIR / "_our_contender.py"), "dataframe-warm", job_id],
            WARM_FLOOR: [OUR_PYTHON, str(BENCH_DIR / "_our_contender.py"), "read-floor-warm",
                         str(out_dir / "warm.parquet")],
        }  # fmt: skip
        if sdk_python:
            contenders["official SDK: get_job_results (no cache)"] = [
                sdk_python, str(BENCH_DIR / "_sdk_contender.py"), "results", job_id]
        runs: dict[str, list[Measured]] = {name: [] for name in contenders}
        for i in range(repeats):
            load = loadavg()
            fresh = first_vs_warm(srv.url, key, rows, out_dir)
            samples: dict[str, list[Measured]] = {name: [] for name in contenders}
            for _ in range(SAMPLES):  # interleaved: drift on a shared machine hits all alike
                for name, cmd in contenders.items():
                    m = measure(cmd, env=env)
                    if m.returncode != 0:
                        raise RuntimeError(f"{name} failed ({m.returncode}):\n{m.stderr_tail}")
                    samples[name].append(m)
                    for f in out_dir.glob("*.parquet"):
                        if f.name != "warm.parquet":
                            f.unlink()
            one = {name: median_of(ms) for name, ms in samples.items()}
            for name, m in one.items():
                runs[name].append(m)
            per_run.append({"run": i + 1, "load": load, "load_after": loadavg(), **fresh, **one})
    med = {name: median_of(r) for name, r in runs.items()}
    raw = med["raw: curl to disk"]
    ours_dl = med["ours: download_results -> parquet"]
    ours_df = med["ours: get_job_results -> DataFrame"]
    floor = med["floor: pl.read_parquet of the file"]
    sdk = med.get("official SDK: get_job_results (no cache)")
    rows_out = []
    for name, m in med.items():
        before = m.report.get("rss_before_mb")
        rows_out.append([name, round(m.op_s, 3), round(m.wall_s, 2), round(before) if before else "-",
                         round(m.peak_rss_mb), round(m.peak_rss_mb - before) if before else "-",
                         round(m.op_s / raw.op_s, 2)])

    def ratios(r: dict) -> list:
        df, fl, dl, cu = (r[k] for k in ("ours: get_job_results -> DataFrame", "floor: pl.read_parquet of the file",
                                          "ours: download_results -> parquet", "raw: curl to disk"))
        frame = df.report.get("frame_mb", 1) or 1
        return [r["run"], f"{r['load']} -> {r['load_after']}", round(cu.op_s, 3), round(dl.op_s, 3),
                f"**{dl.op_s / cu.op_s:.2f}x**", f"{_op_cpu(dl):.3f} / {cu.cpu_s:.3f}", round(df.op_s, 3), round(fl.op_s, 3),
                f"**{df.op_s / fl.op_s:.2f}x**",
                f"{growth(df):.0f} ({growth(df) / frame:.2f}x)", f"{growth(fl):.0f} ({growth(fl) / frame:.2f}x)",
                round(r["first_s"], 3), round(r["warm_s"], 3), f"**{r['first_s'] / r['warm_s']:.2f}x**",
                round(r["job_s"], 1)]

    def frame_detail(r: dict) -> list:
        df, fl, wdf, wfl = (r[k] for k in ("ours: get_job_results -> DataFrame",
                                            "floor: pl.read_parquet of the file", WARM_DF, WARM_FLOOR))
        frame = df.report.get("frame_mb", 1) or 1
        return [r["run"], f"{r['load']} -> {r['load_after']}", round(df.op_s, 3),
                round(fl.op_s, 3), f"**{df.op_s / fl.op_s:.2f}x**", f"{_op_cpu(df):.3f} / {_op_cpu(fl):.3f}",
                f"{growth(df):.0f} ({growth(df) / frame:.2f}x)", f"{growth(fl):.0f} ({growth(fl) / frame:.2f}x)",
                f"**{growth(wdf):.0f} ({growth(wdf) / frame:.2f}x)**", f"{growth(wfl):.0f} ({growth(wfl) / frame:.2f}x)",
                f"{wdf.op_s / wfl.op_s:.2f}x"]

    frame_mb = ours_df.report.get("frame_mb", 0)
    lines = [
        f"### 1. Results to parquet: {rows:,} rows, ~{OUTPUT_CHARS}-byte outputs, results file {file_bytes / 1e6:.1f} MB",
        "",
        f"Command: `{command_line()}`  ",
        machine_line() + f" {repeats} run(s) of {SAMPLES} interleaved rounds (medians below, each run after); first job took "
        f"{job_s:.1f} s submit-to-SUCCEEDED.",
        "",
        table(["contender", "time (s)", "process wall (s)", "RSS before (MB)", "peak RSS (MB)", "growth (MB)",
               "time / raw"],
              rows_out),
        "",
        f"Each run: medians of {SAMPLES} interleaved rounds of every contender (load average before -> after; "
        "the ratios are the claim; 'first'/'warm': curl of a fresh job's results right at SUCCEEDED, then the "
        "median of three more):",
        "",
        table(["run", "load avg", "curl (s)", "download_results (s)", "dl / curl",
               "CPU s: download_results call / curl process", "DataFrame (s)",
               "floor read (s)", "DataFrame / floor", "DataFrame growth MB (/ frame)",
               "floor growth MB (/ frame)", "first (s)", "warm (s)", "first / warm", "fresh job (s)"],
              [ratios(r) for r in per_run]),
        "",
        ("DataFrame detail per run (time: the call, after imports; CPU: of the call alone, all threads of the "
         "process; growth: peak RSS minus RSS before the "
         "call, / the frame's estimated_size; 'warm': polars' parquet reader used once on a tiny file before, as "
         "in any process that already worked with polars):"),
        "",
        table(["run", "load avg", "DataFrame (s)", "floor (s)", "DataFrame / floor", "CPU s: ours / floor",
               "growth MB cold", "floor growth cold", "growth MB warm", "floor growth warm",
               "warm time / warm floor"],
              [frame_detail(r) for r in per_run]),
        "",
        f"- get_job_results -> DataFrame / pl.read_parquet of the file: **{ours_df.op_s / floor.op_s:.2f}x** time "
        f"(goal <= 1.3x). Memory growth "
        f"{growth(ours_df):.0f} MB for a {frame_mb:.0f} MB frame (estimated_size; its string views add "
        f"{ours_df.report.get('views_mb', 0):.0f} MB more): **{growth(ours_df) / max(frame_mb, 1):.2f}x** "
        f"(goal <= 1.2x; the floor's own: {growth(floor):.0f} MB, {growth(floor) / max(frame_mb, 1):.2f}x)",
        (f"- in a process that used polars before: growth {growth(med[WARM_DF]):.0f} MB, "
         f"**{growth(med[WARM_DF]) / max(frame_mb, 1):.2f}x** the frame ({growth(med[WARM_DF]) / max(frame_mb + ours_df.report.get('views_mb', 0), 1):.2f}x "
         f"the frame with its views); the floor's {growth(med[WARM_FLOOR]):.0f} MB"),
        f"- download_results / raw curl: **{ours_dl.op_s / raw.op_s:.2f}x** time (goal <= 1.1x); "
        f"peak RSS {ours_dl.peak_rss_mb:.0f} MB (target < 200 MB), of which {growth(ours_dl):.0f} MB came during "
        "the download (the rest: the interpreter, imports, client)",
        "- first download of a fresh job / warm: "
        + ", ".join(f"{r['first_s'] / r['warm_s']:.2f}x" for r in per_run) + " (goal <= 1.2x)",
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
