"""Benchmark 2: the CPU cost of waiting on many jobs, ours (one event loop) vs the official SDK (a thread each).

N jobs (default 1,000) are held RUNNING on a fresh sutro-local (an ``echo`` model throttled to one
chunk per ~4 months), so every wait lasts the whole window. Then, each as its own process:

- ours: all N awaited concurrently in one asyncio loop with ``AsyncSutroClient.await_job_completion``
  (the path Airflow's deferrable trigger uses; default ``PollPolicy``: 1 s backoff x1.5 to 30 s, jitter)
- official SDK 0.1.67: one thread per job in ``Sutro.await_job_completion`` (polls every 5 s; each wait
  also runs a yaspin spinner thread; its stdout goes to /dev/null)

CPU is the waiter process's own user+sys time (``getrusage``); polls are counted as they are sent.
Both are also sampled at ``--steady-from`` seconds: after it every one of our waits polls at its
longest interval (~30 s), so the rest of the window is what an hours-long wait costs per hour.

Usage::

    .venv/bin/python benchmarks/waiting.py --quick          # 200 jobs, 60 s window (steady part: 40-60 s)
    .venv/bin/python benchmarks/waiting.py                  # 1,000 jobs, 200 s window (steady part: 110-200 s)
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

OURS = "ours: 1 asyncio loop, AsyncSutroClient"
SDK = "official SDK: thread per await_job_completion"
STEADY_INTERVAL_S = 30.0  # sutro_core PollPolicy.max_interval: our long-run poll period


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


def run(n_jobs: int, window: float, steady_from: float, with_sdk: bool) -> str:
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
        args = [str(ids_file), str(window), str(steady_from)]
        contenders = {OURS: [OUR_PYTHON, str(BENCH_DIR / "_our_contender.py"), "wait", *args]}
        if sdk_python:
            contenders[SDK] = [sdk_python, str(BENCH_DIR / "_sdk_contender.py"), "wait", *args]
        results: dict = {}
        loads: dict[str, str] = {}
        for name, cmd in contenders.items():
            load_before = Path("/proc/loadavg").read_text().split()[:3]
            m = measure(cmd, env=env, timeout=window * 3 + 300)
            loads[name] = f"{' '.join(load_before)} / {' '.join(Path('/proc/loadavg').read_text().split()[:3])}"
            if m.returncode != 0:
                raise RuntimeError(f"{name} failed ({m.returncode}):\n{m.stderr_tail}")
            r, st = m.report, m.report["steady"]
            jobs = r["jobs"]
            results[name] = {
                "window_core": r["cpu_s"] / r["op_s"],
                "steady_core_1000": st["cpu_s"] / st["s"] * 1000 / jobs,
                "per_poll_ms": 1000 * st["cpu_s"] / max(1, st["polls"]),
                "rss": m.peak_rss_mb,
            }
            rows.append([
                name, jobs, round(r["op_s"]), r["polls"], r.get("requests", r["polls"]), round(r["cpu_s"], 1),
                f"{r['user_s']:.1f} / {r['sys_s']:.1f}", round(100 * results[name]["window_core"], 1),
                f"{steady_from:.0f}-{r['op_s']:.0f}", st["polls"], st.get("requests", st["polls"]),
                round(st["polls"] / jobs / (st["s"] / 60), 2),
                round(results[name]["per_poll_ms"], 2), round(st["cpu_s"] / jobs / (st["s"] / 3600), 2),
                round(100 * results[name]["steady_core_1000"], 2), round(m.peak_rss_mb), loads[name],
            ])  # fmt: skip
    ours = results[OURS]
    lines = [
        f"### 2. Waiting: {n_jobs:,} jobs held RUNNING, awaited for {window:.0f} s",
        "",
        f"Command: `{command_line()}`  ",
        machine_line() + f" Setup (submitting {n_jobs} jobs until RUNNING) took {setup_s:.0f} s. The server "
        "shares the 2 cores; loopback TCP charges both ends' kernel work to the sender (the sys column).",
        "",
        table(["waiter", "jobs", "window (s)", "polls", "requests", "CPU (s)", "user / sys (s)", "% of one core",
               "steady part (s)", "steady polls", "steady requests", "polls/job/min", "CPU ms/poll",
               "CPU s/job/hour", "% core @1,000 jobs", "peak RSS (MB)", "load avg before / after"], rows),  # fmt: skip
        "",
        f"- ours, steady state: **{100 * ours['steady_core_1000']:.2f}% of one core for 1,000 waits** "
        f"(goal < 1%, issue 17); {ours['per_poll_ms']:.3f} ms CPU per poll. Whole window incl. the first minute's "
        f"fast polls: {100 * ours['window_core']:.1f}% for {n_jobs:,} waits. At exactly one poll per "
        f"{STEADY_INTERVAL_S:.0f} s per job (PollPolicy.max_interval): "
        f"{100 * 1000 / STEADY_INTERVAL_S * ours['per_poll_ms'] / 1000:.2f}% for 1,000 waits. Polls are the "
        "waits' status reads; requests what went out: when many waits share a client, one `list-jobs` read "
        "answers every poll due shortly after it (a status at most a fifth of the wait's last pause old).",
    ]
    if with_sdk:
        sdk = results[SDK]
        lines.append(
            f"- official SDK / ours: **{sdk['steady_core_1000'] / ours['steady_core_1000']:.1f}x** CPU in steady "
            f"state, {sdk['per_poll_ms'] / ours['per_poll_ms']:.1f}x CPU per poll (a new TCP connection per poll, "
            f"plus a spinner thread per wait), {sdk['rss'] / ours['rss']:.1f}x memory."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 jobs, 60 s window, steady part from 40 s")
    parser.add_argument("--jobs", type=int, default=None, help="jobs to await (default 1000, quick 200)")
    parser.add_argument("--window", type=float, default=None, help="seconds to wait (default 200, quick 60)")
    parser.add_argument("--steady-from", type=float, default=None,
                        help="start of the steady part in seconds (default 110: every wait polls at ~30 s by then)")
    parser.add_argument("--no-sdk", action="store_true", help="skip the official SDK")
    parser.add_argument("--save", default=None, help="also write the section to benchmarks/results/<SAVE>.md")
    args = parser.parse_args()
    n = args.jobs or (200 if args.quick else 1000)
    window = args.window or (60.0 if args.quick else 200.0)
    steady_from = args.steady_from or (40.0 if args.quick else 110.0)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    section = run(n, window, steady_from, not args.no_sdk)
    print(section)
    if args.save:
        save_section(args.save, section)


if __name__ == "__main__":
    main()
