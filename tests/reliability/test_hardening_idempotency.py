"""Issue 12 item 1 (server half) and issue 14 item 4: sutro-local's submit is one transaction.

- N submits racing with the same idempotency key (threads released by a barrier, real HTTP)
  create exactly one job, and every answer names it (the later ones with ``reattached: true``).
- ``dedupe_idempotency_keys: false`` behaves like hosted Sutro (no server-side dedupe), while
  ``list-jobs?idempotency_key=`` still filters.
- 20 concurrent 60-row submits under ``row_quota: 100`` accept exactly one.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from sutro_core.idempotency import marker
from sutro_local.testing import LocalServer

EMBED = "all-minilm-l6-v2"
RACERS = 8
REPS = 20


def _race(url: str, key: str, bodies: list[dict]) -> list[httpx.Response]:
    """POST every body at the same moment (one thread each, released together)."""
    barrier = threading.Barrier(len(bodies))

    def one(body: dict) -> httpx.Response:
        with httpx.Client(base_url=url, headers={"Authorization": f"Key {key}"}, timeout=60) as http:
            barrier.wait(30)
            return http.post("/batch-inference", json=body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


@pytest.fixture(scope="module")
def parked_server(tmp_path_factory):
    """A server whose worker is off (jobs stay QUEUED, i.e. live) with dedupe on (the default)."""
    with LocalServer(tmp_path_factory.mktemp("idem") / "srv",
                     {"models": {EMBED: {"engine": "embedding"}}, "worker": {"enabled": False}}) as srv:
        yield srv


@pytest.mark.parametrize("rep", range(REPS))
def test_same_key_race_creates_exactly_one_job(parked_server, rep, tally):
    key = parked_server.create_key(f"race-{rep}")
    idem = f"racekey{rep:02d}abcdef"
    body = {"model": EMBED, "inputs": ["one row", "two rows"], "description": f"nightly {marker(idem)}"}
    answers = _race(parked_server.url, key, [body] * RACERS)
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    ids = {r.json()["results"] for r in answers}
    assert len(ids) == 1, f"{len(ids)} jobs for one key: {ids}"
    assert sorted(r.json()["reattached"] for r in answers) == [False] + [True] * (RACERS - 1)
    with httpx.Client(base_url=parked_server.url, headers={"Authorization": f"Key {key}"}) as http:
        jobs = http.get("/list-jobs").json()["jobs"]
        assert [j["job_id"] for j in jobs] == list(ids)
        assert [j["job_id"] for j in http.get("/list-jobs", params={"idempotency_key": idem}).json()["jobs"]] == list(ids)
    tally["same-key submit races"] += 1
    tally["duplicates found"] += len(jobs) - 1


def test_a_cancelled_job_frees_its_key_and_dry_runs_are_never_deduped(parked_server):
    key = parked_server.create_key("idem-lifecycle")
    body = {"model": EMBED, "inputs": ["a"], "description": marker("lifecycle-key-1")}
    with httpx.Client(base_url=parked_server.url, headers={"Authorization": f"Key {key}"}) as http:
        first = http.post("/batch-inference", json=body).json()
        assert first == {"results": first["results"], "reattached": False}
        assert http.post("/batch-inference", json=body).json() == {"results": first["results"], "reattached": True}
        assert http.get(f"/job-cancel/{first['results']}").json()["status"] == "CANCELLED"
        second = http.post("/batch-inference", json=body).json()
        assert second["reattached"] is False and second["results"] != first["results"]
        dry = [http.post("/batch-inference", json={**body, "cost_estimate": True}).json() for _ in range(2)]
        assert len({d["results"] for d in dry} | {second["results"]}) == 3
        # another API key with the same idempotency key gets its own job
        other = parked_server.create_key("idem-other")
        theirs = http.post("/batch-inference", json=body, headers={"Authorization": f"Key {other}"}).json()
        assert theirs["reattached"] is False and theirs["results"] != second["results"]
        listed = http.get("/list-jobs", params={"idempotency_key": "lifecycle-key-1"}).json()["jobs"]
        assert {j["job_id"] for j in listed} == {first["results"], second["results"]} | {d["results"] for d in dry}
        assert http.get("/list-jobs", params={"idempotency_key": "no"}).status_code == 400


def test_without_dedupe_the_server_behaves_like_hosted_sutro(tmp_path):
    cfg = {"models": {EMBED: {"engine": "embedding"}}, "worker": {"enabled": False}, "dedupe_idempotency_keys": False}
    with LocalServer(tmp_path / "srv", cfg) as srv:
        body = {"model": EMBED, "inputs": ["a"], "description": marker("hostedlike-key")}
        answers = _race(srv.url, srv.api_key, [body] * 4)
        assert all(r.status_code == 200 and r.json()["reattached"] is False for r in answers)
        ids = {r.json()["results"] for r in answers}
        assert len(ids) == 4
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Key {srv.api_key}"}) as http:
            listed = http.get("/list-jobs", params={"idempotency_key": "hostedlike-key"}).json()["jobs"]
            assert {j["job_id"] for j in listed} == ids
        # switching dedupe back on over a database that holds duplicates still starts, and dedupes
        srv.stop()
        srv.config = {**cfg, "dedupe_idempotency_keys": True}
        srv.start()
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Key {srv.api_key}"}) as http:
            again = http.post("/batch-inference", json=body).json()
            assert again["reattached"] is True and again["results"] in ids


def test_concurrent_submits_cannot_overshoot_the_row_quota(tmp_path, tally):
    cfg = {"models": {EMBED: {"engine": "embedding"}}, "worker": {"enabled": False},
           "quotas": [{"job_priority": 0, "row_quota": 100, "token_quota": None}]}
    with LocalServer(tmp_path / "srv", cfg) as srv:
        answers = _race(srv.url, srv.api_key, [{"model": EMBED, "inputs": [f"row {i}" for i in range(60)]}] * 20)
        codes = sorted(r.status_code for r in answers)
        assert codes == [200] + [429] * 19, codes
        refused = next(r for r in answers if r.status_code == 429)
        assert refused.json()["code"] == "quota_exceeded" and refused.headers["retry-after"]
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Key {srv.api_key}"}) as http:
            assert sum(j["num_rows"] for j in http.get("/list-jobs").json()["jobs"]) == 60
        # refused submits leave no inputs behind
        assert len(list((srv.data_dir / "jobs").iterdir())) == 1
        tally["quota races"] += 1
