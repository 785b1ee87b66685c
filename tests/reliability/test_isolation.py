"""Isolation between API keys, through the real client: another key can never read, cancel, list,
download, reattach to or overwrite a key's jobs, results or Functions; result files are reachable
only with the key or a valid, unexpired, untampered signed URL; ids and file names cannot traverse
paths.
"""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from sutro_core import (
    AuthenticationError,
    BatchJobRequest,
    JobStatus,
    NotFoundError,
    SutroClient,
    idempotency_key,
)

from .conftest import FAST_POLL, FAST_RETRY

EMBED = "all-minilm-l6-v2"
SENTIMENT = {
    "name": "sentiment", "type": "classification", "inputs": ["text"],
    "labels": [{"name": "positive", "description": "happy, pleased, great"},
               {"name": "negative", "description": "angry, disappointed, terrible"}],
}


@pytest.fixture
def other(sutro_server):
    """A client for a second, unrelated key."""
    with SutroClient(api_key=sutro_server.create_key("intruder"), api_url=sutro_server.url, retry=FAST_RETRY,
                     poll=FAST_POLL) as c:
        yield c


def test_another_key_cannot_touch_jobs_or_results(sutro_client, other, tmp_path, tally):
    req = BatchJobRequest.for_inference(["secret one", "secret two"], model=EMBED)
    key = idempotency_key("isolation", "step", fingerprint=req.fingerprint)
    done = sutro_client.submit_job(req, idempotency_key=key).job_id
    sutro_client.await_job_completion(done, timeout=120, obtain_results=False)
    running = sutro_client.submit_job(BatchJobRequest.for_inference([f"r{i}" for i in range(40)], model="slow-embed")).job_id

    assert other.list_jobs() == []
    attempts = [
        lambda j: other.get_job(j), lambda j: other.get_job_status(j), lambda j: other.cancel_job(j),
        lambda j: other.get_job_results(j), lambda j: other.download_results(j, tmp_path / "stolen.parquet"),
        lambda j: other.attach(j, show_progress=False),
    ]
    for job_id in (done, running):
        for attempt in attempts:
            with pytest.raises(NotFoundError):
                attempt(job_id)
            tally["isolation attempts refused"] += 1
    assert not (tmp_path / "stolen.parquet").exists() and list(tmp_path.iterdir()) == []
    # the other key's cancel did nothing: the job is still going
    assert sutro_client.get_job_status(running) in (JobStatus.QUEUED, JobStatus.STARTING, JobStatus.RUNNING)
    # the same idempotency key under another API key never reattaches to this key's job
    assert other.find_job(key) is None
    theirs = other.submit_job(req, idempotency_key=key)
    assert not theirs.reattached and theirs.job_id != done
    assert [j.job_id for j in sutro_client.list_jobs() if j.job_id == done] == [done]
    sutro_client.cancel_job(running)
    other.cancel_job(theirs.job_id)


def test_another_key_cannot_use_or_overwrite_a_function(sutro_server, sutro_key, sutro_client, other, tally):
    http = httpx.Client(base_url=sutro_server.url, headers={"Authorization": f"Key {sutro_key}"}, timeout=60)
    assert http.post("/functions", json=SENTIMENT).status_code == 200
    assert sutro_client.run_function("sentiment", {"text": "I love it"}).response == "positive"
    with pytest.raises(NotFoundError):
        other.run_function("sentiment", {"text": "I love it"})
    with pytest.raises(Exception) as err:
        other.batch_run_function("sentiment", [{"text": "x"}])
    assert getattr(err.value, "status_code", None) == 400 and "sentiment" in str(err.value)
    # the other key publishing the same name gets its own Function; the first key's is unchanged
    flipped = {**SENTIMENT, "labels": [{"name": "spam", "description": "happy, pleased, great"},
                                       {"name": "ham", "description": "angry, disappointed, terrible"}]}
    other_http = httpx.Client(base_url=sutro_server.url, headers={"Authorization": f"Key {other.api_key}"}, timeout=60)
    assert other_http.post("/functions", json=flipped).status_code == 200
    assert other.run_function("sentiment", {"text": "I love it"}).response in ("spam", "ham")  # its own labels
    assert sutro_client.run_function("sentiment", {"text": "I love it"}).response == "positive"
    names = {f["name"] for f in http.get("/functions").json()["functions"]}
    assert "sentiment" in names
    tally["isolation attempts refused"] += 3
    http.close()
    other_http.close()


def _tamper(token: str, **changes) -> str:
    payload, mac = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    new = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{new}.{mac}"


