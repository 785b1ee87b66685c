"""Splitting a reasoning model's text into ``reasoning_content`` and ``content``.

Reasoning models (DeepSeek-R1, Qwen3, ...) write their thinking between ``<think>`` and
``</think>`` before the answer; many chat templates open the ``<think>`` tag themselves, so the
generated text holds only the closing tag. The Sutro wire shape for such outputs is the JSON text
``{"content": ..., "reasoning_content": "..."}`` (content is the parsed object under a JSON schema).

Example:
    >>> split_reasoning("<think>add them</think>4")
    ('add them', '4')
    >>> split_reasoning("still thinking", opened=True)
    ('still thinking', '')
"""

from __future__ import annotations

import json
from typing import Any

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def split_reasoning(text: str, *, opened: bool = False) -> tuple[str, str]:
    """Return ``(reasoning, content)``. ``opened``: the prompt already ended inside ``<think>``.

    Without a closing tag, the text is all reasoning when the prompt opened the block (the model
    ran out of tokens while thinking) and all content otherwise.

    Example:
        >>> split_reasoning("no tags here")
        ('', 'no tags here')
    """
    stripped = text.lstrip()
    if stripped.startswith(THINK_OPEN):
        stripped, opened = stripped[len(THINK_OPEN) :], True
    if THINK_CLOSE in stripped:
        reasoning, content = stripped.split(THINK_CLOSE, 1)
        return reasoning.strip(), content.strip()
    if opened:
        return stripped.strip(), ""
    return "", text.strip()


def reasoning_output(text: str, *, opened: bool = False, json_content: bool = False) -> str:
    """The wire output for a reasoning model: JSON ``{"content", "reasoning_content"}``.

    With ``json_content`` the content is parsed as JSON when it parses (it is kept as text
    otherwise, e.g. when the token budget ran out mid-object).

    Example:
        >>> reasoning_output('<think>hm</think>{"a": 1}', json_content=True)
        '{"content": {"a": 1}, "reasoning_content": "hm"}'
    """
    reasoning, content = split_reasoning(text, opened=opened)
    value: Any = content
    if json_content and content:
        try:
            value = json.loads(content)
        except json.JSONDecodeError:
            value = content
    return json.dumps({"content": value, "reasoning_content": reasoning}, ensure_ascii=False)
