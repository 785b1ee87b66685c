"""The real-model tier: SmolLM2-135M-Instruct on sutro-local's default config, over real HTTP, on each engine.

The tier runs once per engine (conftest: the engine this CPU's default picks, and the other one forced
through SUTRO_LOCAL_DEFAULT_ENGINE). Greedy decoding is not bit-identical across float paths (llama.cpp's
4-bit arithmetic, torch in bfloat16 or float32, different matmul kernels), and what a 135M model "knows"
flips with them: on llama.cpp it names "L'Étoile" as France's capital, in float32 it gives a spider "two
pairs" of legs. So this tier asserts what our code guarantees, never what the model knows: every row gets
text and a finish reason; replies carry no chat-template markup; token counts add up and agree between the
chat route and a batch job; a JSON-schema job is 100% schema-valid JSON; a row cut by max_tokens says
"length"; the same request twice on one server gives the same answer; a chat completion and a one-row
batch job agree. Quality signals that only need the prompt (distinct answers to distinct questions, names
copied out of a sentence) are a majority over several prompts, never all of them.
"""

from __future__ import annotations

import json

import pytest

from sutro_core import BatchJobRequest
from sutro_local.engines.smollm2 import ENGINE_ENV, choose_engine

from .conftest import MODEL

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Short questions. Which ones the model gets right depends on the engine and the CPU's float path, so
# no test checks the answers (see the module docstring); they are distinct prompts with short replies.
QUESTIONS = [
    "What is the capital of France?",
    "What is the capital of Japan?",
    "What is the capital of Italy?",
    "How many days are in a week?",
    "What is the opposite of hot?",
    "What color is the sky on a clear day?",
    "How many legs does a spider have?",
]
# SmolLM2's chat-template tokens: decoding skips them and stops at the end of the assistant's turn.
MARKUP = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
GREEDY = {"temperature": 0.0, "max_tokens": 32}
FINISH_REASONS = {"stop", "length"}
LONG_ASK = "Write a long story about a dragon who learns to bake bread."  # no model finishes it in 4 tokens

PEOPLE = [
    ("Alice lives in Paris.", "Alice", "Paris"),
    ("Bob moved to Berlin last year.", "Bob", "Berlin"),
    ("My friend Carla is from Madrid.", "Carla", "Madrid"),
    ("Dmitri works in Moscow.", "Dmitri", "Moscow"),
    ("Emma grew up in London.", "Emma", "London"),
    ("Kenji lives in Tokyo.", "Kenji", "Tokyo"),
    ("Priya studies in Toronto.", "Priya", "Toronto"),
    ("Lucas was born in Lisbon.", "Lucas", "Lisbon"),
]
PERSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "city": {"type": "string"}},
    "required": ["name", "city"],
    "additionalProperties": False,
}
EXTRACT_PROMPT = "Extract the person's name and the city from the sentence, as JSON."


def _run_job(client, request: BatchJobRequest) -> str:
    sub = client.submit_job(request)
    client.await_job_completion(sub.job_id, obtain_results=False)
    return sub.job_id


def _chat(http, content: str, **sampling) -> dict:
    r = http.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": content}], **sampling,
    })  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()


def _assert_majority(hits: list[bool], what: object) -> None:
    """A quality signal: more than half of the prompts, never all of them (one can flip by CPU)."""
    assert sum(hits) > len(hits) / 2, (f"{sum(hits)} of {len(hits)}", what)


def _assert_a_reply(text: str, finish_reason: str, what: object) -> None:
    """What every generated row is: some text, no template markup, a finish reason we define."""
    assert text.strip(), what
    assert not any(m in text for m in MARKUP), (text, what)
    assert finish_reason in FINISH_REASONS, what


def _is_person(answer: object) -> bool:
    """Valid against PERSON_SCHEMA: an object of exactly two strings, name and city."""
    return (isinstance(answer, dict) and set(answer) == {"name", "city"}
            and all(isinstance(v, str) for v in answer.values()))  # fmt: skip


def test_default_server_lists_the_model_for_openai_clients(real_http) -> None:
    r = real_http.get("/v1/models")
    assert r.status_code == 200
    assert [m["id"] for m in r.json()["data"]] == [MODEL]


def test_serve_says_which_engine_serves_the_default_model_and_why_and_runs_it(
    default_server, default_engine, real_http
) -> None:
    _chat(real_http, QUESTIONS[0], max_tokens=1)  # the model is loaded once this returns
    log = default_server.log_path.read_text()
    said = [line for line in log.splitlines() if f"{MODEL} on the {default_engine.name} engine: " in line]
    assert len(said) == 1, log[-3000:]
    if default_engine.auto:  # the CPU rule's own reason (the test process runs the same rule)
        assert choose_engine("auto").reason in said[0]
    else:
        assert f"chosen by {ENGINE_ENV} ({default_engine.name})" in said[0]
    assert f"loading model {MODEL} (engine {default_engine.name})" in log  # what served the chat reply


