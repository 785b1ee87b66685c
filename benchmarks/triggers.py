"""Benchmark: N deferred Airflow tasks in one triggerer: the real ``SutroJobTrigger`` path (issue 17, goal 1).

N jobs are held RUNNING on a fresh sutro-local (benchmarks/waiting.py's throttled echo model). One process
rebuilds N ``SutroJobTrigger``s from their serialized kwargs and drives their ``run()`` in one asyncio loop
for the window, as Airflow's triggerer does. Reported: CPU as % of one core, peak RSS, polls, TCP
connections opened and left in CLOSE-WAIT, and the time until every job had its first poll.
Goals: under 1% of a core and 250 MB for 1,000 triggers; every first poll within 2 s.

Usage::

    .venv/bin/python benchmarks/triggers.py --quick        # 200 triggers, 60 s
    .venv/bin/python benchmarks/triggers.py                # 1,000 triggers, 200 s
    .venv/bin/python benchmarks/triggers.py --list-cost 1000,5000   # what one list-jobs read costs
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, OUR_PYTHON, SCRATCH, bench_server, command_line, machine_line, measure, table  # noqa: E402
from waiting import STEADY_INTERVAL_S, hold_jobs, server_config  # noqa: E402


def run(n_jobs: int, window: float, steady_from: float) -> str:
    with bench_server("triggers", server_config()) as srv:
        ids = hold_jobs(srv.url, srv.api_key, n_jobs)
        ids_file = SCRATCH / "trigger-ids.txt"
        ids_file.write_text("\n".join(ids))
        env = {"SUTRO_API_KEY": srv.api_key, "SUTRO_API_URL": srv.url, "AIRFLOW_HOME": str(SCRATCH / "airflow-home")}
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        m = measure([OUR_PYTHON, str(BENCH_DIR / "_trigger_contender.py"), str(ids_file), str(window),
                     str(steady_from)], env=env, timeout=window * 3 + 300)
        load_after = Path("/proc/loadavg").read_text().split()[:3]
        if m.returncode != 0:
            raise RuntimeError(f"trigger contender failed ({m.returncode}):\n{m.stderr_tail}")
    r = m.report
    core = r["cpu_s"] / r["op_s"]
    req = r["requests"]
    rows = [[r["jobs"], round(r["op_s"]), r["polls"], f"{req['job-status']:,} + {req['list-jobs']:,}",
             round(r["cpu_s"], 1), round(100 * core, 2), round(1000 * r["cpu_s"] / max(1, r["polls"]), 3),
             round(m.peak_rss_mb), r["tcp_connections"], r["close_wait_max"], round(r["first_poll_p50_s"], 2),
             round(r["first_poll_all_s"], 2)]]
    lines = [
        f"### Deferred Airflow tasks: {n_jobs:,} `SutroJobTrigger`s in one loop, {window:.0f} s",
        "",
        f"Command: `{command_line()}`  ",
        machine_line() + f" The server shares the 2 cores. Load average before / after: {' '.join(load_before)} / "
        f"{' '.join(load_after)}.",
        "",
        table(["triggers", "window (s)", "polls", "requests (job-status + list-jobs)", "CPU (s)", "% of one core",
               "CPU ms/poll", "peak RSS (MB)", "TCP connections", "max CLOSE-WAIT", "first poll p50 (s)",
               "first poll, all (s)"], rows),
        "",
    ]
    st = r.get("steady")
    if st:
        sampler = st.get("sampler_cpu_s", 0.0)  # the benchmark's own /proc/net/tcp sampling, not the triggers'
        net = st["cpu_s"] - sampler
        per_s = net / st["s"]
        ms_poll = 1000 * net / max(1, st["polls"])
        at_30 = ms_poll / 1000 * r["jobs"] / STEADY_INTERVAL_S  # cores at exactly one poll per 30 s per job
        lines += [
            table(["steady part (s)", "polls", "polls/job/min", "requests (job-status + list-jobs)",
                   "CPU (s), of it sampling TCP", "% of one core (measured, less sampling)", "CPU ms/poll",
                   "% of one core at 1 poll / 30 s / job"],
                  [[f"{st['from_s']:.0f}-{st['from_s'] + st['s']:.0f}", st["polls"],
                    round(st["polls"] / r["jobs"] / (st["s"] / 60), 2),
                    f"{st['requests']['job-status']:,} + {st['requests']['list-jobs']:,}",
                    f"{st['cpu_s']:.2f}, {sampler:.2f}",
                    round(100 * per_s, 2), round(ms_poll, 3), round(100 * at_30, 2)]]),
            "",
        ]
    if r.get("ended_early"):
        lines.append(f"- WARNING: {r['ended_early']} triggers ended before the window did (an error event).")
    lines.append("- goals for 1,000: < 1% of one core (steady), < 250 MB, every first poll within 2 s. The whole "
                 "window includes the first minute's fast polls (1 s backing off to 30 s); the steady part is "
                 "what an hours-long wait costs.")
    return "\n".join(lines) + "\n"


def list_cost(sizes: list[int], reads: int = 20) -> str:
    """What one ``GET list-jobs`` read costs on a key with N jobs (the batched poll's one request), beside one
    ``job-status`` read: wall time, body size, the server's CPU (its process's /proc stat) and the client's
    CPU (httpx get + the status parse the batch does)."""
    import resource
    import time

    import httpx

    from sutro_core.status_batch import _statuses

    def server_cpu(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def own_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    rows = []
    with bench_server("list-cost", server_config()) as srv:
        pid = srv.proc.pid
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Key {srv.api_key}"}, timeout=120) as http:
            have = 0
            for n in sorted(sizes):
                for i in range(have, n):
                    http.post("/batch-inference", json={"model": "hold", "inputs": [f"a {i}"], "job_priority": 1}
                              ).raise_for_status()
                have = n
                job_id = http.get("/list-jobs").json()["jobs"][0]["job_id"]
                load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
                for route in ("list-jobs", f"job-status/{job_id}"):
                    http.get(route)  # warm
                    s0, c0, t0, size = server_cpu(pid), own_cpu(), time.perf_counter(), 0
                    for _ in range(reads):
                        r = http.get(route)
                        size = len(r.content)
                        if route == "list-jobs":
                            assert len(_statuses(r)) == n
                        else:
                            r.json()
                    wall, client, server = (time.perf_counter() - t0) / reads, (own_cpu() - c0) / reads, \
                        (server_cpu(pid) - s0) / reads
                    rows.append([f"{n:,}", route.split("/")[0], round(1000 * wall, 1), round(size / 1024, 1),
                                 round(1000 * server, 1), round(1000 * client, 2), load])
    return "\n".join([
        f"### One `list-jobs` read vs one `job-status` read, by jobs on the key ({reads} reads each)",
        "",
        f"Command: `{command_line()}`  ",
        machine_line() + " Sync httpx client; server CPU from its /proc stat (10 ms ticks).",
        "",
        table(["jobs on the key", "read", "wall ms/read", "body (KiB)", "server CPU ms/read",
               "client CPU ms/read (get + parse)", "load avg"], rows),
    ]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 triggers, 60 s")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--window", type=float, default=None)
    parser.add_argument("--steady-from", type=float, default=None,
                        help="start of the steady part (default 110 s; quick 40 s)")
    parser.add_argument("--list-cost", default=None, metavar="N,N",
                        help="instead: the cost of one list-jobs read on a key with N jobs, e.g. 1000,5000")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.list_cost:
        print(list_cost([int(n) for n in args.list_cost.split(",")]))
        return
    print(run(args.jobs or (200 if args.quick else 1000), args.window or (60.0 if args.quick else 200.0),
              args.steady_from or (40.0 if args.quick else 110.0)))


if __name__ == "__main__":
    main()
