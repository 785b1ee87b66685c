"""Manual compatibility check: the official `sutro` SDK (PyPI 0.1.67) against a running sutro-local.

The SDK pins old polars/pyarrow/pandas, so it runs from its own venv, not the project's:

    python3.11 -m venv /tmp/sdkvenv && /tmp/sdkvenv/bin/pip install sutro==0.1.67
    sutro-local serve --port 8484 --data-dir /tmp/sl &          # prints the API key
    SUTRO_API_URL=http://127.0.0.1:8484 SUTRO_API_KEY=... /tmp/sdkvenv/bin/python \
        tests/local/sdk_compat/check_official_sdk.py

Exits non-zero on the first mismatch. (Not collected by pytest: the file name has no test_ prefix;
tests/compat/test_official_sdk.py runs it against the fixtures' server when `.venv-sdk` exists.)
"""

from __future__ import annotations

import os
import sys
import time

from sutro import Sutro

url, key = os.environ["SUTRO_API_URL"], os.environ["SUTRO_API_KEY"]
so = Sutro(api_key=key, base_url=url)


def check(cond: bool, what: str) -> None:
    sys.stderr.write(("ok   " if cond else "FAIL ") + what + "\n")
    if not cond:
        sys.exit(1)


check(so.try_authentication(key) is not None, "try-authentication")
quotas = so.get_quotas()
check(isinstance(quotas, list) and {q["job_priority"] for q in quotas} >= {0, 1}, "get_quotas")

job_id = so.infer(["hello", "world"], model="all-minilm-l6-v2", stay_attached=False)
check(isinstance(job_id, str) and job_id.startswith("job-"), f"infer (detached) -> {job_id}")
for _ in range(600):
    status = so._fetch_job_status(job_id)
    if status in ("SUCCEEDED", "FAILED", "CANCELLED"):
        break
    time.sleep(0.2)
check(status == "SUCCEEDED", f"job-status -> {status}")
df = so.get_job_results(job_id, include_inputs=True)
check(df is not None and df.columns == ["inputs", "inference_result"] and df.height == 2, "get_job_results")
check(len(df["inference_result"][0]) == 384, "embedding vectors")
jobs = so.list_jobs()
check(any(j["job_id"] == job_id for j in jobs), "list_jobs")
check(so._fetch_job(job_id)["status"] == "SUCCEEDED", "jobs/{id}")

est_job = so.infer(["hello"] * 10, model="all-minilm-l6-v2", dry_run=True, stay_attached=False)
check(isinstance(est_job, str), "dry run returns the job id")
check(isinstance(so._get_job_cost_estimate(est_job), float), f"cost_estimate = {so._get_job_cost_estimate(est_job)}")

slow = so.infer([f"r{i}" for i in range(200)], model=os.environ.get("SDK_SLOW_MODEL", "all-minilm-l6-v2"),
                stay_attached=False, job_priority=1)
resp = so.cancel_job(slow)
check(isinstance(resp, dict), f"cancel_job -> {resp}")
so.attach(job_id)  # streams progress of a finished job: prints and returns

# attached: the SDK polls for the start every 5 s, streams stream-job-progress, then job-results.
# (The SDK waits for RUNNING/STARTING only, so the job must still be running at its first polls.)
attached = so.infer([f"a{i}" for i in range(40)], model=os.environ.get("SDK_SLOW_MODEL", "all-minilm-l6-v2"),
                    stay_attached=True)
check(isinstance(attached, str), f"infer (attached) streams progress, fetches results, returns the id: {attached}")
check(so.get_job_results(attached)["inference_result"].to_list() == [f"a{i}" for i in range(40)]
      or os.environ.get("SDK_SLOW_MODEL") is None, "attached job results in order")

import tempfile  # noqa: E402

import polars as pl  # noqa: E402

path = so.download_job_results(job_id, output_path=tempfile.mkdtemp() + "/", include_inputs=True)
check(path is not None and pl.read_parquet(path).columns[:2] == ["inputs", "outputs"], f"download_job_results -> {path}")
if os.environ.get("SDK_FUNCTION"):
    res = so.run_function(os.environ["SDK_FUNCTION"], "I was charged twice")
    check(res.confidence is not None and res.get("response") == "billing", f"run_function -> {dict(res)}")
sys.stderr.write("all checks passed\n")
