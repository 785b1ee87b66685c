"""Micro-benchmark: add job metadata to a results parquet file, footer rewrite vs full rewrite.

``download_results`` must stay within 1.25x of a raw byte copy, so metadata is added by
rewriting only the parquet footer (``sutro_core.results.parquet_footer``). This script shows why:
it writes a ~100 MB results-like file (ids, text, list<float32> embeddings, several row
groups), then times, on fresh copies of it:

- raw copy (``shutil.copyfile``): the baseline a download is measured against
- footer rewrite (``add_key_value_metadata``)
- full rewrite (``ParquetFile.iter_batches`` + ``ParquetWriter``): decode + re-encode everything

Usage::

    .venv/bin/python benchmarks/footer_rewrite.py                # ~100 MB, 5 repeats
    .venv/bin/python benchmarks/footer_rewrite.py --size-mb 20 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sutro_core.results.parquet_footer import add_key_value_metadata, read_key_value_metadata

METADATA = {
    "sutro.job_id": "job-0123456789abcdef",
    "sutro.model": "qwen-3-4b",
    "sutro.row_count": "0",
    "sutro.created_at": "2026-11-22T23:00:00Z",
}
EMBED_DIM = 64
ROWS_PER_GROUP = 50_000


def make_file(path: str, size_mb: float) -> int:
    """Write a results-like parquet file of about ``size_mb`` MB; returns the row count."""
    # ~256 B embedding + 8 B id + text that zstd squeezes to a few bytes; random floats barely compress.
    rows = int(size_mb * 1_000_000 / 268)
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((rows, EMBED_DIM), dtype=np.float32)
    words = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"])
    text = [" ".join(words[rng.integers(0, 8, 10)]) + f" #{i}" for i in range(rows)]
    table = pa.table(
        {
            "id": pa.array(np.arange(rows, dtype=np.int64)),
            "outputs": pa.array(text, type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), EMBED_DIM).cast(
                pa.list_(pa.float32())
            ),
        }
    )
    pq.write_table(table, path, compression="zstd", row_group_size=ROWS_PER_GROUP, write_statistics=True)
    return rows


def full_rewrite(src: str, dst: str, metadata: dict[str, str]) -> None:
    """The expensive alternative: decode every row group and encode it again with new metadata."""
    pf = pq.ParquetFile(src)
    schema = pf.schema_arrow
    schema = schema.with_metadata({**(schema.metadata or {}), **{k.encode(): v.encode() for k, v in metadata.items()}})
    with pq.ParquetWriter(dst, schema, compression="zstd") as writer:
        for batch in pf.iter_batches(batch_size=ROWS_PER_GROUP):
            writer.write_batch(batch)


def _time(fn: Callable[[], None], setup: Callable[[], None], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=100.0, help="approximate file size (default 100)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method (full rewrite: min(3, n))")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "src.parquet")
        work = os.path.join(tmp, "work.parquet")
        out = os.path.join(tmp, "out.parquet")
        rows = make_file(src, args.size_mb)
        meta = {**METADATA, "sutro.row_count": str(rows)}
        size = os.path.getsize(src)
        with open(src, "rb") as f:
            f.seek(-8, os.SEEK_END)
            footer_len = int.from_bytes(f.read(4), "little")

        def fresh() -> None:
            shutil.copyfile(src, work)

        def drop_out() -> None:
            if os.path.exists(out):
                os.remove(out)

        copy_t = _time(lambda: shutil.copyfile(src, out), drop_out, args.repeats)
        footer_t = _time(lambda: add_key_value_metadata(work, meta), fresh, args.repeats)
        assert read_key_value_metadata(work)["sutro.row_count"] == str(rows)
        assert pq.read_metadata(work).num_rows == rows
        full_t = _time(lambda: full_rewrite(src, out, meta), drop_out, min(3, args.repeats))
        assert read_key_value_metadata(out)["sutro.job_id"] == meta["sutro.job_id"]

    copy_s, footer_s, full_s = (statistics.median(t) for t in (copy_t, footer_t, full_t))
    print(f"file: {size / 1e6:.1f} MB, {rows:,} rows, {-(-rows // ROWS_PER_GROUP)} row groups, "
          f"footer {footer_len:,} B")
    print(f"{'method':<34}{'median s':>12}{'vs raw copy':>14}")
    print("-" * 60)
    print(f"{'raw copy (shutil.copyfile)':<34}{copy_s:>12.4f}{1.0:>13.2f}x")
    print(f"{'footer rewrite (this module)':<34}{footer_s:>12.4f}{footer_s / copy_s:>13.3f}x")
    print(f"{'full rewrite (iter_batches+Writer)':<34}{full_s:>12.4f}{full_s / copy_s:>13.2f}x")
    print("-" * 60)
    print(f"full rewrite / footer rewrite: {full_s / footer_s:,.0f}x")
    print(f"copy + footer rewrite vs copy: {(copy_s + footer_s) / copy_s:.3f}x (budget 1.25x)")


if __name__ == "__main__":
    main()
