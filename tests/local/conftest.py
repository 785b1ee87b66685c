"""Fixtures for the sutro-local HTTP tests."""

from __future__ import annotations

import pytest

from .helpers import api_client


@pytest.fixture
def api(sutro_server, sutro_key):
    """httpx client for the session server, with this test's own key."""
    with api_client(sutro_server.url, sutro_key) as client:
        yield client


@pytest.fixture
def other_api(sutro_server):
    """httpx client with a second, unrelated key."""
    with api_client(sutro_server.url, sutro_server.create_key("other")) as client:
        yield client
