"""The Dagster UI shows a Sutro asset's materialization as a user sees it: `dagster dev` over the instance a
real run wrote to, the asset's page opened in Debian's Chromium, a screenshot kept under tests/.artifacts/.

Checked on the page: the kinds (sutro, parquet), the row count, the column schema (a sutro_row_status
column) and the shared gen_ai.*/sutro.* metadata names (issue 25).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support.browser import chromium
from sutro_local.testing import free_port

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[1] / ".artifacts" / "dagster"
DEFS = '''
import polars as pl
from dagster import Definitions, EnvVar, asset
from dagster_sutro import SutroParquetIOManager, SutroResource, build_sutro_inference_asset


@asset
def reviews() -> pl.DataFrame:
    return pl.DataFrame({"review_id": [1, 2, 3], "text": ["Great blender", "Broke after a week", "Okay"]})


review_embeddings = build_sutro_inference_asset(
    name="review_embeddings", upstream=reviews, model="all-minilm-l6-v2", column="text")
defs = Definitions(
    assets=[reviews, review_embeddings],
    resources={"sutro": SutroResource(api_key=EnvVar("SUTRO_API_KEY"), api_url=EnvVar("SUTRO_API_URL"),
                                      poll_interval_seconds=0.2),
               "io_manager": SutroParquetIOManager(base_dir=EnvVar("UI_STORAGE"))},
)
'''


def _load(path: Path):
    spec = importlib.util.spec_from_file_location("ui_defs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_asset_page_shows_kinds_row_count_schema_and_shared_names(
    sutro_server, sutro_key, tmp_path, monkeypatch
):
    from dagster import DagsterInstance, materialize

    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {"DAGSTER_HOME": str(home), "SUTRO_API_KEY": sutro_key, "SUTRO_API_URL": sutro_server.url,
           "UI_STORAGE": str(tmp_path / "storage"), "DAGSTER_DISABLE_TELEMETRY": "1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "ui_defs.py").write_text(DEFS)
    defs = _load(tmp_path / "ui_defs.py").defs
    with DagsterInstance.get() as instance:  # the instance under DAGSTER_HOME that dagster dev will read
        result = materialize(defs.assets, resources=defs.resources, instance=instance)
        assert result.success

    port = free_port()
    log = open(tmp_path / "dagster-dev.log", "wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster")), "dev", "-f", str(tmp_path / "ui_defs.py"),
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"dagster dev did not start:\n{(tmp_path / 'dagster-dev.log').read_text()[-3000:]}")
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            page.goto(f"http://127.0.0.1:{port}/assets/review_embeddings", wait_until="networkidle")
            page.get_by_text("sutro_row_status").first.wait_for(timeout=60_000)
            skip = page.get_by_role("button", name="Skip")  # Dagster's first-visit newsletter dialog
            if skip.count():
                skip.first.click()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "asset-overview.png"), full_page=True)
            text = page.inner_text("body")
            page.goto(f"http://127.0.0.1:{port}/assets/review_embeddings?view=events", wait_until="networkidle")
            page.get_by_text("gen_ai.request.model").first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "asset-events.png"), full_page=True)
            events = page.inner_text("body")
        for needle in ("Row count", "Kinds", "sutro", "Parquet", "sutro_row_status", "sutro_job_id", "inference_result"):
            assert needle in text, (needle, text[:3000])
        for needle in ("gen_ai.request.model", "all-minilm-l6-v2", "sutro.job.id", "sutro.rows.ok"):
            assert needle in events, (needle, events[:3000])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()
