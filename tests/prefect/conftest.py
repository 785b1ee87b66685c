"""One Prefect test server for the whole session, and Sutro credentials blocks for the test server.

PREFECT_HOME and analytics are set before anything imports prefect, so runs stay offline and leave
nothing in the user's ~/.prefect. The server is our own PrefectTestServer rather than Prefect's
harness: it dies with this process even when this process is SIGKILLed, and its home is removed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_HOME = tempfile.mkdtemp(prefix="sutro-prefect-home-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ.setdefault("PREFECT_HOME", _HOME)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest  # noqa: E402
from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: E402

from prefect_sutro import SutroCredentials  # noqa: E402
from support.prefect_server import PrefectTestServer, drain_prefect_workers  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def prefect_harness():
    """A temporary Prefect server (SQLite) shared by every Prefect test of the session (~10-30 s to start)."""
    server = PrefectTestServer(home=os.path.join(_HOME, "server")).start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server
            drain_prefect_workers()
    finally:
        server.stop()


@pytest.fixture
def sutro_credentials(sutro_server, sutro_key) -> SutroCredentials:
    """A credentials block pointing at the session's sutro-local with this test's fresh API key."""
    return SutroCredentials(api_key=sutro_key, api_url=sutro_server.url)
