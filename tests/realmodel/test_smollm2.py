"""The real-model tier: SmolLM2-135M-Instruct on sutro-local's default config, over real HTTP.

What a 135M model can be trusted with, checked: short factual answers contain the expected word;
JSON-schema decoding always gives valid JSON and mostly the right fields; a job cut by max_tokens
marks its rows (finish_reason "length") instead of passing them off as complete JSON. Greedy
decoding (temperature 0) keeps the answers the same run to run.
"""

from __future__ import annotations

import json

import pytest

from sutro_core import BatchJobRequest

from .conftest import MODEL

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

FACTS = [
    ("What is the capital of France?", ("paris",)),
    ("What color is the sky on a clear day?", ("blue",)),
    ("How many legs does a spider have?", ("8", "eight")),
]
GREEDY = {"temperature": 0.0, "max_tokens": 32}

PEOPLE = [
    ("Alice lives in Paris.", "Alice", "Paris"),
    ("Bob moved to Berlin last year.", "Bob", "Berlin"),
    ("My friend Carla is from Madrid.", "Carla", "Madrid"),
    ("Dmitri works in Moscow.", "Dmitri", "Moscow"),
    ("Emma grew up in London.", "Emma", "London"),
    ("Kenji lives in Tokyo.", "Kenji", "Tokyo"),
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


def test_default_server_lists_the_model_for_openai_clients(real_http) -> None:
    r = real_http.get("/v1/models")
    assert r.status_code == 200
    assert [m["id"] for m in r.json()["data"]] == [MODEL]


def test_chat_completions_answer_factual_questions(real_http) -> None:
    for question, words in FACTS:
        r = real_http.post("/v1/chat/completions", json={
            "model": MODEL, "messages": [{"role": "user", "content": question}], **GREEDY,
        })  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        text = body["choices"][0]["message"]["content"]
        assert any(w in text.lower() for w in words), (question, text)
        assert body["choices"][0]["finish_reason"] in ("stop", "length")
        assert 0 < body["usage"]["completion_tokens"] <= GREEDY["max_tokens"]


def test_batch_job_answers_with_a_finish_reason_per_row(real_client) -> None:
    request = BatchJobRequest.for_inference([q for q, _ in FACTS], model=MODEL, sampling_params=GREEDY)
    df = real_client.get_job_results(_run_job(real_client, request))
    assert df.columns == ["inference_result", "finish_reason"]
    for (question, words), text in zip(FACTS, df["inference_result"].to_list()):
        assert any(w in text.lower() for w in words), (question, text)
    assert set(df["finish_reason"].to_list()) <= {"stop", "length"}
    assert df["finish_reason"][0] == "stop"  # "The capital of France is Paris." ends well before 32 tokens


def test_schema_constrained_extraction_is_valid_json_and_mostly_exact(real_client) -> None:
    request = BatchJobRequest.for_inference(
        [s for s, _, _ in PEOPLE], model=MODEL, system_prompt=EXTRACT_PROMPT, output_schema=PERSON_SCHEMA,
        sampling_params={"temperature": 0.0, "max_tokens": 48},
    )
    job_id = _run_job(real_client, request)
    raw = real_client.get_job_results(job_id, unpack_json=False)
    answers = [json.loads(text) for text in raw["inference_result"].to_list()]  # 100% valid JSON
    assert all(set(a) == {"name", "city"} for a in answers)
    assert raw["finish_reason"].to_list() == ["stop"] * len(PEOPLE)
    exact = sum((a["name"], a["city"]) == (n, c) for a, (_, n, c) in zip(answers, PEOPLE))
    assert exact >= len(PEOPLE) - 1, answers
    unpacked = real_client.get_job_results(job_id)  # the default: one column per schema field
    assert unpacked.columns[0] == "finish_reason" and set(unpacked.columns[1:]) == {"name", "city"}
    assert unpacked["name"].to_list() == [a["name"] for a in answers]


def test_a_row_cut_by_max_tokens_is_marked_and_kept_as_raw_text(real_client) -> None:
    request = BatchJobRequest.for_inference(
        [s for s, _, _ in PEOPLE[:2]], model=MODEL, system_prompt=EXTRACT_PROMPT, output_schema=PERSON_SCHEMA,
        sampling_params={"temperature": 0.0, "max_tokens": 4},
    )
    job_id = _run_job(real_client, request)
    raw = real_client.get_job_results(job_id, unpack_json=False)
    assert raw["finish_reason"].to_list() == ["length", "length"]
    for text in raw["inference_result"].to_list():
        assert text.startswith("{")  # what the model wrote, not a fake or empty object
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
    assert one.json()["output"] == {"name": "Alice", "city": "Paris"}
    assert 0 < one.json()["confidence"] <= 1
    request = BatchJobRequest.for_function("person-city", [{"text": s} for s, _, _ in PEOPLE])
    df = real_client.get_job_results(_run_job(real_client, request))
    assert {"name", "city", "confidence_score"} <= set(df.columns)
    assert df["name"].null_count() == 0 and df["city"].null_count() == 0
    exact = sum((n, c) == (en, ec) for n, c, (_, en, ec) in zip(df["name"], df["city"], PEOPLE))
    assert exact >= len(PEOPLE) - 1, df
