"""kill -9 of a step that reuses rows (``row_store``) and repairs cut rows, at each stage, then the retry: one
main job and one repair job billed, never more; the artifact complete; the store readable and whole.

The step: 12 rows, 6 already stored by an earlier run, 2 of the 6 new ones cut at ``max_tokens`` (the
``echo`` engine cuts at N words) and repaired in one round. A throttled model keeps each job running for
seconds, so "during the main job" and "during the repair" are real moments, found from the step's own log
lines. Stages: after the rows to send are recorded (the submit may or may not have gone out), while the
main job runs, while the repair job runs, after both jobs before the store and artifact are written, after
the store is written before the artifact. Each stage is killed twice (10 kills): a kill lands a little
after its log line, so two tries of each stage cover both sides of the next step more often than one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from sutro_core import JobSpec, SutroClient, load_results
from sutro_core.row_store import RowStore, request_identity, row_keys

from .conftest import FAST_POLL

TESTS_DIR = Path(__file__).resolve().parents[1]
STORED = [f"stored ticket {i}" for i in range(6)]
NEW = [f"new ticket {i}" for i in range(4)] + ["a long ticket one two three four five six seven",
                                               "another long ticket one two three four five six"]
ROWS = STORED + NEW
MAX_TOKENS = 6  # the two long tickets are cut; the repair's 12 words fit
# (marker in the step's log, which occurrence): the kill follows the line at once
STAGES = {
    "rows recorded": ("distinct rows to send", 1),
    "main job running": ("submitted job", 1),
    "repair job running": ("submitted job", 2),
    "jobs done": ("repair round 1, job", 1),
    "store written": ("rows reused", 1),
}

DRIVER = """
import json, logging, sys
from sutro_core import JobSpec, PollPolicy, SutroClient
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
url, key, store, out = sys.argv[1:5]
rows = json.loads(sys.argv[5])
spec = JobSpec.for_inference(rows, "slow-echo", sampling_params={"max_tokens": 6}, output_uri=out,
                             row_store=store, repair_rounds=1, poll=PollPolicy(initial_interval=0.05, max_interval=0.2))
with SutroClient(api_key=key, api_url=url) as client:
    outcome = client.run(spec, scope=("rows-kill", out))
print("DONE", json.dumps(outcome.manifest.to_dict()), flush=True)
"""


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    from sutro_local.testing import LocalServer

    cfg = {"models": {"slow-echo": {"engine": "echo", "chunk_size": 1, "min_seconds_per_chunk": 0.25,
                                    "price": {"input_per_1m": 1.0, "output_per_1m": 1.0}}}}
    with LocalServer(tmp_path_factory.mktemp("rows-kill") / "srv", cfg) as server:
        yield server


def _step(server, key: str, store: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR.parent / "core"), str(TESTS_DIR.parent),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", DRIVER, server.url, key, str(store), str(out), json.dumps(ROWS)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def _kill_at(proc: subprocess.Popen, marker: str, occurrence: int) -> list[str]:
    seen, lines = 0, []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            seen += 1
            if seen == occurrence:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
                return lines
        if time.monotonic() > deadline:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    raise AssertionError(f"the step never logged {marker!r} #{occurrence}:\n{''.join(lines)}")


def _finish(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=180)
    done = [line for line in out.splitlines() if line.startswith("DONE ")]
    assert proc.returncode == 0 and done, out
    return json.loads(done[0][5:])


@pytest.mark.parametrize("stage", [s for s in STAGES for _ in range(2)])
def test_a_killed_row_reusing_step_retried_bills_each_job_once(slow_server, tmp_path, tally, stage):
    key = slow_server.create_key(f"rows-kill-{stage.replace(' ', '-')}")
    store, out = tmp_path / "rows", tmp_path / "out.parquet"
    with SutroClient(api_key=key, api_url=slow_server.url, poll=FAST_POLL) as client:
        # an earlier run stored the first six rows
        client.run(JobSpec.for_inference(STORED, "slow-echo", sampling_params={"max_tokens": MAX_TOKENS},
                                         output_uri=str(tmp_path / "day1.parquet"), row_store=str(store),
                                         poll=FAST_POLL), scope=("rows-kill", "day1"))
        _kill_at(_step(slow_server, key, store, out), *STAGES[stage])
        tally["step processes killed"] += 1
        assert not out.exists() or load_results(str(out)).height == len(ROWS)  # no half artifact, ever
        manifest = _finish(_step(slow_server, key, store, out))
        jobs = sorted((j for j in client.list_jobs() if not (j.model_extra or {}).get("dry_run")),
                      key=lambda j: j.created_at)
    # day 1's job, then this step's main job (the 6 new rows) and its repair (the 2 cut ones): nothing twice
    tally["duplicates found"] += max(0, len(jobs) - 3)
    assert [j.num_rows for j in jobs] == [6, 6, 2], [(j.job_id, j.num_rows) for j in jobs]
    df = load_results(manifest)
    assert df["inference_result"].to_list() == ROWS and df["sutro_row_status"].to_list() == ["ok"] * 12
    assert (manifest["rows_submitted"], manifest["rows_from_store"]) == (6, 6)
    assert df["sutro_job_id"].to_list() == [jobs[0].job_id] * 6 + [jobs[1].job_id] * 4 + [jobs[2].job_id] * 2
    # the store holds every row once: each is found, and a lookup of all twelve reads without a warning
    keys = row_keys(request_identity(JobSpec.for_inference(
        ROWS, "slow-echo", sampling_params={"max_tokens": MAX_TOKENS}).request), ROWS)
    found = RowStore(store).lookup(keys)
    assert sorted(found["sutro_row_key"].to_list()) == sorted(keys)
    assert pl.Series(found["outputs"]).to_list().count(None) == 0