def test_chat_completions_give_text_a_finish_reason_and_the_same_answer_twice(real_http) -> None:
    replies = []
    for question in QUESTIONS:
        body = _chat(real_http, question, **GREEDY)
        choice, usage = body["choices"][0], body["usage"]
        used = usage["completion_tokens"]
        _assert_a_reply(choice["message"]["content"], choice["finish_reason"], (question, body))
        assert 0 < used <= GREEDY["max_tokens"] and usage["prompt_tokens"] > 0, body
        assert usage["total_tokens"] == usage["prompt_tokens"] + used, body
        if choice["finish_reason"] == "length":  # "stop" may end on the last allowed token, "length" must
            assert used == GREEDY["max_tokens"], body
        replies.append(choice["message"]["content"])
    # Greedy on one server, one float path: asking again gives the same words.
    assert _chat(real_http, QUESTIONS[0], **GREEDY)["choices"][0]["message"]["content"] == replies[0]
    # Each question reaches the model as its own prompt: distinct questions, (mostly) distinct replies.
    _assert_majority([replies.count(r) == 1 for r in replies], replies)


def test_batch_job_gives_every_row_text_a_finish_reason_and_the_chat_routes_token_counts(
    real_http, real_client
) -> None:
    request = BatchJobRequest.for_inference(QUESTIONS, model=MODEL, sampling_params=GREEDY)
    job_id = _run_job(real_client, request)
    df = real_client.get_job_results(job_id)
    assert df.columns == ["inference_result", "finish_reason"] and df.height == len(QUESTIONS)
    for text, reason in zip(df["inference_result"], df["finish_reason"]):
        _assert_a_reply(text, reason, df)
    # One chat template and one count: a job's input tokens are its rows' prompts as the chat route counts
    # them (batching or padding adds none); its output tokens are at least one and at most max_tokens a row.
    job = real_client.get_job(job_id)
    prompts = sum(_chat(real_http, q, max_tokens=1)["usage"]["prompt_tokens"] for q in QUESTIONS)
    assert job.input_tokens == prompts, (job, prompts)
    assert len(QUESTIONS) <= job.output_tokens <= len(QUESTIONS) * GREEDY["max_tokens"], job
    # The same job again on the same server (a second job, not a reattach): the same rows, greedy.
    second = _run_job(real_client, request)
    assert second != job_id and real_client.get_job_results(second).to_dicts() == df.to_dicts()
    assert real_client.get_job(second).output_tokens == job.output_tokens


def test_a_chat_completion_and_a_batch_job_agree_on_the_same_prompt(real_http, real_client) -> None:
    # One row, as the chat route runs it: a multi-row batch left-pads its rows, which changes the
    # matrix shapes (so the float path) and may change a greedy pick; the code path is otherwise the same.
    prompt = "Give one tip for staying focused while studying."
    chat = _chat(real_http, prompt, **GREEDY)["choices"][0]
    request = BatchJobRequest.for_inference([prompt], model=MODEL, sampling_params=GREEDY)
    row = real_client.get_job_results(_run_job(real_client, request)).to_dicts()[0]
    assert row == {"inference_result": chat["message"]["content"], "finish_reason": chat["finish_reason"]}


def test_rows_cut_by_max_tokens_say_length(real_http, real_client) -> None:
    body = _chat(real_http, LONG_ASK, temperature=0.0, max_tokens=4)
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 4
    assert body["choices"][0]["message"]["content"].strip()  # what the model wrote before the cut
    rows = [LONG_ASK, "Describe the ocean in detail."]
    request = BatchJobRequest.for_inference(rows, model=MODEL, sampling_params={**GREEDY, "max_tokens": 4})
    df = real_client.get_job_results(_run_job(real_client, request))
    assert df["finish_reason"].to_list() == ["length", "length"]
    assert all(text.strip() for text in df["inference_result"].to_list())


def test_schema_job_is_all_valid_json_and_copies_most_names(real_client) -> None:
    request = BatchJobRequest.for_inference(
        [s for s, _, _ in PEOPLE], model=MODEL, system_prompt=EXTRACT_PROMPT, output_schema=PERSON_SCHEMA,
        sampling_params={"temperature": 0.0, "max_tokens": 48},
    )
    job_id = _run_job(real_client, request)
    raw = real_client.get_job_results(job_id, unpack_json=False)
    answers = [json.loads(text) for text in raw["inference_result"].to_list()]  # 100% valid JSON
    assert all(_is_person(a) for a in answers), answers  # and 100% valid against the schema
    assert raw["finish_reason"].to_list() == ["stop"] * len(PEOPLE)  # complete JSON ends the row
    # Copying a name that is in the sentence is robust (recall of facts is not); still a majority.
    _assert_majority([a["name"] == name for a, (_, name, _) in zip(answers, PEOPLE)], answers)
    _assert_majority([a["city"] == city for a, (_, _, city) in zip(answers, PEOPLE)], answers)
    unpacked = real_client.get_job_results(job_id)  # the default: one column per schema field
    assert unpacked.columns[0] == "finish_reason" and set(unpacked.columns[1:]) == {"name", "city"}
    assert unpacked["name"].to_list() == [a["name"] for a in answers]


