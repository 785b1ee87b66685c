"""Two tries of one step submitting at the same moment never leave two live (billed) jobs (issue 12, item 1).

Two processes behind a ``multiprocessing.Barrier`` (and two asyncio tasks) call ``submit_job`` with the same
request and idempotency key, 20 times each, against:
- the session's sutro-local, which makes a key unique per API key atomically (the second submit answers
  with the first job);
- a sutro-local with ``dedupe_idempotency_keys: false``, which behaves like hosted Sutro: the client closes
  the race itself (keeps the earliest job, cancels the later one).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import uuid

import pytest

from sutro_core import AsyncSutroClient, BatchJobRequest, JobStatus, SutroClient
from sutro_core.idempotency import key_in_description

REPS = 20
ROWS = ["one", "two"]
DEAD = (JobStatus.CANCELLED, JobStatus.CANCELLING, JobStatus.FAILED)


def _racer(url: str, key: str, keys: list[str], barrier, results) -> None:
    req = BatchJobRequest.for_inference(ROWS, "slow-embed")
    with SutroClient(api_key=key, api_url=url) as client:
        for idem in keys:
            barrier.wait(timeout=60)
            sub = client.submit_job(req, idempotency_key=idem)
            results.put((idem, sub.job_id))


@pytest.fixture(scope="module")
def hosted_like_server(tmp_path_factory):
    from sutro_local.testing import LocalServer

    root = tmp_path_factory.mktemp("no-dedupe")
    # The session server's slow-embed model (jobs stay live long enough to race), without server-side dedupe.
    slow = {"engine": "embedding", "chunk_size": 1, "min_seconds_per_chunk": 0.3,
            "price": {"input_per_1m": 0.02, "output_per_1m": 0.0}}
    config = {"models": {"slow-embed": slow}, "dedupe_idempotency_keys": False}
    with LocalServer(root / "data", config) as server:
        yield server


def _server(request, name: str):
    return request.getfixturevalue("sutro_server" if name == "dedupe" else "hosted_like_server")


def _live_by_key(client: SutroClient, keys: list[str]) -> dict[str, list[str]]:
    live: dict[str, list[str]] = {k: [] for k in keys}
    for job in client.list_jobs():
        k = key_in_description(job.description)
        if k in live and job.status not in DEAD:
            live[k].append(job.job_id)
    return live


def _created_by_key(client: SutroClient, keys: list[str]) -> int:
    """Races in which both tries really created a job (the race was exercised, then closed)."""
    made: dict[str, int] = {k: 0 for k in keys}
    for job in client.list_jobs():
        k = key_in_description(job.description)
        if k in made:
            made[k] += 1
    return sum(1 for n in made.values() if n > 1)


def _check_race_was_run(server_kind: str, client: SutroClient, keys: list[str]) -> None:
    raced = _created_by_key(client, keys)
    print(f"{server_kind}: {raced} of {len(keys)} races created two jobs before the client closed them")
    if server_kind == "hosted-like":
        assert raced > 0, "no race created two jobs: the test did not exercise the client's race closing"
    else:
        assert raced == 0, "sutro-local created a second job for a live key"


@pytest.mark.parametrize("server_kind", ["dedupe", "hosted-like"])
def test_two_processes_racing_one_key_leave_one_live_job(server_kind, request):
    server = _server(request, server_kind)
    api_key = server.create_key(f"race-{server_kind}")
    keys = [uuid.uuid4().hex for _ in range(REPS)]
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(server.url, api_key, keys, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    answers: dict[str, set[str]] = {k: set() for k in keys}
    try:
        for _ in range(2 * REPS):
            idem, job_id = results.get(timeout=120)
            answers[idem].add(job_id)
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    with SutroClient(api_key=api_key, api_url=server.url) as client:
        live = _live_by_key(client, keys)
        _check_race_was_run(server_kind, client, keys)
        for job_ids in live.values():  # stop the work, the test is over
            for job_id in job_ids:
                client.cancel(job_id, reason="test over")
    duplicates = sum(1 for ids in live.values() if len(ids) > 1)
    split = sum(1 for ids in answers.values() if len(ids) > 1)
    assert duplicates == 0, f"{duplicates} of {REPS} races left two live jobs: {live}"
    assert split == 0, f"{split} of {REPS} races returned different jobs to the two tries"
    assert all(len(ids) == 1 for ids in live.values())


@pytest.mark.parametrize("server_kind", ["dedupe", "hosted-like"])
async def test_two_tasks_racing_one_key_leave_one_live_job(server_kind, request):
    server = _server(request, server_kind)
    api_key = server.create_key(f"race-async-{server_kind}")
    req = BatchJobRequest.for_inference(ROWS, "slow-embed")
    keys = [uuid.uuid4().hex for _ in range(REPS)]
    async with AsyncSutroClient(api_key=api_key, api_url=server.url) as a, \
            AsyncSutroClient(api_key=api_key, api_url=server.url) as b:
        answers = [await asyncio.gather(a.submit_job(req, idempotency_key=k), b.submit_job(req, idempotency_key=k))
                   for k in keys]
    with SutroClient(api_key=api_key, api_url=server.url) as client:
        live = _live_by_key(client, keys)
        _check_race_was_run(server_kind, client, keys)
        for job_ids in live.values():
            for job_id in job_ids:
                client.cancel(job_id, reason="test over")
    assert sum(1 for ids in live.values() if len(ids) != 1) == 0, live
    assert all(x.job_id == y.job_id for x, y in answers)
