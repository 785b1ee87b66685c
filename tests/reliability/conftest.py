"""Fixtures of the reliability suite: a fault proxy in front of the session server, fast clients,
and a session tally (faults injected, inputs tried, crashes survived, duplicates found) printed at
the end of the run, which docs/reliability.md quotes.
"""

from __future__ import annotations

import atexit
import collections
import os
import shutil
import tempfile

# Some bad-input cases build Airflow operators and import Prefect in this process: keep both off the
# user's ~/airflow and ~/.prefect when this folder runs alone (the adapters' own conftests, when they
# load first, have already set these). A home made here is removed when the run ends.
for _var, _prefix in (("AIRFLOW_HOME", "sutro-rel-airflow-"), ("PREFECT_HOME", "sutro-rel-prefect-")):
    if _var not in os.environ:
        os.environ[_var] = tempfile.mkdtemp(prefix=_prefix)
        atexit.register(shutil.rmtree, os.environ[_var], ignore_errors=True)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import pytest

from sutro_core import PollPolicy, RetryPolicy

from .proxy import FaultProxy

# Retries and polls fast enough for seconds-long tests, with the same logic as the defaults.
FAST_RETRY = RetryPolicy(max_retries=4, base_delay=0.05, max_delay=0.5)
FAST_POLL = PollPolicy(initial_interval=0.05, max_interval=0.3, max_transient_errors=20)

TALLY: collections.Counter[str] = collections.Counter()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    """One line with the suite's counts (only when reliability tests ran)."""
    if TALLY:
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(TALLY.items()))
        terminalreporter.write_line(f"reliability tally: {parts}")


@pytest.fixture
def tally() -> collections.Counter[str]:
    """The session tally; tests add what they injected, tried, survived and found."""
    return TALLY


@pytest.fixture
def proxy(sutro_server, tally):
    """A FaultProxy in front of the session server; its injected faults are added to the tally."""
    with FaultProxy.for_url(sutro_server.url) as p:
        yield p
        tally["faults injected"] += p.faults_injected()


@pytest.fixture
def direct(sutro_server, sutro_key):
    """A client that bypasses the proxy: the ground truth of what the server holds."""
    from sutro_core import SutroClient

    with SutroClient(api_key=sutro_key, api_url=sutro_server.url, retry=FAST_RETRY) as client:
        yield client


@pytest.fixture
def via_proxy(proxy, sutro_key):
    """A SutroClient that talks through the fault proxy, with fast retries and polls."""
    from sutro_core import SutroClient

    with SutroClient(api_key=sutro_key, api_url=proxy.url, retry=FAST_RETRY, poll=FAST_POLL, timeout=10) as c:
        yield c
