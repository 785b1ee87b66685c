"""Per-row seeds survive a crash: kill -9 a server mid-job on a generative model, restart it, and the
resumed job's sampled rows equal an uninterrupted job's (another server, another chunk size)."""

from __future__ import annotations

import io
import time

import pyarrow.parquet as pq
import pytest
from support.tiny_llama import cached_tiny_llama
from sutro_local.testing import LocalServer

from .helpers import api_client, submit, wait_status

ROWS = [f"review {i}: the parcel arrived" for i in range(12)]
JOB = {
    "inputs": ROWS,
    "random_seed_per_input": True,
    "sampling_params": {"temperature": 1.0, "top_p": 0.95, "max_tokens": 8, "seed": 77},
}


def outputs(api, job_id) -> list[str]:
    table = pq.read_table(io.BytesIO(api.get(f"/jobs/{job_id}/results").content))
    return table["outputs"].to_pylist()


@pytest.mark.slow  # three model loads in two server processes
def test_killed_generative_job_resumes_with_the_same_samples(tmp_path, sutro_server, sutro_key):
    with api_client(sutro_server.url, sutro_key) as api:  # uninterrupted, 4 rows a chunk
        reference_id = submit(api, model="tiny-llama", **JOB)
        assert wait_status(api, reference_id, timeout=120)["status"] == "SUCCEEDED"
        reference = outputs(api, reference_id)
    assert len(set(reference)) == len(ROWS)  # per-row seeds: every row its own sample

    config = {
        "models": {
            "slow-tiny": {
                "engine": "transformers",
                "chunk_size": 2,
                "min_seconds_per_chunk": 0.3,
                "options": {"path": str(cached_tiny_llama()), "threads": 1, "max_tokens": 8},
            }
        }
    }
    with LocalServer(tmp_path / "data", config) as srv:
        api = api_client(srv.url, srv.api_key)
        job_id = submit(api, model="slow-tiny", **JOB)
        job = wait_status(api, job_id, {"RUNNING", "SUCCEEDED"}, timeout=120)
        while job["rows_processed"] < 4:
            time.sleep(0.05)
            job = api.get(f"/jobs/{job_id}").json()["job"]
        assert job["status"] == "RUNNING", "the throttle keeps the job running long enough to crash it"
        srv.kill()
        srv.start()
        job = wait_status(api, job_id, timeout=120)
        assert job["status"] == "SUCCEEDED" and job["rows_processed"] == len(ROWS)
        assert outputs(api, job_id) == reference
