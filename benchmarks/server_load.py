"""Latency of sutro-local's routes under load: N submitters + M pollers (+ a running job), loopback only.

Issue 14's load: 20 submitters (10-row embedding jobs, back to back) and 200 pollers (job-status,
jobs/{id}, list-jobs of their own key; one call a second each, the client's fastest poll), plus one
long throttled job running the whole time, for 60 s. Prints p50/p99/max per route and how many requests failed or timed out (5 s client timeout).
Everything is bounded: the load stops after ``--seconds``, the server is stopped at the end.

    .venv/bin/python benchmarks/server_load.py                 # 60 s, 20 submitters, 200 pollers
    .venv/bin/python benchmarks/server_load.py --seconds 20 --pollers 50
    .venv/bin/python benchmarks/server_load.py --url http://127.0.0.1:8484 --key sk-local-...   # an existing server
    PYTHONPATH=/tmp/base .venv/bin/python benchmarks/server_load.py   # A/B: everything from another checkout
                                      # (/tmp/base/sutro_core: e.g. `git archive HEAD core`, renamed)

The load runs in ``--procs`` client processes (asyncio, one httpx client each), so the client's own
GIL does not become the measured bottleneck on a small box.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

EMBED = "all-minilm-l6-v2"
CONFIG = {
    "models": {
        EMBED: {"engine": "embedding"},
        "slow-embed": {"engine": "embedding", "chunk_size": 1, "min_seconds_per_chunk": 0.5},
    },
    "quotas": [{"job_priority": 0, "row_quota": 100_000_000}, {"job_priority": 1, "row_quota": 100_000_000}],
}
CLIENT_TIMEOUT_S = 5.0


def _route(path: str) -> str:
    for prefix in ("/job-status/", "/jobs/"):
        if path.startswith(prefix):
            return prefix + "{id}"
    return path


async def _load(url: str, keys: list[str], submitters: int, pollers: int, seconds: float, poll_s: float) -> dict:
    import httpx

    lat: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    job_ids: dict[str, list[str]] = {k: [] for k in keys}
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=submitters + pollers + 4, max_keepalive_connections=submitters + pollers + 4)
    async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT_S, limits=limits) as http:

        async def call(method: str, path: str, key: str | None, **kw) -> httpx.Response | None:
            t0 = time.monotonic()
            try:
                r = await http.request(method, path, headers={"Authorization": f"Key {key}"} if key else {}, **kw)
            except httpx.HTTPError:
                errors[_route(path)] += 1
                return None
            lat[_route(path)].append(time.monotonic() - t0)
            if r.status_code >= 400:
                errors[_route(path)] += 1
            return r

        async def submitter(i: int) -> None:
            key = keys[i % len(keys)]
            n = 0
            while time.monotonic() < stop_at:
                r = await call("POST", "/batch-inference", key,
                               json={"model": EMBED, "inputs": [f"submitter {i} job {n} row {j}" for j in range(10)]})
                n += 1
                if r is not None and r.status_code == 200:
                    job_ids[key].append(r.json()["results"])

        async def poller(i: int) -> None:
            key = keys[i % len(keys)]
            n = 0
            while time.monotonic() < stop_at:
                ids = job_ids[key]
                if not ids:
                    await call("GET", "/health", None)
                else:
                    job = ids[(i + n) % len(ids)]
                    path = ("/job-status/" + job, "/jobs/" + job, "/job-status/" + job, "/list-jobs")[n % 4]
                    await call("GET", path, key)
                n += 1
                await asyncio.sleep(poll_s)

        async def health() -> None:
            while time.monotonic() < stop_at:
                await call("GET", "/health", None)
                await asyncio.sleep(0.1)

        await asyncio.gather(*[submitter(i) for i in range(submitters)], *[poller(i) for i in range(pollers)], health())
    return {"lat": dict(lat), "errors": dict(errors)}


def _proc(args: tuple) -> dict:
    return asyncio.run(_load(*args))


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--submitters", type=int, default=20)
    p.add_argument("--pollers", type=int, default=200)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--poll-interval", type=float, default=1.0, help="seconds between a poller's calls (the client's first poll interval)")
    p.add_argument("--no-worker", action="store_true", help="serve the API only (jobs stay QUEUED): isolates the API")
    p.add_argument("--url", help="an existing server (else one is started on a free loopback port)")
    p.add_argument("--key", help="its API key (with --url)")
    args = p.parse_args(argv)
    if args.seconds > 600:
        p.error("--seconds is capped at 600")

    from sutro_local.testing import LocalServer

    server = None
    if args.url:
        if not args.key or not args.url.startswith(("http://127.", "http://localhost")):
            p.error("--url must be a loopback URL and needs --key")
        url, keys = args.url, [args.key]
    else:
        cfg = {**CONFIG, "worker": {"enabled": not args.no_worker}}
        scratch = Path(tempfile.mkdtemp(prefix="sutro-load-"))
        server = LocalServer(scratch / "srv", cfg).start()
        url, keys = server.url, [server.create_key(f"load-{i}") for i in range(4)]
    try:
        import httpx

        # the running job: a long throttled job for the whole run (a model running in the API process)
        httpx.post(f"{url}/batch-inference", headers={"Authorization": f"Key {keys[0]}"}, timeout=30,
                   json={"model": "slow-embed" if server else EMBED, "inputs": [f"r{i}" for i in range(10_000)],
                         "job_priority": 1})  # fmt: skip
        time.sleep(1)
        per = [(url, keys, max(1, args.submitters // args.procs), max(1, args.pollers // args.procs), args.seconds,
            args.poll_interval) for _ in range(args.procs)]
        with mp.get_context("spawn").Pool(args.procs) as pool:
            parts = pool.map(_proc, per)
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(scratch, ignore_errors=True)
    lat: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    for part in parts:
        for k, v in part["lat"].items():
            lat[k].extend(v)
        for k, v in part["errors"].items():
            errors[k] += v
    print(f"server_load: {args.seconds:.0f} s, {args.submitters} submitters, {args.pollers} pollers, "
          f"(one call each per {args.poll_interval:g} s), {args.procs} client processes, client timeout {CLIENT_TIMEOUT_S:.0f} s"
          + (", worker off" if args.no_worker else ""))
    print(f"{'route':24} {'n':>7} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'errors':>7}")
    rows = {}
    for route in sorted(lat):
        v = lat[route]
        rows[route] = {"n": len(v), "p50_ms": round(_pct(v, 0.5), 1), "p99_ms": round(_pct(v, 0.99), 1),
                       "max_ms": round(max(v) * 1000, 1), "errors": errors.get(route, 0)}
        r = rows[route]
        print(f"{route:24} {r['n']:>7} {r['p50_ms']:>9} {r['p99_ms']:>9} {r['max_ms']:>9} {r['errors']:>7}")
    print(json.dumps({"server_load": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
