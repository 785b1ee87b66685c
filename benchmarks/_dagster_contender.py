"""Contenders for benchmarks/dagster_results.py; run with the project's venv python.

Both take a finished N-row job and the upstream frame it was submitted from, and store the asset's results:

- ``artifact``: what a Dagster Sutro asset does now: the core's ``finish`` streams the one results artifact
  (carried input columns + outputs) by row groups, the completeness check and the preview read it lazily,
  and ``SutroParquetIOManager`` moves the file into place;
- ``in-memory``: what the asset did before: ``get_job_results(with_original_df=frame)`` joined in memory,
  then written by the IO manager.

Dagster, polars and pyarrow are imported and the frame is built before ``rss_before_mb`` is taken, so the
growth is the results path's own. Prints one JSON line as its last stdout line.

Usage::

    .venv/bin/python benchmarks/_dagster_contender.py artifact JOB_ID ROWS OUT_DIR
    .venv/bin/python benchmarks/_dagster_contender.py in-memory JOB_ID ROWS OUT_DIR
"""

from __future__ import annotations

import json
import resource
import sys
import time


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def frame(rows: int):
    """The upstream rows of the benchmark's job (the job's inputs are their ``text``)."""
    import polars as pl

    # Built by polars, not from a Python list (which alone peaks ~100 MB higher at 1M rows).
    return pl.select(review_id=pl.int_range(rows), text=pl.format("customer review {}", pl.int_range(rows)))


def artifact(job_id: str, rows: int, out_dir: str) -> dict:
    import dagster  # noqa: F401 - imported before the measurement, as in a Dagster step

    from dagster_sutro.checks import evaluate_results
    from dagster_sutro.io import SutroArtifact
    from sutro_core import JobHandle, SutroClient, load_results

    upstream = frame(rows)
    with SutroClient() as client:
        handle = JobHandle(job_id=job_id, api_url=client.api_url, url=client.job_url(job_id), started_at=time.time(),
                           output_uri=f"{out_dir}/staging/{job_id}.parquet")
        before = _rss_mb()
        t0 = time.perf_counter()
        manifest = client.finish(handle, carry=upstream)
    art = SutroArtifact.of(manifest)
    check = evaluate_results(art, input_rows=rows, expected_columns=["inference_result"], input_columns=upstream.columns)
    load_results(manifest, n_rows=5)
    import shutil

    shutil.move(manifest.uri, f"{out_dir}/stored.parquet")  # what SutroParquetIOManager.dump_to_path does
    assert check.passed
    return {"op_s": time.perf_counter() - t0, "rows": manifest.rows, "rss_before_mb": before}


def in_memory(job_id: str, rows: int, out_dir: str) -> dict:
    import dagster  # noqa: F401

    from sutro_core import SutroClient

    upstream = frame(rows)
    with SutroClient() as client:
        before = _rss_mb()
        t0 = time.perf_counter()
        joined = client.get_job_results(job_id, with_original_df=upstream)
    joined.write_parquet(f"{out_dir}/stored.parquet")
    return {"op_s": time.perf_counter() - t0, "rows": joined.height, "rss_before_mb": before}


if __name__ == "__main__":
    mode, job, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    print(json.dumps((artifact if mode == "artifact" else in_memory)(job, n, out)))
