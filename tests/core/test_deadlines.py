"""Every wait and every download honours its deadline, whatever the server does (issue 12, item 2).

A hung route, a trickling body and an endless body cannot be produced by sutro-local, so a tiny stall
server plays them (tests/support/stall_server.py). Bound: the deadline + 10% + 2 s.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from support.stall_server import StallServer
from sutro_core import AsyncSutroClient, JobTimeoutError, ResultsFormatError, SutroClient

TIMEOUT = 3.0
BOUND = TIMEOUT * 1.1 + 2.0


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.part"))


@pytest.mark.parametrize("behaviour", ["hang", "trickle"])
def test_sync_wait_meets_its_deadline(behaviour):
    with StallServer(status=behaviour) as srv, SutroClient(api_key="k", api_url=srv.url) as client:
        began = time.monotonic()
        with pytest.raises(JobTimeoutError):
            client.await_job_completion("job-1", timeout=TIMEOUT, obtain_results=False)
        assert time.monotonic() - began < BOUND


@pytest.mark.parametrize("behaviour", ["hang", "trickle"])
async def test_async_wait_meets_its_deadline(behaviour):
    with StallServer(status=behaviour) as srv:
        async with AsyncSutroClient(api_key="k", api_url=srv.url) as client:
            began = time.monotonic()
            with pytest.raises(JobTimeoutError):
                await client.await_job_completion("job-1", timeout=TIMEOUT, obtain_results=False)
            assert time.monotonic() - began < BOUND


def test_wait_with_the_default_client_timeout_still_meets_a_short_deadline():
    # The client's own per-request timeout (60 s) must not stretch a 3 s wait.
    with StallServer(status="hang") as srv, SutroClient(api_key="k", api_url=srv.url, timeout=60) as client:
        began = time.monotonic()
        with pytest.raises(JobTimeoutError):
            client.await_job_completion("job-1", timeout=TIMEOUT, obtain_results=False)
        assert time.monotonic() - began < BOUND


@pytest.mark.parametrize("behaviour", ["hang", "trickle", "endless"])
def test_sync_download_meets_its_deadline_and_leaves_no_temp_file(behaviour, tmp_path):
    dest = tmp_path / "out.parquet"
    with StallServer(results=behaviour, job_status="SUCCEEDED") as srv, \
            SutroClient(api_key="k", api_url=srv.url) as client:
        began = time.monotonic()
        with pytest.raises(JobTimeoutError, match="downloading the results"):
            client.download_results("job-1", dest, timeout=TIMEOUT)
        assert time.monotonic() - began < BOUND
    assert not dest.exists() and _parts(tmp_path) == []


@pytest.mark.parametrize("behaviour", ["hang", "trickle", "endless"])
async def test_async_download_meets_its_deadline_and_leaves_no_temp_file(behaviour, tmp_path):
    dest = tmp_path / "out.parquet"
    with StallServer(results=behaviour, job_status="SUCCEEDED") as srv:
        async with AsyncSutroClient(api_key="k", api_url=srv.url) as client:
            began = time.monotonic()
            with pytest.raises(JobTimeoutError, match="downloading the results"):
                await client.download_results("job-1", dest, timeout=TIMEOUT)
            assert time.monotonic() - began < BOUND
    assert not dest.exists() and _parts(tmp_path) == []


async def test_a_cancelled_download_removes_its_temp_file_at_once(tmp_path):
    """The driver closes the operation when the task is cancelled: clean-up runs now, not at GC."""
    dest = tmp_path / "out.parquet"
    with StallServer(results="endless", job_status="SUCCEEDED") as srv:
        async with AsyncSutroClient(api_key="k", api_url=srv.url) as client:
            task = asyncio.create_task(client.download_results("job-1", dest, timeout=60))
            for _ in range(100):
                await asyncio.sleep(0.05)
                if _parts(tmp_path):
                    break
            assert _parts(tmp_path), "the download never started writing"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert _parts(tmp_path) == []


def test_a_killed_clients_temp_file_is_cleaned_by_the_next_download(tmp_path, sutro_client):
    dest = tmp_path / "out.parquet"
    stale = tmp_path / ".out.parquet.999999999-0123abcd.part"  # a pid that cannot be alive
    stale.write_bytes(b"half a file")
    job_id = sutro_client.infer(["a"], model="all-minilm-l6-v2", stay_attached=False)
    sutro_client.await_job_completion(job_id, timeout=120, obtain_results=False)
    sutro_client.download_results(job_id, dest)
    assert dest.exists() and not stale.exists()


@pytest.mark.parametrize("fmt,body", [
    ("csv", b"<!doctype html><html><body>Sign in</body></html>"),
    ("csv", b"PAR1" + b"\x00" * 64 + b"PAR1"),
    ("csv", b"PK\x03\x04" + b"\x00" * 20),          # a cut-off zip
    ("parquet", b"<html>error</html>"),
    ("parquet", b"PAR1" + b"\x00" * 32),            # truncated: no footer
    ("json", b'{"outputs": ["a", '),
])
def test_a_body_of_the_wrong_format_is_refused_and_the_old_file_kept(fmt, body, tmp_path):
    dest = tmp_path / f"out.{fmt}"
    dest.write_bytes(b"the good file from yesterday")
    with StallServer(results=body, job_status="SUCCEEDED") as srv, SutroClient(api_key="k", api_url=srv.url) as client:
        with pytest.raises(ResultsFormatError):
            client.download_results("job-1", dest, format=fmt, timeout=TIMEOUT)
    assert dest.read_bytes() == b"the good file from yesterday"
    assert _parts(tmp_path) == []
