"""Reasoning split and the grammar processor's think-block handling (no model needed)."""

from __future__ import annotations

import json

import pytest
import torch
from sutro_local.engines.reasoning import reasoning_output, split_reasoning


@pytest.mark.parametrize(
    "text, opened, expected",
    [
        ("<think>sum it</think> 4", False, ("sum it", "4")),
        ("sum it</think>\n4", True, ("sum it", "4")),
        ("still going", True, ("still going", "")),
        ("plain answer", False, ("", "plain answer")),
    ],
)
def test_split_reasoning(text, opened, expected):
    assert split_reasoning(text, opened=opened) == expected


def test_reasoning_output_parses_json_content_when_it_parses():
    assert json.loads(reasoning_output('hm</think>{"a":1}', opened=True, json_content=True)) == {
        "content": {"a": 1},
        "reasoning_content": "hm",
    }
    assert json.loads(reasoning_output('hm</think>{"a":', opened=True, json_content=True)) == {
        "content": '{"a":',
        "reasoning_content": "hm",
    }


def test_grammar_waits_for_think_close_then_constrains(tiny_llama_reasoning_dir):
    from sutro_local.engines.json_grammar import JsonGrammars
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_reasoning_dir)
    vocab = len(tok)
    think_open, think_close = tok.convert_tokens_to_ids(["<think>", "</think>"])
    grammars = JsonGrammars(tok, vocab_size=vocab, stop_token_ids=[tok.eos_token_id])
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    proc = grammars.processor(schema, 2, think_tokens=(think_open, think_close), thinking=[True, False])
    word = tok("hello", add_special_tokens=False)["input_ids"][0]
    brace = tok.convert_tokens_to_ids("{")
    ids = torch.tensor([[1, word], [1, word]])
    first = proc(ids, torch.zeros(2, vocab))
    assert torch.isfinite(first[0]).all()  # row 0 is thinking: free
    allowed = torch.isfinite(first[1]).nonzero().flatten().tolist()
    assert brace in allowed and think_open in allowed and word not in allowed
    # row 0 closes its think block; row 1 starts the JSON object
    second = proc(torch.tensor([[1, word, think_close], [1, word, brace]]), torch.zeros(2, vocab))
    assert not torch.isfinite(second[0, word]) and not torch.isfinite(second[1, word])
    assert not torch.isfinite(second[0, think_open])  # <think> only allowed as the first token
