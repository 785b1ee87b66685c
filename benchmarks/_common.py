"""Shared benchmark plumbing: a sutro-local server, jobs, measured subprocesses, markdown tables.

Every contender runs as its own subprocess under GNU ``/usr/bin/time``, so its peak RSS and CPU time
are its own. Contenders that are Python scripts print one JSON line with their in-process timing
(``op_s``: the operation alone, after imports) as the last line of stdout.

Example:
    >>> with bench_server("demo", {"models": {"echo": {"engine": "echo"}}}) as srv:  # doctest: +SKIP
    ...     m = measure(["curl", "-s", "-o", "/dev/null", srv.url + "/health"])
    ...     m.wall_s, m.peak_rss_mb
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
RESULTS_DIR = BENCH_DIR / "results"
OUR_PYTHON = str(ROOT / ".venv" / "bin" / "python")
SDK_VENV = BENCH_DIR / ".venv-sutro-sdk"
SDK_PYTHON = str(SDK_VENV / "bin" / "python")
SDK_VERSION = "0.1.67"
SCRATCH = Path(os.environ.get("SUTRO_BENCH_TMP", "/tmp/sutro-bench"))
TIME = "/usr/bin/time"  # GNU time (apt-get install time)


def ensure_sdk_venv() -> str:
    """The official SDK's python, in its own venv (it pins old polars/pandas/pyarrow)."""
    if not Path(SDK_PYTHON).exists():
        subprocess.run([sys.executable, "-m", "venv", str(SDK_VENV)], check=True)
    probe = subprocess.run([SDK_PYTHON, "-c", "import sutro"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([SDK_PYTHON, "-m", "pip", "install", "-q", f"sutro=={SDK_VERSION}"], check=True)
    return SDK_PYTHON


def machine() -> dict[str, Any]:
    """Cores, RAM, CPU model, date: printed with every table."""
    mem_kb = 0
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
    }


def machine_line() -> str:
    """One markdown line describing the machine and date."""
    m = machine()
    return f"Machine: {m['cores']} cores ({m['cpu']}), {m['ram_gb']} GB RAM, Python {m['python']}; {m['date']}."


@contextmanager
def bench_server(name: str, config: dict[str, Any] | None, env: dict[str, str] | None = None) -> Iterator[Any]:
    """A fresh sutro-local server process (own data dir under SCRATCH), stopped afterwards."""
    import shutil

    from sutro_local.testing import LocalServer

    data = SCRATCH / name
    shutil.rmtree(data, ignore_errors=True)
    srv = LocalServer(data, config, env=env, startup_timeout=120)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def wait_succeeded(url: str, key: str, job_id: str, timeout: float = 3600, interval: float = 0.05) -> dict[str, Any]:
    """Poll ``jobs/{id}`` until terminal (short interval: measures the server, not a backoff)."""
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, headers={"Authorization": f"Key {key}"}, timeout=60) as http:
        while True:
            job = http.get(f"/jobs/{job_id}").json()["job"]
            if job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                if job["status"] != "SUCCEEDED":
                    raise RuntimeError(f"job {job_id} ended {job['status']}: {job.get('failure_reason')}")
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
            time.sleep(interval)


@dataclass
class Measured:
    """One subprocess run: wall seconds, peak RSS, CPU seconds, and its JSON report (if any)."""

    wall_s: float
    peak_rss_mb: float
    cpu_s: float
    returncode: int
    report: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""

    @property
    def op_s(self) -> float:
        """The in-process operation time when the script reported one, else the wall time."""
        return float(self.report.get("op_s", self.wall_s))