def test_a_schema_row_cut_by_max_tokens_is_marked_and_kept_as_raw_text(real_client) -> None:
    # No object with both required fields fits in 4 tokens, whatever the model picks.
    request = BatchJobRequest.for_inference(
        [s for s, _, _ in PEOPLE[:2]], model=MODEL, system_prompt=EXTRACT_PROMPT, output_schema=PERSON_SCHEMA,
        sampling_params={"temperature": 0.0, "max_tokens": 4},
    )
    job_id = _run_job(real_client, request)
    raw = real_client.get_job_results(job_id, unpack_json=False)
    assert raw["finish_reason"].to_list() == ["length", "length"]
    for text in raw["inference_result"].to_list():
        assert text.lstrip().startswith("{")  # what the model wrote (the grammar's start), not a fake object
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
    # Unpacking does not break: nothing complete to unpack, so the raw text stays, beside its mark.
    shaped = real_client.get_job_results(job_id)
    assert shaped.columns == ["inference_result", "finish_reason"]
    assert shaped["inference_result"].to_list() == raw["inference_result"].to_list()


def test_extraction_function_runs_on_the_real_model(real_http, real_client) -> None:
    definition = {
        "name": "person-city", "type": "extraction", "model": MODEL, "inputs": ["text"],
        "instructions": EXTRACT_PROMPT, "output_schema": PERSON_SCHEMA, "rationale": False,
        "sampling_params": {"temperature": 0.0, "max_tokens": 48},
    }  # fmt: skip
    r = real_http.post("/functions", json=definition)
    assert r.status_code == 200, r.text
    one = real_http.post("/functions/person-city/run", json={"input": {"text": PEOPLE[0][0]}})
    assert one.status_code == 200, one.text
    assert _is_person(one.json()["output"]), one.json()
    assert 0 < one.json()["confidence"] <= 1
    request = BatchJobRequest.for_function("person-city", [{"text": s} for s, _, _ in PEOPLE])
    df = real_client.get_job_results(_run_job(real_client, request))
    assert {"name", "city", "confidence_score"} <= set(df.columns) and df.height == len(PEOPLE)
    assert df["name"].null_count() == 0 and df["city"].null_count() == 0  # every row complete, typed
    assert df["confidence_score"].is_between(0, 1, closed="right").all()
    _assert_majority([n == name for n, (_, name, _) in zip(df["name"], PEOPLE)], df)


def test_schema_rows_cut_by_max_tokens_are_repaired_to_ok(real_client, tmp_path) -> None:
    import polars as pl

    from sutro_core import JobSpec, load_results

    # 6 tokens cannot hold {"name": ..., "city": ...}: every row is cut; repairs go again at 12, 24, 48 tokens.
    frame = pl.DataFrame({"id": list(range(len(PEOPLE))), "text": [s for s, _, _ in PEOPLE]})
    spec = JobSpec.for_inference(frame, MODEL, column="text", system_prompt=EXTRACT_PROMPT,
                                 output_schema=PERSON_SCHEMA, sampling_params={"temperature": 0.0, "max_tokens": 6},
                                 carry_columns=["id"], repair_rounds=3, output_uri=str(tmp_path / "people.parquet"))
    outcome = real_client.run(spec, scope=("realmodel", "repair", "1"))
    df = load_results(outcome.manifest)
    main = real_client.get_job(outcome.manifest.job_ids[0])
    first_round = real_client.get_job(outcome.manifest.job_ids[1])
    assert main.num_rows == first_round.num_rows == len(PEOPLE)  # every row was cut, every row went again
    assert df["id"].to_list() == list(range(len(PEOPLE)))  # merged back in input order
    statuses = df["sutro_row_status"].to_list()
    # What our code guarantees: each row is marked, and an ok row is schema-valid JSON from the job that says so.
    ok = [s == "ok" for s in statuses]
    _assert_majority(ok, statuses)
    for row in df.filter(pl.col("sutro_row_status") == "ok").iter_rows(named=True):
        assert isinstance(row["name"], str) and isinstance(row["city"], str)
        assert row["sutro_job_id"] in outcome.manifest.job_ids[1:]
