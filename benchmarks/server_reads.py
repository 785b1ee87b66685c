"""sutro-local status and job reads vs a bare FastAPI endpoint on the same uvicorn settings.

One run prints, per round, a table of interleaved contenders: a bare FastAPI `async def` route
returning the same JSON (`_bare_server.py`, its own process) and sutro-local's `job-status/{id}`,
`jobs/{id}` and `list-jobs` (a key with a handful of jobs; then keys with 1,000 and 5,000 jobs),
while one throttled job runs in the sutro-local worker the whole time. For each: requests/s and
p50/p99 latency at `--pollers` concurrent keep-alive pollers (closed loop: each sends its next
request when the answer arrives), server CPU ms per request (the server process's utime+stime
from /proc, before/after the window, all threads), the response size, and the ratio to bare.

The load client is raw asyncio (uvloop) HTTP/1.1 over keep-alive sockets, ~20 µs of client CPU a
request, so on a small box the client is not what is measured (httpx costs ~1.4 ms a request).

    .venv/bin/python benchmarks/server_reads.py                       # 3 rounds, 5 s windows, 50 pollers
    .venv/bin/python benchmarks/server_reads.py --rounds 1 --seconds 2 --big 0   # quick look
    PYTHONPATH=/tmp/base .venv/bin/python benchmarks/server_reads.py  # A/B against another checkout
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONFIG = {
    "models": {
        "echo": {"engine": "echo", "options": {"output_chars": 100}},
        # the job running during the whole benchmark: one row a chunk, at least 0.5 s a chunk
        "slow-echo": {"engine": "echo", "chunk_size": 1, "min_seconds_per_chunk": 0.5},
    },
    "quotas": [{"job_priority": 0, "row_quota": 100_000_000}, {"job_priority": 1, "row_quota": 100_000_000}],
}


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a whole process (all threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loadavg() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class Window:
    """What one contender did in its measured window."""

    n: int = 0
    errors: int = 0
    lat: list[float] = field(default_factory=list)
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    body_bytes: int = 0

    @property
    def rps(self) -> float:
        return self.n / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        return self.server_cpu_s * 1000 / self.n if self.n else float("nan")

    def pct(self, q: float) -> float:
        v = sorted(self.lat)
        return v[min(len(v) - 1, int(q * len(v)))] * 1000 if v else float("nan")


class _Poller(asyncio.Protocol):
    """One keep-alive connection sending the same GET again as soon as each answer is complete."""

    def __init__(self, request: bytes, state: _Run) -> None:
        self.request = request
        self.state = state
        self.buf = bytearray()
        self.need = -1  # total bytes of the current response once its headers are in
        self.t0 = 0.0
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        self.t0 = time.perf_counter()
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            at = head.find(b"content-length:")  # uvicorn sends one on every non-streamed answer
            eol = head.find(b"\r\n", at)
            length = int(head[at + 15 : eol if eol > 0 else len(head)])
            self.need = end + 4 + length
        if len(self.buf) < self.need:
            return
        now = time.perf_counter()
        ok = self.buf[9:12] == b"200"
        self.state.done(now, now - self.t0, ok)
        del self.buf[: self.need]
        self.need = -1
        if now < self.state.stop_at:
            self._send()
        else:
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Run:
    """Counts only responses that complete inside [start, stop)."""

    def __init__(self, start: float, stop: float) -> None:
        self.start_at, self.stop_at = start, stop
        self.w = Window()

    def done(self, now: float, latency: float, ok: bool) -> None:
        if self.start_at <= now < self.stop_at:
            self.w.n += 1
            self.w.lat.append(latency)
            self.w.errors += not ok


async def measure(port: int, path: str, key: str | None, pid: int, pollers: int, seconds: float,
                  warmup: float = 0.5) -> Window:  # fmt: skip
    """`pollers` keep-alive connections hammering GET `path` for warmup + seconds; the window after the
    warm-up is measured (requests, latency, and the server's CPU over the same span)."""
    loop = asyncio.get_running_loop()
    auth = f"Authorization: Key {key}\r\n" if key else ""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n".encode()
    t0 = time.perf_counter()
    run = _Run(t0 + warmup, t0 + warmup + seconds)
    marks: dict[str, tuple[float, float, float]] = {}

    def mark(name: str) -> None:
        marks[name] = (time.perf_counter(), proc_cpu_s(pid), time.process_time())

    loop.call_later(warmup, mark, "start")
    loop.call_later(warmup + seconds, mark, "stop")
    conns = []
    for _ in range(pollers):
        _, proto = await loop.create_connection(lambda: _Poller(request, run), "127.0.0.1", port)
        conns.append(proto)
    await asyncio.gather(*(c.closed for c in conns))
    w = run.w
    (a_t, a_cpu, a_cl), (b_t, b_cpu, b_cl) = marks["start"], marks["stop"]
    w.seconds, w.server_cpu_s, w.client_cpu_s = b_t - a_t, b_cpu - a_cpu, b_cl - a_cl
    return w


def _get(port: int, path: str, key: str | None) -> tuple[int, bytes]:
    """(status, body) of one GET."""
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path, headers={"Authorization": f"Key {key}"} if key else {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def _clone_jobs(db: Path, template_job: str, count: int) -> None:
    """`count` copies of a finished job (same owner, params and sizes; new ids), written straight into
    the database in one transaction: a key with thousands of jobs without submitting them."""
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    row = dict(conn.execute("SELECT * FROM jobs WHERE job_id=?", (template_job,)).fetchone())
    row.pop("seq")
    row["idem_key"] = None
    cols = list(row)
    values = []
    for i in range(count):
        r = dict(row, job_id=f"{template_job}-c{i:05d}")
        values.append(tuple(r[c] for c in cols))
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(f"INSERT INTO jobs({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", values)
    conn.execute("COMMIT")
    conn.close()


def _wait_status(url: str, key: str, job: str, want: set[str], timeout: float = 60) -> str:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        s = httpx.get(f"{url}/job-status/{job}", headers={"Authorization": f"Key {key}"}).json()["job_status"][job]
        if s in want or time.monotonic() > deadline:
            return s
        time.sleep(0.1)


def _submit(url: str, key: str, body: dict) -> str:
    import httpx

    r = httpx.post(f"{url}/batch-inference", headers={"Authorization": f"Key {key}"}, json=body, timeout=60)
    r.raise_for_status()
    return r.json()["results"]


def _fmt_row(route: str, who: str, w: Window, bare: Window | None) -> str:
    ratio_rps = f"{bare.rps / w.rps:.2f}" if bare is not None and w.rps else "-"
    ratio_cpu = f"{w.cpu_ms / bare.cpu_ms:.2f}" if bare is not None and bare.n else "-"
    return (f"| {route} | {who} | {w.rps:,.0f} | {w.cpu_ms:.3f} | {w.pct(0.5):.1f} | {w.pct(0.99):.1f} | "
            f"{w.errors} | {w.body_bytes:,} | {ratio_rps} | {ratio_cpu} |")  # fmt: skip


HEADER = ("| route | contender | req/s | server CPU ms/req | p50 ms | p99 ms | errors | body bytes | "
          "bare/sutro req/s | sutro/bare CPU |\n|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0, help="measured window per contender")
    p.add_argument("--pollers", type=int, default=50)
    p.add_argument("--big", default="1000,5000", help="job counts of the big list-jobs keys ('0': none)")
    p.add_argument("--big-pollers", type=int, default=4, help="concurrent pollers on the big lists")
    p.add_argument("--prefix", default="/v1", choices=["/v1", ""],
                   help="sutro-local paths under /v1 (what the official SDK calls) or at the root (sutro_core)")
    p.add_argument("--json", help="also write the raw figures here")
    args = p.parse_args(argv)
    if args.seconds * args.rounds > 300:
        p.error("--seconds x --rounds is capped at 300")
    big = [int(x) for x in args.big.split(",") if int(x) > 0]
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass

    from sutro_local.testing import LocalServer, free_port

    scratch = Path(tempfile.mkdtemp(prefix="sutro-reads-"))
    server = LocalServer(scratch / "srv", CONFIG)
    bare_proc = None
    results: list[dict] = []
    try:
        server.start()
        url, key = server.url, server.api_key
        running = _submit(url, key, {"model": "slow-echo", "inputs": [f"r{i}" for i in range(100_000)],
                                     "job_priority": 1})  # fmt: skip
        for i in range(4):  # a handful of finished jobs beside it
            _wait_status(url, key, _submit(url, key, {"model": "echo", "inputs": [f"j{i} r{j}" for j in range(10)]}),
                         {"SUCCEEDED"})  # fmt: skip
        assert _wait_status(url, key, running, {"RUNNING"}) == "RUNNING"
        big_keys: dict[int, str] = {}
        for count in big:
            k = server.create_key(f"big-{count}")
            template = _submit(url, k, {"model": "echo", "inputs": [f"row {j}" for j in range(10)],
                                        "description": "a realistic description, about sixty characters long"})
            _wait_status(url, k, template, {"SUCCEEDED"})
            _clone_jobs(server.data_dir / "sutro-local.db", template, count - 1)
            big_keys[count] = k
        port = server.port
        # (route label, sutro path, key, bare path, pollers)
        v = args.prefix
        routes = [(f"{v}/job-status/{{id}}", f"{v}/job-status/{running}", key, f"/job-status/{running}", args.pollers),
                  (f"{v}/jobs/{{id}}", f"{v}/jobs/{running}", key, f"/jobs/{running}", args.pollers),
                  (f"{v}/list-jobs (5 jobs)", f"{v}/list-jobs", key, "/list-jobs", args.pollers)]  # fmt: skip
        for count, k in big_keys.items():
            routes.append((f"{v}/list-jobs ({count:,} jobs)", f"{v}/list-jobs", k, f"/list-jobs-{count}",
                           args.big_pollers))  # fmt: skip
        payloads, sizes, first_ms = {}, {}, {}
        for label, path, k, bare_path, _ in routes:
            t_first = time.perf_counter()
            status, body = _get(port, path, k)
            first_ms[label] = (time.perf_counter() - t_first) * 1000
            assert status == 200, (path, status, body[:200])
            payloads[bare_path] = json.loads(body)
            sizes[label] = len(body)
        # the big keys' jobs were written straight into SQLite, as by another tool: their first list
        # also stores their encoded records (once); the second is what every later read costs
        again_ms = {}
        for label, path, k, _, _ in routes:
            t_again = time.perf_counter()
            _get(port, path, k)
            again_ms[label] = (time.perf_counter() - t_again) * 1000
        (scratch / "payloads.json").write_text(json.dumps(payloads))
        bare_port = free_port()
        bare_proc = subprocess.Popen([sys.executable, str(HERE / "_bare_server.py"), "--port", str(bare_port),
                                      "--payloads", str(scratch / "payloads.json")])  # fmt: skip
        for _ in range(200):
            try:
                if _get(bare_port, "/health", None)[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        for _, _, _, bare_path, _ in routes:
            _get(bare_port, bare_path, None)
        # the worker's own CPU while nothing is polled (the running job's throttled chunks)
        c0, t0 = proc_cpu_s(server.proc.pid), time.perf_counter()
        time.sleep(2)
        background = (proc_cpu_s(server.proc.pid) - c0) / (time.perf_counter() - t0)

        print(f"server_reads: {args.rounds} round(s), {args.seconds:g} s windows, {args.pollers} pollers "
              f"({args.big_pollers} on the big lists), job {running} RUNNING throughout; "
              f"sutro-local background CPU with no requests: {background * 100:.1f}% of a core")  # fmt: skip
        print("first read / second read (one client, ms): " + "; ".join(
            f"{label} {first_ms[label]:.1f} / {again_ms[label]:.1f}" for label, *_ in routes))  # fmt: skip
        for rnd in range(args.rounds):
            la_before = loadavg()
            rows = []
            for label, path, k, bare_path, n in routes:
                order = [("bare", bare_port, bare_path, None, bare_proc.pid),
                         ("sutro-local", port, path, k, server.proc.pid)]  # fmt: skip
                if rnd % 2:
                    order.reverse()
                got = {}
                for who, prt, pth, kk, pid in order:
                    got[who] = asyncio.run(measure(prt, pth, kk, pid, n, args.seconds))
                    got[who].body_bytes = sizes[label]
                rows.append((label, got))
            status_after = _wait_status(url, key, running, {"RUNNING"}, timeout=0)
            print(f"\nround {rnd + 1}: load average before {la_before}, after {loadavg()}; "
                  f"running job still {status_after}")  # fmt: skip
            print(HEADER)
            for label, got in rows:
                print(_fmt_row(label, "bare FastAPI", got["bare"], None))
                print(_fmt_row(label, "sutro-local", got["sutro-local"], got["bare"]))
                for who, w in got.items():
                    results.append({"round": rnd + 1, "route": label, "contender": who, "rps": round(w.rps, 1),
                                    "cpu_ms": round(w.cpu_ms, 4), "p50_ms": round(w.pct(0.5), 2),
                                    "p99_ms": round(w.pct(0.99), 2), "errors": w.errors, "bytes": w.body_bytes,
                                    "client_cpu_pct": round(100 * w.client_cpu_s / w.seconds, 1),
                                    "loadavg": la_before})  # fmt: skip
        _summary(results)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    finally:
        if bare_proc is not None:
            bare_proc.terminate()
            bare_proc.wait(10)
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _summary(results: list[dict]) -> None:
    """Ranges over the rounds: req/s, CPU ms/req, p99, and the per-round ratios to bare."""
    print("\nranges over rounds (ratios are within a round):")
    print("| route | bare req/s | sutro req/s | bare/sutro req/s | bare CPU ms | sutro CPU ms | sutro/bare CPU | "
          "sutro p50 ms | sutro p99 ms |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    routes = list(dict.fromkeys(r["route"] for r in results))

    def rng(vals: list[float], fmt: str) -> str:
        lo, hi = min(vals), max(vals)
        return format(lo, fmt) if format(lo, fmt) == format(hi, fmt) else f"{format(lo, fmt)}-{format(hi, fmt)}"

    for route in routes:
        by_round: dict[int, dict[str, dict]] = {}
        for r in results:
            if r["route"] == route:
                by_round.setdefault(r["round"], {})[r["contender"]] = r
        b = [x["bare"] for x in by_round.values()]
        s = [x["sutro-local"] for x in by_round.values()]
        rr = [x["bare"]["rps"] / x["sutro-local"]["rps"] for x in by_round.values() if x["sutro-local"]["rps"]]
        cr = [x["sutro-local"]["cpu_ms"] / x["bare"]["cpu_ms"] for x in by_round.values() if x["bare"]["cpu_ms"]]
        print(f"| {route} | {rng([x['rps'] for x in b], ',.0f')} | {rng([x['rps'] for x in s], ',.0f')} | "
              f"{rng(rr, '.2f')} | {rng([x['cpu_ms'] for x in b], '.3f')} | {rng([x['cpu_ms'] for x in s], '.3f')} | "
              f"{rng(cr, '.2f')} | {rng([x['p50_ms'] for x in s], '.1f')} | {rng([x['p99_ms'] for x in s], '.1f')} |")
    print(json.dumps({"server_reads": results}))


if __name__ == "__main__":
    sys.exit(main())