def test_result_files_need_the_key_or_a_valid_signed_url(sutro_server, sutro_key, sutro_client, other, tally):
    mine = sutro_client.submit_job(BatchJobRequest.for_inference(["mine"], model=EMBED)).job_id
    theirs = other.submit_job(BatchJobRequest.for_inference(["theirs"], model=EMBED)).job_id
    for c, j in ((sutro_client, mine), (other, theirs)):
        c.await_job_completion(j, timeout=120, obtain_results=False)
    keyed = httpx.Client(base_url=sutro_server.url, headers={"Authorization": f"Key {sutro_key}"}, timeout=60)
    anon = httpx.Client(base_url=sutro_server.url, timeout=60)

    # without a key: nothing, on every results route
    for path in (f"/jobs/{mine}/results", f"/jobs/{mine}/results-url", f"/job-status/{mine}"):
        assert anon.get(path).status_code == 401
    assert anon.post("/job-results", json={"job_id": mine}).status_code == 401

    signed = keyed.get(f"/jobs/{mine}/results-url", params={"expires_in_seconds": 2}).json()["urls"]["get"]
    token = signed.rsplit("/", 1)[1]
    good = anon.get(signed)
    assert good.status_code == 200 and good.content[:4] == b"PAR1"
    refused = {
        "another job's id": _tamper(token, j=theirs),
        "a traversing file name": _tamper(token, f="../../sutro-local.db"),
        "a longer expiry": _tamper(token, e=int(time.time()) + 10**6),
        "a bad signature": token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
        "garbage": "not-a-token",
        "a non-ASCII signature": "abc.%C2%80",  # found by the fuzz: was a 500
    }
    for why, bad in refused.items():
        r = anon.get(f"/results-files/{bad}")
        assert r.status_code in (403, 404), (why, r.status_code)
        assert b"PAR1" not in r.content, why
        tally["isolation attempts refused"] += 1
    time.sleep(2.5)
    expired = anon.get(signed)
    assert expired.status_code == 403 and "expired" in expired.json()["detail"]

    # no static route exposes the data folder
    for guess in (f"/jobs/{mine}/results.parquet", f"/data/jobs/{mine}/results.parquet",
                  f"/jobs/{mine}/../../sutro-local.db", "/sutro-local.db", f"/results-files/{mine}/results.parquet",
                  "/results-files/..%2F..%2Fsutro-local.db"):
        for client in (anon, keyed):
            r = client.get(guess)
            assert r.status_code in (401, 403, 404, 405), (guess, r.status_code)
            assert b"PAR1" not in r.content and b"SQLite" not in r.content, guess
            tally["isolation attempts refused"] += 1
    keyed.close()
    anon.close()


TRAVERSING_IDS = ["../../etc/passwd", "..", "job-../../sutro-local.db", "%2e%2e%2fsutro-local.db", "job-x/../../../",
                  "job-x\x00.parquet"]


@pytest.mark.parametrize("job_id", TRAVERSING_IDS)
def test_job_ids_cannot_traverse_paths(job_id, proxy, sutro_key, tmp_path, tally):
    with SutroClient(api_key=sutro_key, api_url=proxy.url, retry=FAST_RETRY, poll=FAST_POLL) as c:
        for call in (c.get_job, c.get_job_status, c.cancel_job, lambda j: c.download_results(j, tmp_path / "o.parquet")):
            with pytest.raises(NotFoundError):
                call(job_id)
            tally["isolation attempts refused"] += 1
    # the client sent each id as one quoted path segment
    for entry in proxy.log:
        rest = entry.target.split("?", 1)[0].split("/")
        assert ".." not in rest, entry.target
    assert list(tmp_path.iterdir()) == []


def test_a_bad_key_sees_nothing_and_is_told_so(sutro_server, sutro_client):
    job_id = sutro_client.submit_job(BatchJobRequest.for_inference(["x"], model=EMBED)).job_id
    with SutroClient(api_key="sk-not-a-key", api_url=sutro_server.url, retry=FAST_RETRY) as bad:
        for call in (bad.list_jobs, lambda: bad.get_job(job_id), lambda: bad.cancel_job(job_id)):
            with pytest.raises(AuthenticationError) as err:
                call()
            assert "invalid API key" in str(err.value)
    assert sutro_client.get_job_status(job_id) is not JobStatus.CANCELLED



def test_the_v1_mirror_keeps_keys_apart_too(sutro_server, sutro_client, other, tally):
    """sutro-local also serves the API under /v1 (for the official SDK): same isolation there."""
    job_id = sutro_client.submit_job(BatchJobRequest.for_inference(["v1 mirror"], model=EMBED)).job_id
    sutro_client.await_job_completion(job_id, timeout=120, obtain_results=False)
    intruder = httpx.Client(base_url=sutro_server.url + "/v1", headers={"Authorization": f"Key {other.api_key}"},
                            timeout=60)
    anon = httpx.Client(base_url=sutro_server.url + "/v1", timeout=60)
    assert intruder.get("/list-jobs").json()["jobs"] == []
    for method, path, body in [("GET", f"/jobs/{job_id}", None), ("GET", f"/job-status/{job_id}", None),
                               ("GET", f"/job-cancel/{job_id}", None), ("POST", "/job-results", {"job_id": job_id}),
                               ("GET", f"/jobs/{job_id}/results", None), ("GET", f"/jobs/{job_id}/results-url", None)]:
        assert intruder.request(method, path, json=body).status_code == 404, path
        assert anon.request(method, path, json=body).status_code == 401, path
        tally["isolation attempts refused"] += 2
    assert sutro_client.get_job_status(job_id) is JobStatus.SUCCEEDED
    intruder.close()
    anon.close()
