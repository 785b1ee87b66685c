"""Run by tests/compat/test_official_sdk.py inside the official SDK's venv (sutro==0.1.67), against sutro-local.

Each check is one documented behaviour the SDK relies on (issue 15). Prints "ok   <what>" per check on stderr
and exits 1 at the first failure. Needs SUTRO_API_URL, SUTRO_API_KEY; SDK_SLOW_MODEL names a model whose
jobs run for seconds (one row a chunk), SDK_FUNCTION a classification Function with a `text` input.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import zipfile

import polars as pl
import requests
from sutro import Sutro
from sutro.sdk import SutroValidationError

url, key = os.environ["SUTRO_API_URL"], os.environ["SUTRO_API_KEY"]
slow, function = os.environ["SDK_SLOW_MODEL"], os.environ["SDK_FUNCTION"]
so = Sutro(api_key=key, base_url=url)


def check(cond: bool, what: str) -> None:
    sys.stderr.write(("ok   " if cond else "FAIL ") + what + "\n")
    if not cond:
        sys.exit(1)


# 5: the attached bar reaches N/N (the stream starts with progress, ends with a final progress line).
rows = 24
captured = io.StringIO()
with contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
    attached = so.infer([f"r{i}" for i in range(rows)], model=slow, stay_attached=True)
text = captured.getvalue()
check(isinstance(attached, str), f"attached infer returns the job id ({attached})")
check(f"{rows}/{rows}" in text, f"attached progress bar reached {rows}/{rows} (tail: {text[-300:]!r})")

# 1: job records carry the SDK's datetime_* names (the CLI sorts and formats them).
jobs = so.list_jobs()
record = next(j for j in jobs if j["job_id"] == attached)
check(all(k in record for k in ("datetime_created", "datetime_added", "datetime_started", "datetime_completed")),
      "list_jobs records carry datetime_created/_added/_started/_completed")
check(record["datetime_completed"] is not None, "datetime_completed is set on a finished job")

# 2: CSV results name the outputs column after the job id; JSON and parquet keep `outputs`.
session = requests.Session()
session.headers["Authorization"] = f"Key {key}"
api = url.rstrip("/")
r = session.get(f"{api}/jobs/{attached}/results", params={"result_format": "csv", "include_inputs": "true"})
with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
    csv = pl.read_csv(zf.read(zf.namelist()[0]))
check(csv.columns == ["inputs", attached], f"CSV columns are inputs, {{job_id}} ({csv.columns})")
body = session.get(f"{api}/jobs/{attached}/results", params={"result_format": "json"}).json()
check(list(body) == ["outputs"], f"JSON results keep `outputs` ({list(body)})")

# 3 + 4: run_function: usage.system_prompt is text; a mismatched input is SutroValidationError (422).
res = so.run_function(function, {"text": "I was charged twice"})
check(isinstance(res.usage.get("system_prompt"), str) and res["response"] == "billing",
      f"run_function usage.system_prompt is the prompt's text ({res.usage})")
try:
    so.run_function(function, {"body": "wrong field"})
    check(False, "a mismatched Function input raises")
except SutroValidationError as exc:
    check(exc.code == "invalid_function_input" and "text" in (exc.detail or ""),
          f"mismatched Function input -> SutroValidationError ({exc.code}: {exc.detail})")

# batch_run_function as in the docs, then await_job_completion -> label / confidence_score columns.
job_id = so.batch_run_function(name=function, data=[{"text": "I was charged twice"}, {"text": "The app crashes"}])
results = so.await_job_completion(job_id)
check(results is not None and "label" in results.columns and "confidence_score" in results.columns,
      f"batch_run_function + await_job_completion -> {None if results is None else results.columns}")

# 6: a list of models says that one job takes one model.
r = session.post(f"{api}/batch-inference", json={"model": [slow, slow], "inputs": ["x"]})
check(r.status_code == 400 and "one job takes one model" in r.json()["detail"], f"model list -> {r.text[:200]}")
sys.stderr.write("all checks passed\n")
