"""Fast unit tests of sutro-local pieces that need no server: config, signing, store, Function defs."""

from __future__ import annotations

import pytest

from sutro_local import signing
from sutro_local.config import ConfigError, load_config
from sutro_local.functions import FunctionDefinitionError, FunctionInputError, parse_definition
from sutro_local.store import Store


def test_default_config_serves_minilm_with_a_quota_per_priority(monkeypatch):
    from sutro_local.engines.smollm2 import ENGINE_ENV, choose_engine

    monkeypatch.delenv(ENGINE_ENV, raising=False)
    cfg = load_config(None)
    assert list(cfg.models) == ["all-minilm-l6-v2", "smollm2-135m-instruct"]
    assert cfg.models["all-minilm-l6-v2"].engine == "embedding"
    # the chat model's engine depends on the CPU (tests/local/engines/test_default_engine.py)
    assert cfg.models["smollm2-135m-instruct"].engine == choose_engine("auto").engine
    assert [q.job_priority for q in cfg.quotas] == [0, 1]
    assert cfg.chunk_size_for("all-minilm-l6-v2") == 64


@pytest.mark.parametrize(
    "raw, needle",
    [
        ({"models": {"m": {"engine": "gpu-magic"}}}, "models.m.engine is 'gpu-magic'"),
        ({"models": {"m": {"engine": "embedding", "chunk_size": 0}}}, "models.m.chunk_size must be a positive"),
        ({"modles": {}}, "unknown config keys ['modles']"),
        ({"quotas": [{"row_quota": 3}]}, "quotas[0] must be"),
    ],
)
def test_config_errors_name_the_key(raw, needle):
    with pytest.raises(ConfigError, match=None) as exc:
        load_config(raw)
    assert needle in str(exc.value)


def test_yaml_config_file_and_relative_functions_dir(tmp_path):
    (tmp_path / "c.yaml").write_text("functions_dir: fns\nmodels:\n  e: {engine: embedding, price: {input_per_1m: 2}}\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.functions_dir == tmp_path / "fns"
    assert cfg.models["e"].cost(1_000_000, 0) == 2.0
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_signed_tokens_verify_expire_and_resist_tampering():
    secret = b"s" * 32
    job = "job-" + "a" * 32
    tok = signing.sign(secret, job, "results.parquet", expires_at=2_000)
    assert signing.verify(secret, tok, now=1_000) == (job, "results.parquet")
    with pytest.raises(signing.TokenError, match="expired"):
        signing.verify(secret, tok, now=3_000)
    with pytest.raises(signing.TokenError, match="bad signature"):
        signing.verify(b"t" * 32, tok, now=1_000)
    evil = signing.sign(secret, job, "../sutro-local.db", expires_at=2_000)
    with pytest.raises(signing.TokenError, match="outside"):
        signing.verify(secret, evil, now=1_000)


def test_store_transitions_are_compare_and_set_and_requeue_after_crash(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    owner = store.resolve_key(store.create_key("k")).owner
    for jid, status in [("job-a", "RUNNING"), ("job-b", "CANCELLING"), ("job-c", "SUCCEEDED")]:
        store.insert_job({"job_id": jid, "owner": owner, "status": status, "model": "m", "job_priority": 0,
                          "num_rows": 2, "created_at": "t", "params": {"chunk_size": 1}})
    assert not store.transition("job-c", ("RUNNING",), "FAILED")
    store.record_chunk("job-a", 0, 0, 1, 5, 0, 0.1)
    assert store.requeue_interrupted() == ["job-a"]
    a, b = store.get_job("job-a"), store.get_job("job-b")
    assert (a.status, a.rows_processed, a.input_tokens) == ("QUEUED", 1, 5)
    assert b.status == "CANCELLED" and b.finished_at
    assert store.get_job("job-a", owner="someone-else") is None
    assert store.active_usage(owner, 0) == (2, 0)


def test_function_definitions_and_inputs():
    d = parse_definition({"name": "t", "inputs": ["title", "body"], "prompt_template": "{title}: {body}"})
    assert d.type == "classification"
    assert d.render({"title": "Hi", "body": "there"}) == "Hi: there"
    with pytest.raises(FunctionInputError, match="missing field 'body'"):
        d.check_input({"title": "x"})
    with pytest.raises(FunctionDefinitionError, match="'inputs' must list"):
        parse_definition({"name": "t", "inputs": []})


def test_building_the_app_imports_no_model_library(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path\n"
        "from sutro_local.app import Settings, create_app\n"
        "from sutro_local.config import load_config\n"
        f"create_app(Settings(Path({str(tmp_path)!r}), load_config(None)))\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
