"""Fixtures for engine unit tests: tiny random-weight Llama folders built once per session."""

from __future__ import annotations

import pytest
from support.tiny_llama import cached_tiny_llama


@pytest.fixture(scope="session")
def tiny_llama_reasoning_dir():
    """The tiny Llama with a template that opens <think> in the generation prompt (tests only)."""
    return cached_tiny_llama(reasoning=True)
