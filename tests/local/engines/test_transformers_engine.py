"""The transformers engine on a real (tiny, random-weight) Llama: real loading and generate()."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest
from sutro_local.config import ModelConfig
from sutro_local.engines.base import ChunkParams, Engine, EngineInputError
from sutro_local.engines.sampling import parse_sampling_params
from sutro_local.engines.transformers_engine import TransformersEngine, create

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["positive", "negative"]}, "ok": {"type": "boolean"}},
    "required": ["label", "ok"],
    "additionalProperties": False,
}
ROWS = ["hello world", "The quick brown fox jumps over the lazy dog", "refund please", "0 1 2 3"]


@pytest.fixture(scope="module")
def engine(tiny_llama_dir) -> TransformersEngine:
    return create(
        ModelConfig(
            "tiny-llama",
            "transformers",
            options={"path": str(tiny_llama_dir), "max_tokens": 8, "batch_size": 3, "threads": 1},
        )
    )


def sampled(**kw) -> ChunkParams:
    sp = {"temperature": 1.0, "max_tokens": 8} | kw.pop("sampling_params", {})
    return ChunkParams(sampling_params=sp, **kw)


def test_engine_satisfies_protocol_and_reports_counts_and_logprobs(engine):
    assert isinstance(engine, Engine)
    res = engine.run(ROWS, ChunkParams(want_logprobs=True, system_prompt="Be brief."))
    assert len(res.outputs) == len(ROWS) and all(isinstance(o, str) for o in res.outputs)
    assert all(1 <= n <= 8 for n in res.output_tokens)
    # the system prompt is part of the prompt, so each row costs more than it alone
    assert all(a > b for a, b in zip(res.input_tokens, engine.count_tokens(ROWS)))
    assert res.cumulative_logprobs is not None
    assert all(math.isfinite(lp) and lp < 0 for lp in res.cumulative_logprobs)
    assert engine.run(ROWS[:1], ChunkParams()).cumulative_logprobs is None


def test_greedy_output_does_not_depend_on_batching(engine):
    together = engine.run(ROWS, ChunkParams(sampling_params={"max_tokens": 6}))
    alone = [engine.run([r], ChunkParams(sampling_params={"max_tokens": 6})).outputs[0] for r in ROWS]
    assert together.outputs == alone


def test_per_row_seeds_reproduce_rows_across_chunkings(engine):
    whole = engine.run(ROWS, sampled(random_seed_per_input=True, job_seed=7))
    first = engine.run(ROWS[:1], sampled(random_seed_per_input=True, job_seed=7))
    rest = engine.run(ROWS[1:], sampled(random_seed_per_input=True, job_seed=7, row_offset=1))
    assert first.outputs + rest.outputs == whole.outputs  # a resumed chunk reproduces its rows
    other = engine.run(ROWS, sampled(random_seed_per_input=True, job_seed=8))
    assert other.outputs != whole.outputs
    # the same text at two positions gets two seeds, hence (almost surely) two samples
    same = engine.run(["same text"] * 3, sampled(random_seed_per_input=True, job_seed=7))
    assert len(set(same.outputs)) > 1
    # without per-row seeds every row shares the job seed: the same prompt, the same sample
    shared = engine.run(["same text"] * 3 + ["other"], sampled(job_seed=7))
    assert len(set(shared.outputs[:3])) == 1
    # sampling_params.seed overrides the job seed
    a = engine.run(ROWS, sampled(sampling_params={"seed": 3}, random_seed_per_input=True, job_seed=1))
    b = engine.run(ROWS, sampled(sampling_params={"seed": 3}, random_seed_per_input=True, job_seed=2))
    assert a.outputs == b.outputs


def test_sampling_does_not_depend_on_batch_size(tiny_llama_dir, engine):
    one_by_one = TransformersEngine(tiny_llama_dir, batch_size=1, max_tokens=8)
    params = sampled(random_seed_per_input=True, job_seed=21, sampling_params={"top_p": 0.9, "top_k": 40})
    assert one_by_one.run(ROWS, params).outputs == engine.run(ROWS, params).outputs


def test_json_schema_constrains_output(engine):
    res = engine.run(
        ROWS, sampled(json_schema=SCHEMA, sampling_params={"max_tokens": 40}, want_logprobs=True)
    )
    for out in res.outputs:
        jsonschema.validate(json.loads(out), SCHEMA)
    assert all(math.isfinite(lp) and lp < 0 for lp in res.cumulative_logprobs)


def test_stop_string_cuts_output_where_it_first_appears(engine):
    params = sampled(random_seed_per_input=True, job_seed=11, sampling_params={"max_tokens": 12})
    full = engine.run(ROWS[:1], params).outputs[0]
    assert len(full) > 4
    stop = full[3:5]
    cut = engine.run(
        ROWS[:1],
        sampled(random_seed_per_input=True, job_seed=11, sampling_params={"max_tokens": 12, "stop": [stop]}),
    )
    assert cut.outputs[0] == full[: full.index(stop)]
    assert cut.output_tokens[0] <= 12


def test_overlong_row_is_truncated_or_rejected(tiny_llama_dir):
    eng = TransformersEngine(tiny_llama_dir, context_window=48, max_tokens=8)
    long_row = "The quick brown fox jumps over the lazy dog. " * 20
    assert eng.count_tokens([long_row])[0] > 48
    res = eng.run(["short", long_row], ChunkParams(truncate_rows=True))
    assert res.input_tokens[1] <= 48 - 8 and res.output_tokens[1] >= 1
    with pytest.raises(EngineInputError, match=r"row 5 has \d+ prompt tokens.*truncate_rows=true"):
        eng.run(["short", long_row], ChunkParams(truncate_rows=False, row_offset=4))
    with pytest.raises(EngineInputError, match="max_tokens"):
        eng.run(["short"], ChunkParams(sampling_params={"max_tokens": 48}))


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"temprature": 1}, "sampling_params.temprature"),
        ({"temperature": -1}, "sampling_params.temperature"),
        ({"max_tokens": 0}, "sampling_params.max_tokens"),
        ({"stop": [""]}, "sampling_params.stop"),
        ({"presence_penalty": 0.5}, "sampling_params.presence_penalty"),
    ],
)
def test_bad_sampling_params_name_the_field(engine, bad, field):
    with pytest.raises(EngineInputError, match=field.replace(".", r"\.")):
        engine.run(["x"], ChunkParams(sampling_params=bad))


def test_bad_options_name_the_field(tmp_path, tiny_llama_dir):
    with pytest.raises(EngineInputError, match="options.path"):
        create(ModelConfig("m", "transformers", options={}))
    with pytest.raises(EngineInputError, match="not a Hugging Face model folder"):
        create(ModelConfig("m", "transformers", options={"path": str(tmp_path)}))
    with pytest.raises(EngineInputError, match="unknown keys"):
        create(ModelConfig("m", "transformers", options={"path": str(tiny_llama_dir), "devcie": "cpu"}))


def test_reasoning_model_returns_content_and_reasoning(tiny_llama_reasoning_dir):
    eng = TransformersEngine(tiny_llama_reasoning_dir, reasoning=True, max_tokens=6)
    settings = parse_sampling_params({"temperature": 1.0, "seed": 1, "max_tokens": 6})
    gens = eng.generate([[{"role": "user", "content": r}] for r in ROWS], settings)
    for gen in gens:
        parsed = json.loads(gen.output)
        assert set(parsed) == {"content", "reasoning_content"}
        if "</think>" not in gen.text:
            # the template opened <think> and the model never closed it: all of it is reasoning (a
            # random-weight model may write the opening tag again; that tag is markup, not reasoning)
            reasoning = gen.text.strip().removeprefix("<think>").strip()
            assert parsed == {"content": "", "reasoning_content": reasoning}
    # The engine path gives the same shape.
    out = json.loads(eng.run(ROWS[:1], sampled()).outputs[0])
    assert set(out) == {"content", "reasoning_content"}


def test_schema_output_cut_by_max_tokens_is_a_valid_prefix(engine):
    import xgrammar as xgr

    res = engine.run(ROWS[:2], ChunkParams(json_schema=SCHEMA, sampling_params={"max_tokens": 6}))
    compiled = engine._json_grammars().compile(SCHEMA)
    for out in res.outputs:
        with pytest.raises(json.JSONDecodeError):
            json.loads(out)  # 6 tokens cannot close this object...
        assert out and xgr.GrammarMatcher(compiled).accept_string(out)  # ...but what is there is valid


def test_concurrent_callers_get_the_same_results_as_sequential_ones(engine):
    from concurrent.futures import ThreadPoolExecutor

    params = sampled(random_seed_per_input=True, job_seed=5)
    expected = engine.run(ROWS, params).outputs
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(engine.run, ROWS, params) for _ in range(3)]
        futures += [pool.submit(engine.count_tokens, ROWS * 10) for _ in range(3)]
        results = [f.result() for f in futures]
    assert all(r.outputs == expected for r in results[:3])
    assert all(r == engine.count_tokens(ROWS * 10) for r in results[3:])
