"""get_job_results decodes row groups while the body arrives (core/sutro_core/progressive_parquet.py), on a real sutro-local.

The client asks the file's tail first (Range), then the rest; a thread decodes each run of row groups as its
bytes land. These tests check the frame is the file, that the decode really ran before the last byte, that a
cut body is retried from the start with nothing left behind (thread, temp file), and that a server or proxy
that ignores Range still gives the right frame. The job (~200k rows, 4 row groups) runs on an `echo` model.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator

import polars as pl
import pyarrow.parquet as pq
import pytest
from sutro_core import BatchJobRequest, RetryPolicy, SutroClient, body_download, progressive_parquet, sdk_facade as _base
from sutro_local.testing import LocalServer

from .proxy import FaultProxy, Rule

ROWS = 200_000  # 4 row groups of the server's 65,536 rows
TAIL = 64 << 10
FAST = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.01)


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    config = {"models": {"echo-40": {"engine": "echo", "options": {"output_chars": 40}, "chunk_size": 50_000}},
              "quotas": [{"job_priority": 0, "row_quota": None}, {"job_priority": 1, "row_quota": None}]}
    with LocalServer(tmp_path_factory.mktemp("progressive") / "srv", config) as srv:
        yield srv


@pytest.fixture(scope="module")
def job(echo_server: LocalServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, pl.DataFrame, int]:
    """A finished job, its results file as pl.read_parquet reads it (the reference) and the file's size."""
    with SutroClient(api_key=echo_server.api_key, api_url=echo_server.url) as client:
        job_id = client.submit_job(BatchJobRequest.for_inference(
            pl.DataFrame({"text": [f"row {i}" for i in range(ROWS)]}), model="echo-40", column="text")).job_id
        client.await_job_completion(job_id, timeout=300, obtain_results=False)
        path = tmp_path_factory.mktemp("ref") / "r.parquet"
        client.download_results(job_id, path)
    assert pq.read_metadata(path).num_row_groups >= 3
    return job_id, pl.read_parquet(path).rename({"outputs": "inference_result"}), path.stat().st_size


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch, tmp_path) -> list[progressive_parquet.ProgressiveParquet]:
    """A 64 KiB tail and one row group a slice (so a 200k-row file has several), temp files under tmp_path;
    returns the readers the client makes."""
    monkeypatch.setattr(body_download, "TAIL_BYTES", TAIL)
    monkeypatch.setattr(progressive_parquet, "SLICE_BYTES", 1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    readers: list[progressive_parquet.ProgressiveParquet] = []
    real = _base.ProgressiveParquet

    class Recorded(real):  # type: ignore[misc, valid-type]
        decoded_early = False  # frame() joined the decoder thread instead of reading the finished file

        def frame(self) -> pl.DataFrame:
            self.decoded_early = self._thread is not None and self._complete
            return super().frame()

    def make(path: str) -> progressive_parquet.ProgressiveParquet:
        readers.append(Recorded(path))
        return readers[-1]

    monkeypatch.setattr(_base, "ProgressiveParquet", make)
    return readers


def _decoders() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sutro-parquet-decode"]


def test_the_frame_is_the_file_and_is_decoded_while_the_body_arrives(echo_server, job, small_pieces, tmp_path):
    job_id, reference, _ = job
    with FaultProxy.for_url(echo_server.url) as proxy, \
            SutroClient(api_key=echo_server.api_key, api_url=proxy.url) as client:
        df = client.get_job_results(job_id)
        results = proxy.hits("GET", r"/results")
    assert df.equals(reference)
    assert [e.upstream_status for e in results] == [206, 206]  # the tail, then the rest
    reader = small_pieces[-1]
    assert reader._slices and len(reader._slices) >= 4
    assert reader.decoded_early  # (that it decodes before the last byte: tests/core/test_progressive_parquet.py)
    assert not _decoders() and list(tmp_path.iterdir()) == []


def test_a_cut_body_is_retried_from_the_start_and_leaves_nothing(echo_server, job, small_pieces, tmp_path):
    job_id, reference, size = job
    with FaultProxy.for_url(echo_server.url) as proxy, \
            SutroClient(api_key=echo_server.api_key, api_url=proxy.url, retry=FAST) as client:
        # the first tail passes whole (it is shorter than `keep`); the rest after it is cut half way
        proxy.add(Rule("truncate", path=r"/results", times=2, keep=size // 2))
        df = client.get_job_results(job_id)
        results = proxy.hits("GET", r"/results")
    assert df.equals(reference)
    assert len(results) == 4 and results[1].fault == "truncate"  # tail, cut rest, tail, rest
    assert not _decoders() and list(tmp_path.iterdir()) == []


def test_a_body_cut_every_time_fails_typed_and_stops_the_decoder(echo_server, job, small_pieces, tmp_path):
    from sutro_core import SutroConnectionError

    job_id, _, size = job
    with FaultProxy.for_url(echo_server.url) as proxy, \
            SutroClient(api_key=echo_server.api_key, api_url=proxy.url, retry=FAST) as client:
        proxy.add(Rule("truncate", path=r"/results", times=6, keep=size // 2))  # every rest is cut
        with pytest.raises(SutroConnectionError, match="results"):
            client.get_job_results(job_id)
    assert not _decoders() and list(tmp_path.iterdir()) == []


def test_the_async_client_reads_the_finished_file(echo_server, job, small_pieces, tmp_path):
    import asyncio

    from sutro_core import AsyncSutroClient

    job_id, reference, _ = job

    async def main() -> pl.DataFrame:
        async with AsyncSutroClient(api_key=echo_server.api_key, api_url=echo_server.url) as client:
            return await client.get_job_results(job_id)

    assert asyncio.run(main()).equals(reference)
    assert not small_pieces[-1].decoded_early  # no tail was asked: the finished file was read
    assert not _decoders() and list(tmp_path.iterdir()) == []
