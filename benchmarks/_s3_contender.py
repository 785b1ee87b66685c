"""One contender of ``object_storage.py``, run as its own process with the standard AWS environment.

Usage: ``_s3_contender.py MODE SRC_OR_DST URI [REPEATS]`` with MODE one of ``ours-write`` (``finalize`` of a finished
temp file: validate, footer metadata, one upload), ``ours-upload`` (``storage.upload_file`` alone),
``s3fs-put``, ``ours-download`` (``storage.download_file``), ``s3fs-get``, ``ours-iter`` (``iter_results``:
download and decode every batch), ``s3fs-get-iter`` (``get_file`` then ``pyarrow`` ``iter_batches`` of the
local file). Prints one JSON line: ``op_s`` (the operation alone, median of REPEATS), ``rss_before_mb``,
``rows``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "core"), str(ROOT)]


def main() -> None:
    mode, local, uri = sys.argv[1:4]
    import pyarrow.parquet as pq
    import s3fs

    from sutro_core import iter_results, storage
    from sutro_core.models import Job
    from sutro_core.results.targets import finalize, prepare_target

    fs = s3fs.S3FileSystem()
    path = uri.removeprefix("s3://")
    fs.ls(path.split("/", 1)[0])  # connect (session, credentials) before the clock starts
    repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times, rows = [], None
    for _ in range(repeats):  # a few in one process: one 0.1 s transfer varies a lot on a shared box
        target = None
        if mode == "ours-write":
            target = prepare_target(uri, "parquet")
            shutil.copyfile(local, target.tmp_path)  # the step's finished temp file (not timed)
        start = time.perf_counter()
        if mode == "ours-write":
            rows = finalize(target, Job(job_id="job-bench", model="echo"), "parquet").rows
        elif mode == "ours-upload":
            storage.upload_file(local, fs, path)
        elif mode == "s3fs-put":
            fs.put_file(local, path)
        elif mode == "ours-download":
            storage.download_file(fs, path, local)
        elif mode == "s3fs-get":
            fs.get_file(path, local)
        elif mode == "ours-iter":
            rows = sum(batch.height for batch in iter_results(uri))
        elif mode == "s3fs-get-iter":
            fs.get_file(path, local)
            rows = sum(b.num_rows for b in pq.ParquetFile(local).iter_batches(batch_size=65_536))
            os.unlink(local)
        else:
            raise SystemExit(f"unknown mode {mode}")
        times.append(time.perf_counter() - start)
    print(json.dumps({"op_s": statistics.median(times), "rss_before_mb": rss_before, "rows": rows}))

if __name__ == "__main__":
    main()
