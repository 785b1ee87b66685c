"""One Prefect test server for the whole session, and Sutro credentials blocks for the test server.

PREFECT_HOME and analytics are set before anything imports prefect, so runs stay offline and leave
nothing in the user's ~/.prefect.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest
from prefect.testing.utilities import prefect_test_harness

from prefect_sutro import SutroCredentials


@pytest.fixture(scope="session", autouse=True)
def prefect_harness():
    """A temporary Prefect server (SQLite) shared by every Prefect test of the session (~10 s to start)."""
    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def sutro_credentials(sutro_server, sutro_key) -> SutroCredentials:
    """A credentials block pointing at the session's sutro-local with this test's fresh API key."""
    return SutroCredentials(api_key=sutro_key, api_url=sutro_server.url)