def measure(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float = 3600) -> Measured:
    """Run ``cmd`` as its own process under ``/usr/bin/time``; report its own peak RSS and CPU.

    ``/usr/bin/time`` (a tiny process) forks the contender, so ``ru_maxrss`` is the contender's own,
    not the forked-from benchmark's (which a plain fork+exec from Python would report).
    """
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    SCRATCH.mkdir(parents=True, exist_ok=True)
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    out_path, usage_path = SCRATCH / f"stdout-{stamp}.txt", SCRATCH / f"usage-{stamp}.txt"
    with open(out_path, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.run([TIME, "-f", "%M %U %S", "-o", str(usage_path), *cmd], stdout=out,
                              stderr=subprocess.PIPE, env=full_env, timeout=timeout)  # fmt: skip
        wall = time.perf_counter() - start
    rss_kb, user, system = usage_path.read_text().strip().splitlines()[-1].split()
    stdout = out_path.read_text(errors="replace")
    out_path.unlink(missing_ok=True)
    usage_path.unlink(missing_ok=True)
    report: dict[str, Any] = {}
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{") and line.endswith("}"):
            try:
                report = json.loads(line)
            except ValueError:
                pass
            break
    return Measured(wall_s=wall, peak_rss_mb=int(rss_kb) / 1024, cpu_s=float(user) + float(system),
                    returncode=proc.returncode, report=report,
                    stderr_tail=proc.stderr.decode(errors="replace")[-2000:])  # fmt: skip


def median_of(runs: list[Measured]) -> Measured:
    """The run with the median operation time (peak RSS: the max over runs)."""
    ok = sorted(runs, key=lambda m: m.op_s)
    mid = ok[len(ok) // 2]
    return Measured(wall_s=statistics.median(m.wall_s for m in runs), peak_rss_mb=max(m.peak_rss_mb for m in runs),
                    cpu_s=statistics.median(m.cpu_s for m in runs), returncode=max(m.returncode for m in runs),
                    report=mid.report, stderr_tail=mid.stderr_tail)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def save_section(name: str, markdown: str) -> Path:
    """Write a script's markdown section to benchmarks/results/<name>.md (run_all.py collects them)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.md"
    path.write_text(markdown.rstrip() + "\n")
    return path


def command_line() -> str:
    """The command that produced a table, as a user would type it."""
    rel = Path(sys.argv[0]).resolve().relative_to(ROOT)
    return " ".join([".venv/bin/python", str(rel), *sys.argv[1:]])


class ByteCountingProxy:
    """A loopback TCP forwarder that counts the bytes clients send: the request size on the wire.

    Example:
        >>> with ByteCountingProxy("127.0.0.1", 8484) as proxy:          # doctest: +SKIP
        ...     httpx.post(proxy.url + "/batch-inference", json=body)
        ...     proxy.sent_bytes
    """

    def __init__(self, host: str, port: int) -> None:
        import socket
        import threading

        self.upstream = (host, port)
        self.sent_bytes = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        import socket
        import threading

        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: Any, dst: Any, count: bool) -> None:
        import socket

        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                if count:
                    with self._lock:
                        self.sent_bytes += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self) -> "ByteCountingProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop = True
        self._sock.close()


def rows_main(doc: str, run: Any, *, rows_help: str) -> None:
    """The command line shared by the row-count benchmarks: ``run(rows, repeats, with_sdk)`` -> markdown."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k rows, 1 repeat")
    parser.add_argument("--rows", type=int, default=None, help=f"{rows_help} (default 1M, quick 100k)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per contender (default 3, quick 1)")
    parser.add_argument("--no-sdk", action="store_true", help="skip the official SDK")
    parser.add_argument("--save", default=None, help="also write the section to benchmarks/results/<SAVE>.md")
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    repeats = args.repeats or (1 if args.quick else 3)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    section = run(rows, repeats, not args.no_sdk)
    print(section)
    if args.save:
        save_section(args.save, section)


def value_range(values: list[float], fmt: str = "{:.2f}") -> str:
    """``lo-hi`` of ``values`` formatted with ``fmt`` (one value when they print the same)."""
    lo, hi = min(values), max(values)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}-{fmt.format(hi)}"
