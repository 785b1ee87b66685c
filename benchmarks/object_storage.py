"""A results artifact to and from S3 through our path against s3fs ``put_file`` / ``get_file`` of the same file.

One moto S3 server (``python -m moto.server``, real HTTP on loopback; ``tests/support/s3_server.py``), one
results-like artifact per size (the one results shape: carried ``ticket_id`` and ``text``, ~100-character
``inference_result``, ``sutro_row_status``, ``sutro_job_id``; 8,192-row row groups, zstd, as the core writes
them), default 250k and 1M rows. Then ``--rounds`` interleaved rounds (the order rotates each round), every
contender its own process with only the standard AWS environment (``_s3_contender.py``):

- write: ``finalize`` of the finished temp file (validate, footer metadata, one upload: a streamed PUT up to
  512 MiB) and ``storage.upload_file`` alone, against ``s3fs`` ``put_file`` (which reads a file under 100 MB
  into memory whole)
- read: ``storage.download_file`` (what ``load_results`` / ``iter_results`` fetch a remote artifact with)
  against ``s3fs`` ``get_file``; ``iter_results`` over the whole file (download + every batch decoded) against
  ``get_file`` + ``pyarrow`` ``iter_batches`` of the local file

Time is the operation alone (after imports and the connection), the median of ``--repeats`` in one process;
ratios are per round (ours / s3fs in the
same round), shown as their range and median. Peak RSS is the process's own (GNU time): flat in rows means
the 250k and 1M figures are about the same.

Usage::

    .venv/bin/python benchmarks/object_storage.py                     # 250k and 1M rows, 5 rounds
    .venv/bin/python benchmarks/object_storage.py --rows 100000 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import BENCH_DIR, OUR_PYTHON, SCRATCH, Measured, machine_line, measure, table  # noqa: E402

PAIRS = [  # (ours, baseline): each ratio is ours / baseline in the same round
    ("ours-write", "s3fs-put"),
    ("ours-upload", "s3fs-put"),
    ("ours-download", "s3fs-get"),
    ("ours-iter", "s3fs-get-iter"),
]
LABELS = {
    "ours-write": "ours: finalize (validate, footer, upload)",
    "ours-upload": "ours: storage.upload_file",
    "s3fs-put": "s3fs put_file",
    "ours-download": "ours: storage.download_file",
    "s3fs-get": "s3fs get_file",
    "ours-iter": "ours: iter_results (all batches)",
    "s3fs-get-iter": "s3fs get_file + pyarrow iter_batches",
}
WRITES = ("ours-write", "ours-upload", "s3fs-put")


def make_artifact(path: Path, rows: int) -> None:
    """A results-like artifact of ``rows`` rows (~38 bytes a row compressed: ~100-character outputs)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(rows)
    words = np.array("the a charged twice app crashes login refund invoice password dark mode export report "
                     "please help billing account settings page error sorry thanks".split())
    picks = rng.integers(0, len(words), size=(rows, 18))
    outputs = [" ".join(words[r]) for r in picks]
    pl.DataFrame({
        "ticket_id": np.arange(rows, dtype=np.int64),
        "text": [f"ticket {i}: {outputs[(i * 7) % rows][:40]}" for i in range(rows)],
        "inference_result": outputs,
        "sutro_row_status": ["ok"] * rows,
        "sutro_job_id": ["job-0123456789abcdef"] * rows,
    }).write_parquet(path, compression="zstd", row_group_size=8192)


def loadavg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[250_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="operations per contender process (median)")
    args = parser.parse_args()

    from support.s3_server import S3TestServer

    work = SCRATCH / f"object-storage-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    contender = [OUR_PYTHON if Path(OUR_PYTHON).exists() else sys.executable, str(BENCH_DIR / "_s3_contender.py")]
    modes = list(LABELS)
    out_rows, ratio_rows = [], []
    try:
        with S3TestServer() as s3:
            bucket = s3.create_bucket("sutro-bench")
            env = s3.env
            for rows in args.rows:
                src = work / f"artifact-{rows}.parquet"
                make_artifact(src, rows)
                size_mb = src.stat().st_size / 2**20
                uri = f"s3://{bucket}/bench/{rows}/artifact.parquet"
                s3.client().upload_file(str(src), bucket, f"bench/{rows}/artifact.parquet")  # for the reads
                runs: dict[str, list[Measured]] = {m: [] for m in modes}
                before = loadavg()
                for r in range(args.rounds):
                    for mode in modes[r % len(modes):] + modes[:r % len(modes)]:
                        target = f"s3://{bucket}/bench/{rows}/{mode}.parquet" if mode in WRITES else uri
                        local = src if mode in WRITES else work / f"{mode}.parquet"
                        m = measure([*contender, mode, str(local), target, str(args.repeats)], env=env)
                        if m.returncode != 0:
                            raise SystemExit(f"{mode} failed: {m.stderr_tail}")
                        runs[mode].append(m)
                        if mode not in WRITES:
                            Path(local).unlink(missing_ok=True)
                after = loadavg()
                for mode in modes:
                    times = [m.op_s for m in runs[mode]]
                    out_rows.append([f"{rows:,}", LABELS[mode], f"{statistics.median(times):.3f}",
                                     f"{min(times):.3f}-{max(times):.3f}",
                                     f"{max(m.peak_rss_mb for m in runs[mode]):.0f}",
                                     f"{statistics.median(m.peak_rss_mb - m.report.get('rss_before_mb', 0) for m in runs[mode]):.0f}"])
                for ours, base in PAIRS:
                    ratios = [a.op_s / b.op_s for a, b in zip(runs[ours], runs[base])]
                    ratio_rows.append([f"{rows:,}", f"{LABELS[ours]} / {LABELS[base]}",
                                       f"{statistics.median(ratios):.2f}x", f"{min(ratios):.2f}-{max(ratios):.2f}x",
                                       f"{sum(x <= 1.2 for x in ratios)} of {len(ratios)}"])
                print(f"{rows:,} rows: artifact {size_mb:.1f} MB; load average before {before}, after {after}",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(machine_line())
    print(f"{args.rounds} interleaved rounds per size, {args.repeats} operations per contender process (median); "
          "S3: moto server over HTTP on loopback.\n")
    print(table(["rows", "contender", "median s", "range s", "peak RSS MB (max)", "growth MB (median)"], out_rows))
    print()
    print(table(["rows", "ratio (same round)", "median", "range", "rounds <= 1.2x"], ratio_rows))


if __name__ == "__main__":
    main()
