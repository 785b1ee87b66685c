"""Row reuse end to end: a 1M-row step re-run with 99% of its rows in the row store, against the same step
run fresh (no store), through ``SutroClient.run`` on a real sutro-local (``echo`` engine, ~100-character
outputs, so the client's path is measured, not a model).

Contenders, each a fresh process (peak RSS is its own, read by ``/usr/bin/time``), in interleaved rounds
(the order alternates):

- fresh: ``client.run`` of N rows without a store (submit N rows, wait, download, write the artifact);
- first run with a store: the same N rows with ``row_store=`` and none stored (what keeping a store costs:
  keys, a lookup that finds nothing, the submission record, appending N rows);
- re-run, 99% stored: N rows of which 99% are stored (each round's 1% are new to the store), so the job
  is sent 1% of the rows and the rest are merged in from the store.

The store is built once (the first N rows, by one run) before the rounds; every round's re-run adds its 1%.
Time is the step alone (``client.run``, after imports and building the input DataFrame).

Usage::

    .venv/bin/python benchmarks/row_reuse.py --quick           # 100k rows, 1 round
    .venv/bin/python benchmarks/row_reuse.py                   # 1M rows, 3 rounds
    .venv/bin/python benchmarks/row_reuse.py --save row_reuse
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    SCRATCH, Measured, bench_server, command_line, machine_line, measure, save_section, table, value_range as rng,
)

OUTPUT_CHARS = 100
FRESH = "fresh run (no store)"
FIRST = "first run with a store (nothing stored)"
RERUN = "re-run, 99% stored"


def server_config() -> dict:
    return {
        "models": {"echo-100": {"engine": "echo", "options": {"output_chars": OUTPUT_CHARS}, "chunk_size": 50_000}},
        "quotas": [{"job_priority": 0, "row_quota": None}, {"job_priority": 1, "row_quota": None}],
    }


def rows_for(n: int, new_tag: str | None) -> list[str]:
    """N ticket texts: all from the stored set, or (``new_tag``) 99% stored and 1% new ones tagged."""
    if new_tag is None:
        return [f"ticket {i}: the order arrived late but works" for i in range(n)]
    kept = n - n // 100
    return rows_for(kept, None) + [f"ticket {new_tag}-{i}: something new" for i in range(n // 100)]


def contender(name: str, url: str, key: str, rows: int, store: str, workdir: str) -> None:
    """One step in this process; prints a JSON report as the last line."""
    import resource

    import polars as pl

    from sutro_core import JobSpec, PollPolicy, SutroClient

    texts = rows_for(rows, uuid.uuid4().hex[:8] if name == "rerun" else None)
    frame = pl.DataFrame({"id": range(len(texts)), "text": texts})
    out = Path(workdir) / f"{name}-{uuid.uuid4().hex[:8]}.parquet"
    settings = {} if name == "fresh" else {"row_store": store}
    spec = JobSpec.for_inference(frame, "echo-100", column="text", output_uri=str(out), job_priority=1,
                                 poll=PollPolicy(initial_interval=0.05, max_interval=0.5), **settings)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    with SutroClient(api_key=key, api_url=url, timeout=600) as client:
        outcome = client.run(spec, scope=("bench", name, uuid.uuid4().hex))
    op = time.perf_counter() - t0
    m = outcome.manifest
    out.unlink()
    job_s = outcome.job.duration_seconds if outcome.job is not None else 0.0
    print(json.dumps({"op_s": op, "job_s": job_s, "rss_before_mb": before, "rows": m.rows, "sent": m.rows_submitted,
                      "reused": m.rows_from_store, "ok": (m.row_status_counts or {}).get("ok")}))


def run(rows: int, repeats: int) -> str:
    folder = SCRATCH / "row-reuse"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    store = folder / "store"
    with bench_server("row-reuse", server_config()) as srv:
        key = srv.api_key
        me = [sys.executable, str(Path(__file__).resolve()), "--contender"]

        def cmd(arg: str, where: Path) -> list[str]:
            return [*me, arg, srv.url, key, str(rows), str(where), str(folder)]

        first = measure(cmd("first", store), timeout=3600)  # builds the store the re-runs read
        if first.returncode != 0:
            raise RuntimeError(f"building the store failed: {first.stderr_tail}")
        runs: dict[str, list[Measured]] = {FRESH: [], FIRST: [first], RERUN: []}
        loads = []
        for r in range(repeats):
            before = " ".join(f"{x:.2f}" for x in os.getloadavg())
            order = [FRESH, FIRST, RERUN] if r % 2 == 0 else [RERUN, FIRST, FRESH]
            for name in order:
                # the "first run" contender gets a store of its own each round (nothing stored)
                where = folder / f"empty-{r}" if name == FIRST else store
                arg = {FRESH: "fresh", FIRST: "first", RERUN: "rerun"}[name]
                m = measure(cmd(arg, where), timeout=3600)
                if m.returncode != 0:
                    raise RuntimeError(f"{name} failed: {m.stderr_tail}")
                runs[name].append(m)
                shutil.rmtree(folder / f"empty-{r}", ignore_errors=True)
            loads.append(f"{before} -> {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    table_rows = []
    for name, ms in runs.items():
        ms = ms[1:] if name == FIRST else ms  # the store-building run is not a round
        rep = ms[0].report
        table_rows.append([name, rng([m.op_s for m in ms]), f"{statistics.median(m.op_s for m in ms):.2f}",
                           rng([m.report["job_s"] or 0.0 for m in ms]),
                           rng([m.peak_rss_mb for m in ms], "{:.0f}"), f"{rep['sent']}", f"{rep['reused']}",
                           f"{rep['ok']:,}"])
    t_rerun = [a.op_s / b.op_s for a, b in zip(runs[RERUN], runs[FRESH])]
    m_rerun = [a.peak_rss_mb / b.peak_rss_mb for a, b in zip(runs[RERUN], runs[FRESH])]
    t_first = [a.op_s / b.op_s for a, b in zip(runs[FIRST][1:], runs[FRESH])]
    m_first = [a.peak_rss_mb / b.peak_rss_mb for a, b in zip(runs[FIRST][1:], runs[FRESH])]
    lines = [
        f"### Row reuse end to end: a {rows:,}-row step, 99% stored, against the same step fresh",
        "",
        f"Command: `{command_line()}`  ",
        f"{machine_line()} {repeats} interleaved round(s), each contender a fresh process, one sutro-local "
        f"(`echo`, {OUTPUT_CHARS}-character outputs). Load average (1/5/15 min) per round: {'; '.join(loads)}.",
        "",
        table(["contender", "step time (s), range", "median (s)", "of which the job ran (s)", "peak RSS (MB)",
               "rows sent", "rows reused",
               "ok rows"], table_rows),
        "",
        f"- re-run 99% stored / fresh, paired per round: time **{rng(t_rerun)}x** (median "
        f"{statistics.median(t_rerun):.2f}x), peak RSS {rng(m_rerun)}x",
        f"- first run with a store / fresh (the cost of keeping a store): time {rng(t_first)}x, "
        f"peak RSS {rng(m_first)}x",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k rows, 1 round")
    parser.add_argument("--rows", type=int, default=None, help="rows per step (default 1M, quick 100k)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--save", default=None, help="also write the section to benchmarks/results/<SAVE>.md")
    parser.add_argument("--contender", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        name, url, key, rows, store, workdir = args.contender
        contender(name, url, key, int(rows), store, workdir)
        return
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    section = run(rows, args.repeats or (1 if args.quick else 3))
    print(section)
    if args.save:
        save_section(args.save, section)


if __name__ == "__main__":
    main()
