"""kill -9 sutro-local mid-job, twice, while clients wait and download: every job reaches its
terminal state, results are complete and in input order, and no partial parquet file is ever
visible (server job folders and client download folder are watched throughout).
"""

from __future__ import annotations

import threading
import time

import polars as pl
import pyarrow.parquet as pq
import pytest

from sutro_core import (
    BatchJobRequest,
    JobStatus,
    PollPolicy,
    RetryPolicy,
    SutroClient,
    SutroError,
    idempotency_key,
)
from sutro_local.testing import LocalServer

from .watch import ParquetWatcher

CONFIG = {
    "models": {"slow-embed": {"engine": "embedding", "chunk_size": 2, "min_seconds_per_chunk": 0.15}},
}
# Survive a server that is down for many seconds: reads retry, polls tolerate downtime.
PATIENT_RETRY = RetryPolicy(max_retries=3, base_delay=0.1, max_delay=0.5)
PATIENT_POLL = PollPolicy(initial_interval=0.1, max_interval=0.5, max_transient_errors=400)


def _rows(prefix: str, n: int) -> list[str]:
    return [f"{prefix} sentence {i}" for i in range(n)]


def _wait_rows(client: SutroClient, job_id: str, at_least: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while (client.get_job(job_id).rows_processed or 0) < at_least:
        assert time.monotonic() < deadline, f"job {job_id} made no progress"
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_twice_mid_jobs_loses_nothing_and_never_shows_a_partial_file(tmp_path, tally):
    out_dir = tmp_path / "downloads"
    out_dir.mkdir()
    with LocalServer(tmp_path / "data", CONFIG) as srv, ParquetWatcher([srv.data_dir / "jobs", out_dir]) as watcher:
        client = SutroClient(api_key=srv.api_key, api_url=srv.url, retry=PATIENT_RETRY, poll=PATIENT_POLL)
        done_rows = _rows("done", 4)
        done = client.submit_job(BatchJobRequest.for_inference(done_rows, model="slow-embed")).job_id
        client.await_job_completion(done, timeout=120, obtain_results=False)

        big_rows, queued_rows = _rows("big", 24), _rows("queued", 6)
        big_req = BatchJobRequest.for_inference(big_rows, model="slow-embed")
        key = idempotency_key("crash", "big", fingerprint=big_req.fingerprint)
        big = client.submit_job(big_req, idempotency_key=key).job_id
        queued = client.submit_job(BatchJobRequest.for_inference(queued_rows, model="slow-embed", job_priority=1)).job_id
        doomed = client.submit_job(BatchJobRequest.for_inference(_rows("doomed", 30), model="slow-embed")).job_id

        # A waiter that must ride out both crashes, and a downloader that keeps fetching results.
        waited: dict[str, object] = {}

        def wait_big() -> None:
            try:
                waited["job"] = client.await_job_completion(big, timeout=180, obtain_results=False)
            except BaseException as exc:  # reported by the assertion below
                waited["error"] = exc

        downloads = {"ok": 0, "failed": 0}
        stop = threading.Event()

        def download_loop() -> None:
            with SutroClient(api_key=srv.api_key, api_url=srv.url, retry=PATIENT_RETRY) as c:
                while not stop.is_set():
                    try:
                        c.download_results(done, out_dir / "done.parquet", include_inputs=True)
                        downloads["ok"] += 1
                    except SutroError:
                        downloads["failed"] += 1  # the server is down: fine, as long as no torn file shows
                    time.sleep(0.02)

        threads = [threading.Thread(target=wait_big), threading.Thread(target=download_loop)]
        for t in threads:
            t.start()

        _wait_rows(client, big, 4)
        client.cancel_job(doomed)  # CANCELLING or CANCELLED when the crash comes
        srv.kill()
        assert srv.proc.returncode == -9
        time.sleep(0.3)
        srv.start()
        _wait_rows(client, big, 12)
        srv.kill()
        srv.start()
        tally["crashes survived"] += 2

        threads[0].join(180)
        stop.set()
        threads[1].join(30)

        # every job reached its terminal state, with the right outcome
        assert "error" not in waited, f"the waiter did not survive the crashes: {waited.get('error')!r}"
        assert waited["job"].status is JobStatus.SUCCEEDED
        for job_id, rows in [(done, done_rows), (big, big_rows), (queued, queued_rows)]:
            df = client.await_job_completion(job_id, timeout=120, include_inputs=True)
            assert df["inputs"].to_list() == rows, "results complete and in input order"
            assert all(len(v) == 384 for v in df["inference_result"].to_list())
        assert client.get_job(doomed).status is JobStatus.CANCELLED
        # nothing was duplicated: exactly the four submitted jobs, one per idempotency key
        jobs = client.list_jobs()
        assert sorted(j.job_id for j in jobs) == sorted([done, big, queued, doomed])
        assert client.find_job(key).job_id == big
        tally["duplicates found"] += len(jobs) - 4
        client.close()

    assert watcher.torn == [], watcher.torn
    assert watcher.checks > 0 and any(p.endswith("results.parquet") for p in watcher.files_seen)
    assert downloads["ok"] > 0
    final = pl.read_parquet(out_dir / "done.parquet")
    assert final["inputs"].to_list() == done_rows
    assert pq.read_metadata(out_dir / "done.parquet").metadata[b"sutro.job_id"].decode() == done
    assert sorted(p.name for p in out_dir.iterdir()) == ["done.parquet"], "no .part files left behind"


@pytest.mark.slow
def test_a_dagster_step_waiting_through_a_server_crash_succeeds_with_one_job(tmp_path, tally):
    from dagster import asset, materialize
    from dagster_polars import PolarsParquetIOManager

    from dagster_sutro import SutroResource, build_sutro_inference_asset

    rows = _rows("dagster crash", 20)

    @asset
    def crash_rows() -> pl.DataFrame:
        return pl.DataFrame({"text": rows})

    embedded = build_sutro_inference_asset(name="crash_rows_embedded", upstream=crash_rows, model="slow-embed",
                                           column="text")
    with LocalServer(tmp_path / "data", CONFIG) as srv:
        client = SutroClient(api_key=srv.api_key, api_url=srv.url, retry=PATIENT_RETRY)

        def crash_mid_job() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                jobs = client.list_jobs()
                if jobs and (jobs[0].rows_processed or 0) >= 4:
                    srv.kill()
                    time.sleep(1.0)  # the step sees connection refused for a while
                    srv.start()
                    return
                time.sleep(0.05)

        crasher = threading.Thread(target=crash_mid_job)
        crasher.start()
        # The resource's default retry policy plus a generous transient-error budget ride out the restart.
        sutro = SutroResource(api_key=srv.api_key, api_url=srv.url, poll_interval_seconds=0.2,
                              max_poll_interval_seconds=0.5)
        result = materialize([crash_rows, embedded], resources={
            "sutro": sutro, "io_manager": PolarsParquetIOManager(base_dir=str(tmp_path / "storage"))})
        crasher.join(120)
        assert srv.proc.returncode is None  # restarted
        assert result.success
        [mat] = result.asset_materializations_for_node("crash_rows_embedded")
        stored = pl.read_parquet(mat.metadata["path"].value)
        assert stored["text"].to_list() == rows and stored.height == 20
        jobs = client.list_jobs()
        assert len(jobs) == 1 and jobs[0].status is JobStatus.SUCCEEDED
        tally["crashes survived"] += 1
        tally["duplicates found"] += len(jobs) - 1
        client.close()
