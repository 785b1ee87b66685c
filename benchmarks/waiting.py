"""Benchmark 2: the CPU cost of waiting on many jobs, ours (one event loop) vs the official SDK (a thread each).

N jobs (default 1,000) are held RUNNING on a fresh sutro-local (an ``echo`` model throttled to one
chunk per ~4 months), so every wait lasts the whole window. Then, each as its own process:

- ours: all N awaited concurrently in one asyncio loop with ``AsyncSutroClient.await_job_completion``
  (the path Airflow's deferrable trigger uses; default ``PollPolicy``: 1 s backoff x1.5 to 30 s, jitter)
- official SDK 0.1.67: one thread per job in ``Sutro.await_job_completion`` (polls every 5 s; each wait
  also runs a yaspin spinner thread; its stdout goes to /dev/null)

CPU is the waiter process's own user+sys time over the window (``getrusage``), polls are counted at
the transport. "Steady state" projects the measured CPU per poll onto each client's long-run poll
rate (ours: one poll per 30 s per job; SDK: one per 5 s), i.e. what an hours-long wait costs.

Usage::

    .venv/bin/python benchmarks/waiting.py --quick          # 200 jobs, 40 s window
    .venv/bin/python benchmarks/waiting.py                  # 1,000 jobs, 120 s window
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH_DIR, OUR_PYTHON, SCRATCH, bench_server, command_line, ensure_sdk_venv, machine_line, measure,
    save_section, table,
)

OUR_STEADY_INTERVAL_S = 30.0  # PollPolicy.max_interval
SDK_INTERVAL_S = 5.0  # sutro.sdk.Sutro.await_job_completion POLL_INTERVAL


def server_config() -> dict:
    """A model whose jobs run one chunk and then wait ~4 months for the next: held RUNNING."""
    return {
        "models": {"hold": {"engine": "echo", "chunk_size": 1, "min_seconds_per_chunk": 1e7}},
        "quotas": [{"job_priority": 0, "row_quota": None}, {"job_priority": 1, "row_quota": None}],
    }


def hold_jobs(url: str, key: str, n: int) -> list[str]:
    """Submit n two-row jobs and wait until all are RUNNING."""
    import httpx

    ids = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Key {key}"}, timeout=60) as http:
        for i in range(n):
            r = http.post("/batch-inference", json={"model": "hold", "inputs": [f"a {i}", f"b {i}"],
                                                    "job_priority": 1})  # fmt: skip
            r.raise_for_status()
            ids.append(r.json()["results"])
        deadline = time.monotonic() + 600
        while True:
            statuses = [j["status"] for j in http.get("/list-jobs").json()["jobs"]]
            if statuses.count("RUNNING") >= n:
                return ids
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {statuses.count('RUNNING')}/{n} jobs RUNNING after 600 s")
            time.sleep(1)


def run(n_jobs: int, window: float, with_sdk: bool) -> str:
    """Measure both waiters over the same held jobs; return the markdown section."""
    sdk_python = ensure_sdk_venv() if with_sdk else None
    rows = []
    with bench_server("waiting", server_config()) as srv:
        t0 = time.perf_counter()
        ids = hold_jobs(srv.url, srv.api_key, n_jobs)
        setup_s = time.perf_counter() - t0
        ids_file = SCRATCH / "waiting-ids.txt"
        ids_file.write_text("\n".join(ids))
        env = {"SUTRO_API_KEY": srv.api_key, "SUTRO_API_URL": srv.url, "HOME": str(SCRATCH / "home")}
        contenders = {"ours: 1 asyncio loop, AsyncSutroClient": (
            [OUR_PYTHON, str(BENCH_DIR / "_our_contender.py"), "wait", str(ids_file), str(window)],
            OUR_STEADY_INTERVAL_S)}  # fmt: skip
        if sdk_python:
            contenders["official SDK: thread per await_job_completion"] = (
                [sdk_python, str(BENCH_DIR / "_sdk_contender.py"), "wait", str(ids_file), str(window)],
                SDK_INTERVAL_S)  # fmt: skip
        results = {}
        for name, (cmd, steady_interval) in contenders.items():
            m = measure(cmd, env=env, timeout=window * 3 + 300)
            if m.returncode != 0:
                raise RuntimeError(f"{name} failed ({m.returncode}):\n{m.stderr_tail}")
            r = m.report
            per_poll_ms = 1000 * r["cpu_s"] / max(1, r["polls"])
            steady_core_1000 = 1000 * (3600 / steady_interval) * per_poll_ms / 1000 / 3600 * 100
            results[name] = (r, per_poll_ms, steady_core_1000, m)
            rows.append([
                name, r["jobs"], round(r["op_s"]), r["polls"], round(r["polls"] / r["jobs"] / (r["op_s"] / 60), 2),
                round(r["cpu_s"], 2), round(100 * r["cpu_s"] / r["op_s"], 2), round(per_poll_ms, 2),
                round(r["cpu_s"] / r["jobs"] / (r["op_s"] / 3600), 3),
                round(per_poll_ms / 1000 * 3600 / steady_interval, 3), round(steady_core_1000, 2),
                round(m.peak_rss_mb),
            ])  # fmt: skip
    ours = results["ours: 1 asyncio loop, AsyncSutroClient"]
    lines = [
        f"### 2. Waiting: {n_jobs:,} jobs held RUNNING, awaited for {window:.0f} s",
        "",
        f"Command: `{command_line()}`  ",
        machine_line() + f" Setup (submitting {n_jobs} jobs until RUNNING) took {setup_s:.0f} s.",
        "",
        table(["waiter", "jobs", "window (s)", "polls", "polls/job/min", "CPU (s)", "% of one core",
               "CPU ms/poll", "CPU s/job/hour (measured)", "CPU s/job/hour (steady)",
               "steady % core @1,000 jobs", "peak RSS (MB)"], rows),  # fmt: skip
        "",
        f"- ours: {100 * ours[0]['cpu_s'] / ours[0]['op_s']:.2f}% of one core over the window for {n_jobs} waits "
        f"(most of it the first minute's fast polls); {ours[2]:.2f}% of one core for 1,000 waits in steady state "
        "(target < 5%).",
    ]
    if with_sdk:
        sdk = results["official SDK: thread per await_job_completion"]
        lines.append(
            f"- official SDK / ours: {sdk[0]['cpu_s'] / max(ours[0]['cpu_s'], 1e-9):.1f}x CPU over the same window; "
            f"{sdk[2] / max(ours[2], 1e-9):.1f}x in steady state; {sdk[3].peak_rss_mb / ours[3].peak_rss_mb:.1f}x memory."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 jobs, 40 s window")
    parser.add_argument("--jobs", type=int, default=None, help="jobs to await (default 1000, quick 200)")
    parser.add_argument("--window", type=float, default=None, help="seconds to wait (default 120, quick 40)")
    parser.add_argument("--no-sdk", action="store_true", help="skip the official SDK")
    parser.add_argument("--save", default=None, help="also write the section to benchmarks/results/<SAVE>.md")
    args = parser.parse_args()
    n = args.jobs or (200 if args.quick else 1000)
    window = args.window or (40.0 if args.quick else 120.0)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    section = run(n, window, not args.no_sdk)
    print(section)
    if args.save:
        save_section(args.save, section)


if __name__ == "__main__":
    main()
