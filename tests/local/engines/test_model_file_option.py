"""`sutro-local serve --model-file PATH.gguf [--model-name NAME]`: any GGUF file beside the configured models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from sutro_local.cli import build_parser, default_key
from sutro_local.config import ConfigError, load_config, with_model_file
from sutro_local.engines import smollm2
from sutro_local.testing import free_port


def test_the_model_file_joins_the_configured_models_under_its_stem_or_name():
    gguf = smollm2.gguf_path()
    cfg = with_model_file(load_config(None), gguf)
    stem = gguf.stem  # SmolLM2-135M-Instruct.Q4_1
    assert sorted(cfg.models) == sorted(["all-minilm-l6-v2", "smollm2-135m-instruct", stem])
    model = cfg.models[stem]
    assert model.engine == "llamacpp" and model.options == {"path": str(gguf.resolve())}
    named = with_model_file(load_config(None), gguf, "smol-gguf")
    assert "smol-gguf" in named.models and stem not in named.models
    args = build_parser().parse_args(["serve", "--model-file", str(gguf), "--model-name", "x"])
    assert (args.model_file, args.model_name) == (str(gguf), "x")


def test_bad_model_files_and_taken_names_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        with_model_file(load_config(None), tmp_path / "nope.gguf")
    not_gguf = tmp_path / "model.safetensors"
    not_gguf.write_bytes(b"\x00" * 64)
    with pytest.raises(ConfigError, match="is not a GGUF file"):
        with_model_file(load_config(None), not_gguf)
    with pytest.raises(ConfigError, match="'smollm2-135m-instruct' is already configured; choose another with --model-name"):
        with_model_file(load_config(None), smollm2.gguf_path(), "smollm2-135m-instruct")


@pytest.mark.slow
def test_serve_model_file_answers_chat_and_stops_on_sigterm(tmp_path):
    """A real `sutro-local serve --model-file`; SIGTERM still stops it after llama.cpp has loaded."""
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"models": {"echo": {"engine": "echo"}}}))
    key = default_key(data)
    port = free_port()
    cmd = [sys.executable, "-m", "sutro_local", "serve", "--port", str(port), "--data-dir", str(data),
           "--config", str(config), "--model-file", str(smollm2.gguf_path()), "--model-name", "smol-file"]  # fmt: skip
    env = {**os.environ, "SUTRO_LOCAL_PARENT_PID": str(os.getpid()), "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
            assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["smol-file"]
            r = http.post("/v1/chat/completions", json={
                "model": "smol-file", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
            })  # fmt: skip
            assert r.status_code == 200, r.text
            assert 1 <= r.json()["usage"]["completion_tokens"] <= 4
        # SIGTERM reaches uvicorn (which shuts down, then re-raises it), not llama.cpp's handler (which
        # would stop only llama.cpp's loop and leave the server running)
        proc.terminate()
        assert proc.wait(30) in (0, -15)
        log_text = (tmp_path / "server.log").read_text(errors="replace")
        assert "loaded smol-file" in log_text and "Logging error" not in log_text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
