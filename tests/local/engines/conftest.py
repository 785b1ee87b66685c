"""Fixtures for engine unit tests: tiny random-weight Llama folders built once per session."""

from __future__ import annotations

import pytest

from tests.support.tiny_llama import build_tiny_llama


@pytest.fixture(scope="session")
def tiny_llama_reasoning_dir(tmp_path_factory: pytest.TempPathFactory):
    """The tiny Llama with a template that opens <think> in the generation prompt (tests only)."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-reasoning"), reasoning=True)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory):
    """Tiny random-weight Llama (tests only). Moves to tests/conftest.py once that file exists."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
