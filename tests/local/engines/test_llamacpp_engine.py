"""The llamacpp engine in-process on the shipped SmolLM2-135M GGUF (llama.cpp via the xllamacpp wheel).

Guarantees only (counts, finish reasons, seeds, sampling fields, grammar validity, truncation, errors),
never what the 135M model answers: its words vary across CPUs.
"""

from __future__ import annotations

import ctypes
import math
import signal

import jsonschema
import pytest
from sutro_local.config import ModelConfig
from sutro_local.engines import smollm2
from sutro_local.engines.base import ChunkParams, Engine, EngineInputError
from sutro_local.engines.llamacpp_engine import LlamaCppEngine, create
from sutro_local.engines.sampling import KNOWN_KEYS, parse_sampling_params

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["positive", "negative"]}, "ok": {"type": "boolean"}},
    "required": ["label", "ok"],
    "additionalProperties": False,
}
ROWS = ["hello world", "The quick brown fox jumps over the lazy dog", "refund please", "0 1 2 3"]
CONTEXT = 512


@pytest.fixture(scope="module")
def engine() -> LlamaCppEngine:
    return create(ModelConfig("smol", "llamacpp", options={
        "builtin": "smollm2", "threads": 1, "parallel": 4, "context": CONTEXT, "max_tokens": 8,
    }))  # fmt: skip


def sampled(**kw) -> ChunkParams:
    sp = {"temperature": 1.0, "max_tokens": 8} | kw.pop("sampling_params", {})
    return ChunkParams(sampling_params=sp, **kw)


def test_engine_satisfies_protocol_and_reports_counts_and_logprobs(engine):
    assert isinstance(engine, Engine)
    res = engine.run(ROWS, ChunkParams(want_logprobs=True))
    assert len(res.outputs) == len(ROWS) and all(isinstance(o, str) for o in res.outputs)
    assert all(1 <= n <= 8 for n in res.output_tokens)
    # the dry-run count is llama.cpp's own prompt count (chat template included)
    assert res.input_tokens == engine.count_tokens(ROWS)
    assert res.cumulative_logprobs is not None
    assert all(math.isfinite(lp) and lp <= 0 for lp in res.cumulative_logprobs)
    with_system = engine.run(ROWS, ChunkParams(system_prompt="Answer in one short sentence, please."))
    assert with_system.input_tokens != res.input_tokens  # the system prompt is part of the prompt
    assert engine.run(ROWS[:1], ChunkParams()).cumulative_logprobs is None


def test_every_row_carries_a_finish_reason(engine):
    res = engine.run(ROWS, ChunkParams(sampling_params={"max_tokens": 3}))
    reasons = res.carried["finish_reason"]
    assert len(reasons) == len(ROWS) and set(reasons) <= {"stop", "length"}
    for n, reason in zip(res.output_tokens, reasons):
        assert n <= 3 and (reason == "stop" or n == 3)
    assert "length" in reasons  # no row of these says all it has to say in 3 tokens


def test_greedy_output_does_not_depend_on_batching(engine):
    params = ChunkParams(sampling_params={"max_tokens": 12})
    together = engine.run(ROWS, params)
    alone = [engine.run([r], params).outputs[0] for r in ROWS]
    assert together.outputs == alone


def test_per_row_seeds_reproduce_rows_across_chunkings(engine):
    whole = engine.run(ROWS, sampled(random_seed_per_input=True, job_seed=7))
    first = engine.run(ROWS[:1], sampled(random_seed_per_input=True, job_seed=7))
    rest = engine.run(ROWS[1:], sampled(random_seed_per_input=True, job_seed=7, row_offset=1))
    assert first.outputs + rest.outputs == whole.outputs  # a resumed chunk reproduces its rows
    # the same text at two positions gets two seeds, hence (almost surely) two samples
    same = engine.run(["Tell me a story."] * 3, sampled(random_seed_per_input=True, job_seed=7))
    assert len(set(same.outputs)) > 1
    # without per-row seeds every row shares the job seed: the same prompt, the same sample
    shared = engine.run(["Tell me a story."] * 3 + ["other"], sampled(job_seed=7))
    assert len(set(shared.outputs[:3])) == 1
    # sampling_params.seed overrides the job seed
    a = engine.run(ROWS, sampled(sampling_params={"seed": 3}, random_seed_per_input=True, job_seed=1))
    b = engine.run(ROWS, sampled(sampling_params={"seed": 3}, random_seed_per_input=True, job_seed=2))
    assert a.outputs == b.outputs


