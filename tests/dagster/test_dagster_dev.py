"""`dagster dev -m example_pipelines.dagster_pipeline` (as README and docs/dagster.md say) starts,
serves the example's asset definitions over GraphQL, and stops without leaving a process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sutro_local.testing import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
QUERY = "{ assetNodes { assetKey { path } } }"


def _descendants(pid: int) -> list[int]:
    """Every process whose ancestry leads to `pid` (read from /proc: no psutil needed)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        frontier += kids
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_dagster_dev_serves_the_example_definitions(tmp_path):
    from example_pipelines.dagster_pipeline import defs

    want = sorted("/".join(k.path) for k in defs.resolve_asset_graph().get_all_asset_keys())
    port = free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SUTRO_API_KEY": "sk-not-used",
        "SUTRO_DEMO_STORAGE": str(tmp_path / "storage"),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "PYTHONUNBUFFERED": "1",
    }
    dagster = Path(sys.executable).with_name("dagster")
    with open(tmp_path / "dagster-dev.log", "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [
                str(dagster),
                "dev",
                "-m",
                "example_pipelines.dagster_pipeline",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    children: list[int] = []
    try:
        got, deadline = None, time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": QUERY}, timeout=5)
                nodes = (r.json().get("data") or {}).get("assetNodes") if r.status_code == 200 else None
                if nodes:
                    got = sorted("/".join(n["assetKey"]["path"]) for n in nodes)
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        children = _descendants(proc.pid)
        assert got is not None, (
            f"dagster dev served no assets:\n{(tmp_path / 'dagster-dev.log').read_text()[-3000:]}"
        )
        assert got == want
        assert children, "dagster dev started no webserver/daemon/code-server processes"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # what Ctrl-C sends: dagster dev shuts its children down
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.2)
    left = [c for c in children if _alive(c)]
    for c in left:
        os.kill(c, signal.SIGKILL)
    assert not left, f"processes left after dagster dev stopped: {left}"
    assert proc.returncode in (0, -signal.SIGINT, 130), proc.returncode
