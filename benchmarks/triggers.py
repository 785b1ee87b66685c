"""Benchmark: N deferred Airflow tasks in one triggerer: the real ``SutroJobTrigger`` path (issue 17, goal 1).

N jobs are held RUNNING on a fresh sutro-local (benchmarks/waiting.py's throttled echo model). One process
rebuilds N ``SutroJobTrigger``s from their serialized kwargs and drives their ``run()`` in one asyncio loop
for the window, as Airflow's triggerer does. Reported: CPU as % of one core, peak RSS, polls, TCP
connections opened and left in CLOSE-WAIT, and the time until every job had its first poll.
Goals: under 1% of a core and 250 MB for 1,000 triggers; every first poll within 2 s.

Usage::

    .venv/bin/python benchmarks/triggers.py --quick        # 200 triggers, 60 s
    .venv/bin/python benchmarks/triggers.py                # 1,000 triggers, 200 s
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, OUR_PYTHON, SCRATCH, bench_server, command_line, machine_line, measure, table  # noqa: E402
from waiting import hold_jobs, server_config  # noqa: E402


def run(n_jobs: int, window: float) -> str:
    with bench_server("triggers", server_config()) as srv:
        ids = hold_jobs(srv.url, srv.api_key, n_jobs)
        ids_file = SCRATCH / "trigger-ids.txt"
        ids_file.write_text("\n".join(ids))
        env = {"SUTRO_API_KEY": srv.api_key, "SUTRO_API_URL": srv.url, "AIRFLOW_HOME": str(SCRATCH / "airflow-home")}
        m = measure([OUR_PYTHON, str(BENCH_DIR / "_trigger_contender.py"), str(ids_file), str(window)], env=env,
                    timeout=window * 3 + 300)
        if m.returncode != 0:
            raise RuntimeError(f"trigger contender failed ({m.returncode}):\n{m.stderr_tail}")
    r = m.report
    core = r["cpu_s"] / r["op_s"]
    rows = [[r["jobs"], round(r["op_s"]), r["polls"], round(r["cpu_s"], 1), round(100 * core, 2),
             round(100 * core * 1000 / r["jobs"], 2), round(1000 * r["cpu_s"] / max(1, r["polls"]), 2),
             round(m.peak_rss_mb), r["tcp_connections"], r["close_wait_max"], round(r["first_poll_p50_s"], 2),
             round(r["first_poll_all_s"], 2)]]
    return "\n".join([
        f"### Deferred Airflow tasks: {n_jobs:,} `SutroJobTrigger`s in one loop, {window:.0f} s",
        "",
        f"Command: `{command_line()}`  ",
        machine_line() + " The server shares the 2 cores.",
        "",
        table(["triggers", "window (s)", "polls", "CPU (s)", "% of one core", "% core per 1,000", "CPU ms/poll",
               "peak RSS (MB)", "TCP connections", "max CLOSE-WAIT", "first poll p50 (s)", "first poll, all (s)"],
              rows),
        "",
        "- goals for 1,000: < 1% of one core (steady), < 250 MB, every first poll within 2 s. The window includes "
        "the first minute's fast polls (1 s backing off to 30 s), so it overstates the steady state.",
    ]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 triggers, 60 s")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--window", type=float, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(run(args.jobs or (200 if args.quick else 1000), args.window or (60.0 if args.quick else 200.0)))


if __name__ == "__main__":
    main()