def test_truncation_samplers_are_applied(engine):
    """top_k 1, a tiny top_p and min_p 1 each leave only the most likely token: sampling equals greedy."""
    prompts = ["Tell me a story.", "Name three colours."]
    greedy = engine.run(prompts, ChunkParams(sampling_params={"max_tokens": 10})).outputs
    for knob in ({"top_k": 1}, {"top_p": 1e-6}, {"min_p": 1.0}):
        res = engine.run(prompts, sampled(sampling_params={"temperature": 1.5, "max_tokens": 10, **knob},
                                          random_seed_per_input=True, job_seed=11))  # fmt: skip
        assert res.outputs == greedy, knob
    loose = engine.run(["Tell me a story."] * 4, sampled(sampling_params={"temperature": 1.5, "max_tokens": 10},
                                                       random_seed_per_input=True, job_seed=11))  # fmt: skip
    assert len(set(loose.outputs)) > 1  # while plain sampling at that temperature varies


def test_every_sampling_field_is_accepted_and_unknown_ones_refused_by_name(engine):
    assert engine.unsupported_sampling == ()
    every = {"temperature": 0.7, "top_p": 0.9, "top_k": 20, "min_p": 0.05, "max_tokens": 6, "seed": 1,
             "repetition_penalty": 1.1, "stop": ["\n\n"], "presence_penalty": 0.5, "frequency_penalty": 0.5}
    assert set(every) == set(KNOWN_KEYS)
    res = engine.run(ROWS, ChunkParams(sampling_params=every))
    assert all(n <= 6 for n in res.output_tokens)
    with pytest.raises(EngineInputError, match=r"sampling_params\.temprature is not supported"):
        engine.run(ROWS, ChunkParams(sampling_params={"temprature": 1.0}))
    with pytest.raises(EngineInputError, match=r"sampling_params\.top_p must be between"):
        engine.run(ROWS, ChunkParams(sampling_params={"top_p": 3}))


def test_stop_strings_end_rows_and_are_not_in_the_output(engine):
    res = engine.run(ROWS, ChunkParams(sampling_params={"stop": ["e", "a"], "max_tokens": 16}))
    for text, reason, n in zip(res.outputs, res.carried["finish_reason"], res.output_tokens):
        assert "e" not in text and "a" not in text
        assert reason == "stop" or n == 16


def test_json_schema_outputs_always_validate(engine):
    res = engine.run(ROWS, ChunkParams(json_schema=SCHEMA, system_prompt="Classify the sentiment as JSON.",
                                       sampling_params={"max_tokens": 64}))  # fmt: skip
    import json

    assert res.carried["finish_reason"] == ["stop"] * len(ROWS)
    for text in res.outputs:
        jsonschema.validate(json.loads(text), SCHEMA)
    sampled_res = engine.run(ROWS, sampled(json_schema=SCHEMA, sampling_params={"max_tokens": 64},
                                           random_seed_per_input=True, job_seed=3))  # fmt: skip
    for text, reason in zip(sampled_res.outputs, sampled_res.carried["finish_reason"]):
        assert reason == "stop"
        jsonschema.validate(json.loads(text), SCHEMA)


def test_a_schema_llama_cpp_cannot_compile_fails_with_its_reason(engine):
    with pytest.raises(EngineInputError, match="llama.cpp refused the request"):
        engine.run(ROWS[:1], ChunkParams(json_schema={"type": "objekt"}))
    with pytest.raises(EngineInputError, match="json_schema must be a JSON object"):
        engine.run(ROWS[:1], ChunkParams(json_schema=["not", "a", "schema"]))  # type: ignore[arg-type]


