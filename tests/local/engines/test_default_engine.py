"""Which engine serves the default chat model: the CPU rule, the overrides, `engine: auto`, what serve says.

Fast: the rule is a function of the CPU flags and of what is installed, so both of its branches are tested
here on any machine; tests/realmodel runs the default model end to end on both engines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from sutro_local.cli import build_parser, default_key
from sutro_local.config import ConfigError, load_config
from sutro_local.engines import smollm2
from sutro_local.engines.smollm2 import ENGINE_ENV, choose_engine
from sutro_local.testing import free_port

AVX2 = {"fpu", "sse4_2", "avx", "avx2", "fma"}  # an AVX2-only EPYC / desktop CPU
BF16 = AVX2 | {"avx512f", "avx512_bf16"}  # Zen 4 / Sapphire Rapids class
AMX = AVX2 | {"amx_tile", "amx_bf16"}


def _all_installed(module: str) -> bool:
    return True


def _without(*missing: str):
    return lambda module: module not in missing


@pytest.fixture(autouse=True)
def no_engine_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENGINE_ENV, raising=False)  # a developer's own setting must not steer these tests


@pytest.mark.parametrize("flags, engine", [(AVX2, "llamacpp"), (BF16, "transformers"), (AMX, "transformers")])
def test_auto_picks_transformers_on_bfloat16_cpus_and_llamacpp_elsewhere(flags, engine):
    choice = choose_engine("auto", flags=flags, installed=_all_installed)
    assert (choice.engine, choice.setting) == (engine, "auto")
    assert "bfloat16" in choice.reason  # the reason names what decided


def test_without_xgrammar_a_bfloat16_cpu_still_gets_schema_jobs_through_llamacpp():
    # `pip install sutro-pipelines[local]` alone has no xgrammar (./run installs it out of band)
    choice = choose_engine("auto", flags=BF16, installed=_without("xgrammar"))
    assert choice.engine == "llamacpp"
    assert "xgrammar is not installed" in choice.reason
    assert "pip install --no-deps xgrammar apache-tvm-ffi" in choice.reason  # how to get the other engine


def test_without_the_llamacpp_wheel_a_cpu_without_bfloat16_falls_back_to_transformers():
    choice = choose_engine("auto", flags=AVX2, installed=_without("xllamacpp"))
    assert choice.engine == "transformers" and "pip install xllamacpp" in choice.reason


@pytest.mark.parametrize("setting", ["llamacpp", "transformers", " LlamaCpp "])
def test_a_named_engine_wins_over_the_cpu_rule(setting, monkeypatch):
    want = setting.strip().lower()
    for flags in (AVX2, BF16):
        choice = choose_engine(setting, flags=flags, installed=_all_installed, source="--default-engine")
        assert (choice.engine, choice.reason) == (want, f"chosen by --default-engine ({want})")
    monkeypatch.setenv(ENGINE_ENV, setting)  # no setting given: the environment variable's
    assert choose_engine(flags=AVX2).reason == f"chosen by {ENGINE_ENV} ({want})"


def test_an_unknown_setting_names_the_allowed_values(monkeypatch):
    with pytest.raises(ValueError, match="'vllm' .*is not one of auto, llamacpp, transformers"):
        choose_engine("vllm")
    monkeypatch.setenv(ENGINE_ENV, "gpu")
    with pytest.raises(ConfigError, match=f"'gpu' \\(from {ENGINE_ENV}\\) is not one of auto, llamacpp"):
        load_config(None)


def test_this_cpus_flags_are_read_and_agree_with_the_transformers_dtype():
    flags = smollm2.cpu_flags()
    assert all(isinstance(f, str) and f == f.strip() and f for f in flags)
    assert smollm2.has_bf16(flags) == smollm2.has_bf16() == (smollm2.default_dtype() == "bfloat16")


@pytest.mark.parametrize("engine", ["llamacpp", "transformers"])
def test_the_default_config_serves_the_chosen_engine_and_records_why(engine, monkeypatch):
    cfg = load_config(None, default_engine=engine)
    assert cfg.models["smollm2-135m-instruct"].engine == engine
    assert cfg.engine_choices["smollm2-135m-instruct"].reason == f"chosen by --default-engine ({engine})"
    monkeypatch.setenv(ENGINE_ENV, engine)
    assert load_config(None).models["smollm2-135m-instruct"].engine == engine
    other = "transformers" if engine == "llamacpp" else "llamacpp"
    assert load_config(None, default_engine=other).models["smollm2-135m-instruct"].engine == other  # CLI > env
    explicit = load_config({"models": {"m": {"engine": "embedding"}}})
    assert explicit.engine_choices == {}  # a config that names its engines: nothing chosen for it


def test_engine_auto_in_a_config_keeps_its_price_pacing_and_neutral_options():
    raw = {"models": {"chat": {"engine": "auto", "options": {"builtin": "smollm2", "threads": 2},
                               "price": {"input_per_1m": 1.0, "output_per_1m": 2.0}, "chunk_size": 4}}}  # fmt: skip
    for engine, engine_option in (("llamacpp", "parallel"), ("transformers", "batch_size")):
        model = load_config(raw, default_engine=engine).models["chat"]
        assert model.engine == engine and engine_option in model.options
        assert model.options["threads"] == 2 and model.chunk_size == 4
        assert (model.price_input_per_1m, model.price_output_per_1m) == (1.0, 2.0)


@pytest.mark.parametrize(
    "spec, needle",
    [
        ({"engine": "auto", "options": {"path": "/models/qwen"}}, "needs options: {builtin: smollm2}"),
        ({"engine": "auto"}, "needs options: {builtin: smollm2}"),
        ({"engine": "auto", "options": {"builtin": "smollm2", "batch_size": 8}},
         "unknown config keys ['batch_size'] in models.m.options (engine: auto)"),
        ({"engine": "auto", "options": {"builtin": "smollm2"}, "chunksize": 8}, "unknown config keys ['chunksize']"),
    ],
)  # fmt: skip
def test_engine_auto_errors_name_the_fix(spec, needle):
    with pytest.raises(ConfigError) as exc:
        load_config({"models": {"m": spec}})
    assert needle in str(exc.value)


def test_the_example_pipelines_config_leaves_the_choice_to_sutro_local():
    cfg = load_config("example_pipelines/sutro-local.yaml", default_engine="llamacpp")
    assert cfg.models["smollm2-135m-instruct"].engine == "llamacpp"
    assert load_config("example_pipelines/sutro-local.yaml").engine_choices["smollm2-135m-instruct"] == \
        choose_engine("auto")  # fmt: skip


def test_the_cli_flag_takes_only_known_engines(capsys):
    assert build_parser().parse_args(["serve", "--default-engine", "llamacpp"]).default_engine == "llamacpp"
    assert build_parser().parse_args(["serve"]).default_engine is None  # then the variable, then auto
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--default-engine", "vllm"])
    assert "invalid choice: 'vllm'" in capsys.readouterr().err


@pytest.mark.parametrize("engine", ["llamacpp", "transformers"])
def test_serve_prints_which_engine_serves_the_default_model_and_why(engine, tmp_path):
    """`sutro-local serve --default-engine` (no model is loaded: the worker is off)."""
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"models": {"smollm2-135m-instruct": {"engine": "auto",
                                                                       "options": {"builtin": "smollm2"}}},
                                  "worker": {"enabled": False}}))  # fmt: skip
    default_key(data)
    cmd = [sys.executable, "-m", "sutro_local", "serve", "--port", str(free_port()), "--data-dir", str(data),
           "--config", str(config), "--default-engine", engine]  # fmt: skip
    env = {**os.environ, "SUTRO_LOCAL_PARENT_PID": str(os.getpid()), "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        want = f"smollm2-135m-instruct on the {engine} engine: chosen by --default-engine ({engine})"
        deadline = time.monotonic() + 60
        while want not in log_path.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_schema_job_on_transformers_without_xgrammar_names_both_fixes(tiny_llama_dir, monkeypatch):
    from sutro_local.config import ModelConfig
    from sutro_local.engines.base import ChunkParams, EngineInputError
    from sutro_local.engines.transformers_engine import create

    monkeypatch.setitem(sys.modules, "xgrammar", None)  # as if not installed: `import xgrammar` fails
    engine = create(ModelConfig("tiny", "transformers", options={"path": str(tiny_llama_dir), "threads": 1}))
    with pytest.raises(EngineInputError) as exc:
        engine.run(["hi"], ChunkParams(json_schema={"type": "object", "properties": {"a": {"type": "string"}}},
                                       sampling_params={"max_tokens": 4}))  # fmt: skip
    assert "pip install --no-deps xgrammar apache-tvm-ffi" in str(exc.value)
    assert "sutro-local serve --default-engine llamacpp" in str(exc.value)
