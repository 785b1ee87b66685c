"""Benchmark: a Dagster Sutro asset's results path at 1M rows, peak RSS (goal < 300 MB; issue 12).

One N-row echo job (~100-byte outputs) runs once; then both contenders store its results as the asset does,
each its own process, interleaved, ``--repeats`` times; peak RSS is each process's own (``/usr/bin/time``):

- ``artifact``: the core's ``finish`` (the one results artifact, streamed by row groups, with the carried
  input columns), the completeness check and preview read lazily, the file moved into place;
- ``in-memory``: the pre-lifecycle path: results joined to the input rows in memory, then written.

Both processes import Dagster and hold the upstream frame (N ids and ~20-character texts) before the
measurement starts ("RSS before"); "growth" is the results path's own.

Usage::

    .venv/bin/python benchmarks/dagster_results.py --quick       # 100k rows, 1 repeat
    .venv/bin/python benchmarks/dagster_results.py               # 1M rows, 3 repeats
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH_DIR, OUR_PYTHON, SCRATCH, bench_server, command_line, machine_line, measure, median_of, rows_main, table,
)
from results_download import make_job, server_config  # noqa: E402


def run(rows: int, repeats: int, with_sdk: bool) -> str:  # noqa: ARG001 - no SDK contender here
    out_dir = SCRATCH / "dagster-out"
    contenders = ("artifact", "in-memory")
    runs: dict[str, list] = {c: [] for c in contenders}
    with bench_server("dagster-results", server_config()) as srv:
        job_id, _ = make_job(srv.url, srv.api_key, rows)
        env = {"SUTRO_API_KEY": srv.api_key, "SUTRO_API_URL": srv.url}
        for _ in range(repeats):
            for name in contenders:  # interleaved
                shutil.rmtree(out_dir, ignore_errors=True)
                out_dir.mkdir(parents=True)
                m = measure([OUR_PYTHON, str(BENCH_DIR / "_dagster_contender.py"), name, job_id, str(rows),
                             str(out_dir)], env=env)
                if m.returncode != 0:
                    raise RuntimeError(f"{name} failed ({m.returncode}):\n{m.stderr_tail}")
                runs[name].append(m)
    shutil.rmtree(out_dir, ignore_errors=True)
    med = {name: median_of(r) for name, r in runs.items()}
    table_rows = []
    for name in contenders:
        peaks = sorted(round(m.peak_rss_mb) for m in runs[name])
        growths = sorted(round(m.peak_rss_mb - m.report["rss_before_mb"]) for m in runs[name])
        m = med[name]
        table_rows.append([name, round(m.op_s, 2), f"{peaks[0]}-{peaks[-1]}", round(m.report["rss_before_mb"]),
                           f"{growths[0]}-{growths[-1]}", round(m.peak_rss_mb / med["in-memory"].peak_rss_mb, 2)])
    return "\n".join([
        f"### Dagster asset results path: {rows:,} rows",
        "",
        f"Command: `{command_line()}`  ",
        machine_line() + f" {repeats} interleaved run(s) per contender; ranges over runs.",
        "",
        table(["contender", "time (s, median)", "peak RSS (MB)", "RSS before (MB)", "growth (MB)",
               "peak / in-memory"], table_rows),
        "",
        f"- artifact path peak RSS {med['artifact'].peak_rss_mb:.0f} MB (goal < 300 MB)",
    ]) + "\n"


def main() -> None:
    rows_main(__doc__, run, rows_help="job size")


if __name__ == "__main__":
    main()