def test_long_rows_are_cut_from_the_end_or_refused(engine):
    long_row = "The parcel arrived late. " * 200  # about 1,200 tokens, over the 512 of a row
    res = engine.run([long_row, "short"], ChunkParams(truncate_rows=True, sampling_params={"max_tokens": 8}))
    assert res.input_tokens[0] + 8 <= CONTEXT
    assert res.input_tokens[0] > CONTEXT - 8 - 40  # cut to fit, not cut to nothing
    with pytest.raises(EngineInputError, match=r"row 5 has \d+ prompt tokens but model smol fits 504"):
        engine.run([long_row], ChunkParams(truncate_rows=False, row_offset=5, sampling_params={"max_tokens": 8}))
    with pytest.raises(EngineInputError, match="512-token context per row"):
        engine.run(["hi"], ChunkParams(sampling_params={"max_tokens": 512}))


def test_chat_generate_returns_the_route_shape(engine):
    settings = parse_sampling_params({"max_tokens": 5, "temperature": 1.0})
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    [a] = engine.generate([conv], settings, seeds=[5], want_logprobs=True)
    [b] = engine.generate([conv], settings, seeds=[5])
    assert a.content == b.content and a.reasoning_content is None  # same seed, same answer
    assert a.finish_reason in ("stop", "length") and 1 <= a.completion_tokens <= 5
    assert a.token_logprobs is not None and len(a.token_logprobs) == a.completion_tokens
    assert b.token_logprobs is None


def test_rows_must_be_text(engine):
    with pytest.raises(EngineInputError, match="generative models take text rows; got int"):
        engine.run([3], ChunkParams())  # type: ignore[list-item]


def _sigterm_action() -> bytes:
    buf = ctypes.create_string_buffer(512)
    assert ctypes.CDLL(None).sigaction(int(signal.SIGTERM), None, buf) == 0
    return buf.raw[:8]  # sa_handler


def test_loading_leaves_the_process_signal_handlers_alone():
    """llama.cpp installs SIGINT/SIGTERM handlers while loading; uvicorn must keep its own."""
    before = _sigterm_action()
    eng = create(ModelConfig("smol2", "llamacpp", options={"builtin": "smollm2", "threads": 1, "parallel": 1,
                                                           "context": 128}))  # fmt: skip
    assert _sigterm_action() == before
    assert eng.run(["hi"], ChunkParams(sampling_params={"max_tokens": 2})).output_tokens[0] <= 2


def test_options_and_files_are_checked_with_messages_naming_the_fix(tmp_path):
    with pytest.raises(EngineInputError, match=r"unknown keys \['batch_size'\]"):
        create(ModelConfig("m", "llamacpp", options={"path": "x.gguf", "batch_size": 8}))
    with pytest.raises(EngineInputError, match="options.path is missing; set it to a GGUF model file"):
        create(ModelConfig("m", "llamacpp"))
    with pytest.raises(EngineInputError, match="the only built-in is 'smollm2'"):
        create(ModelConfig("m", "llamacpp", options={"builtin": "llama"}))
    with pytest.raises(EngineInputError, match="is not a file"):
        create(ModelConfig("m", "llamacpp", options={"path": str(tmp_path / "missing.gguf")}))
    folder_model = tmp_path / "config.json"
    folder_model.write_text("{}")
    with pytest.raises(EngineInputError, match="is not a GGUF file .* transformers engine Hugging Face folders"):
        create(ModelConfig("m", "llamacpp", options={"path": str(folder_model)}))
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(smollm2.gguf_path().read_bytes()[:4096])  # a download cut short
    with pytest.raises(EngineInputError, match="llama.cpp could not load"):
        create(ModelConfig("m", "llamacpp", options={"path": str(truncated), "threads": 1}))
    with pytest.raises(EngineInputError, match="options.parallel must be a positive integer"):
        create(ModelConfig("m", "llamacpp", options={"builtin": "smollm2", "parallel": 0}))
