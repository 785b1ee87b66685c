"""``get_job_results`` against the plain path: download the results file, then read it (benchmarks/README.md,
"One reading path": a cleverer reading path stays only while this shows it beating the plain one).

One run, one fresh sutro-local, the ``echo`` engine (~100-byte outputs), one job per size (default 1M and
5M rows). Then, per size, ``--rounds`` interleaved rounds (the contenders' order rotates each round), every
contender its own process with polars used once before (the issue-23 set-up):

- ``get_job_results``: whatever the client does to build the DataFrame
- download then read: ``download_results`` to a temp file (streamed, validated, atomic), then
  ``pl.read_parquet`` of it
- floor: ``pl.read_parquet`` of the same file, already on disk
- ``download_results`` alone, and ``curl`` of the same file (the raw limit)

Time is the call alone (after imports); CPU the call's (all threads); growth is peak RSS minus RSS before
the call. The load average before and after each size's rounds is printed: the box is shared.

Usage::

    .venv/bin/python benchmarks/results_reading.py                      # 1M and 5M rows, 5 rounds
    .venv/bin/python benchmarks/results_reading.py --rows 100000 --rounds 2
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, OUR_PYTHON, SCRATCH, Measured, bench_server, machine_line, measure, table  # noqa: E402
from results_download import curl_cmd, loadavg, make_job, server_config  # noqa: E402

DF = "get_job_results"
PLAIN = "download then read"
FLOOR = "floor: pl.read_parquet"
DL = "download_results"
CURL = "curl to disk"


def contenders(job_id: str, out_dir: Path, file: Path, results_url: str, key: str) -> dict[str, list[str]]:
    ours = [OUR_PYTHON, str(BENCH_DIR / "_our_contender.py")]
    return {
        DF: [*ours, "dataframe-warm", job_id],
        PLAIN: [*ours, "download-then-read", job_id],
        FLOOR: [*ours, "read-floor-warm", str(file)],
        DL: [*ours, "download", job_id, str(out_dir / "dl.parquet")],
        CURL: curl_cmd(key, results_url, out_dir / "curl.parquet"),
    }


def cpu(m: Measured) -> float:
    return float(m.report.get("op_cpu_s", m.cpu_s))


def growth(m: Measured) -> float:
    before = m.report.get("rss_before_mb")
    return m.peak_rss_mb - float(before) if before else float("nan")


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}x (median {statistics.median(values):.2f}x)"


def run_size(srv, rows: int, rounds: int, out_dir: Path) -> str:
    key = srv.api_key
    job_id, job_s = make_job(srv.url, key, rows)
    results_url = f"{srv.url}/jobs/{job_id}/results?result_format=parquet"
    file = out_dir / f"file-{rows}.parquet"
    warm = measure(curl_cmd(key, results_url, file))
    assert warm.returncode == 0, warm.stderr_tail
    env = {"SUTRO_API_KEY": key, "SUTRO_API_URL": srv.url, "HOME": str(SCRATCH / "home")}
    cmds = contenders(job_id, out_dir, file, results_url, key)
    names = list(cmds)
    per_round: list[dict[str, Measured]] = []
    loads = [loadavg()]
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate: no contender always runs first
        got: dict[str, Measured] = {}
        for name in order:
            m = measure(cmds[name], env=env)
            if m.returncode != 0:
                raise RuntimeError(f"{name} failed ({m.returncode}):\n{m.stderr_tail}")
            got[name] = m
            for f in out_dir.glob("*.parquet"):
                if f != file:
                    f.unlink()
        per_round.append(got)
        loads.append(loadavg())
    rows_out = []
    for i, got in enumerate(per_round):
        rows_out.append([
            i + 1, loads[i].split()[0] + " -> " + loads[i + 1].split()[0],
            f"{got[DF].op_s:.3f}", f"{got[PLAIN].op_s:.3f}", f"**{got[DF].op_s / got[PLAIN].op_s:.2f}x**",
            f"{got[FLOOR].op_s:.3f}",
            f"{cpu(got[DF]):.3f} / {cpu(got[PLAIN]):.3f}", f"{growth(got[DF]):.0f} / {growth(got[PLAIN]):.0f}",
            f"{got[DL].op_s:.3f} / {got[CURL].op_s:.3f}", f"{cpu(got[DL]):.3f}",
        ])
    ratio = [g[DF].op_s / g[PLAIN].op_s for g in per_round]
    dl = [g[DL].op_s / g[CURL].op_s for g in per_round]
    plain_floor = [g[PLAIN].op_s / g[FLOOR].op_s for g in per_round]
    mb = file.stat().st_size / 1e6
    return "\n".join([
        f"#### {rows:,} rows (results file {mb:.0f} MB; job {job_s:.0f} s submit-to-SUCCEEDED), "
        f"{rounds} interleaved rounds, load {loads[0]} -> {loads[-1]}",
        "",
        table(["round", "load (1 min)", f"{DF} (s)", f"{PLAIN} (s)", "get_job_results / plain",
               "floor (s)", "CPU s: get_job_results / plain", "growth MB: get_job_results / plain",
               "download_results / curl (s)", "download_results CPU (s)"], rows_out),
        "",
        f"- {DF} / {PLAIN}: {spread(ratio)}; {PLAIN} / floor: {spread(plain_floor)}",
        f"- {DL} / curl: {spread(dl)}",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    out_dir = SCRATCH / "results-reading"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    sections = [machine_line(), ""]
    with bench_server("results-reading", server_config()) as srv:
        for rows in args.rows:
            sections.append(run_size(srv, rows, args.rounds, out_dir))
            print(sections[-1], flush=True)
    print("\n".join(sections))


if __name__ == "__main__":
    main()
