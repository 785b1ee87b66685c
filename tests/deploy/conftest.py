"""The deployment tier's harness: real PostgreSQL and Redis servers (Debian's packages, started here),
the session's S3 endpoint (moto's server mode, ``s3_server`` / ``s3_bucket`` in tests/conftest.py) and the
session's sutro-local server.

Where ``postgres`` or ``redis-server`` is missing the tests that need it skip, saying so; under
``SUTRO_REQUIRE_DEPLOY=1`` (``.ci/run`` sets it) or ``CI=true`` they fail instead.

These tests run whole deployments (six Airflow processes, Prefect workers, Dagster's multiprocess
executor) on a small shared machine: each waits generously and says what it waited for.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Prefect, imported by the Prefect test, keeps its settings and database under PREFECT_HOME: never the
# user's ~/.prefect (the adapters' own conftests, when they load first, have already set it).
if "PREFECT_HOME" not in os.environ:
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="sutro-deploy-prefect-")
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import pytest

from support.services import PostgresServer, RedisServer, postgres_bindir, require_tool


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server (trust auth on loopback) for the session; databases are made per deployment."""
    bindir = postgres_bindir()
    require_tool(f"{bindir}/postgres" if bindir else None, "postgresql", "PostgreSQL's server (postgres, initdb)")
    with PostgresServer(bindir) as pg:
        yield pg


@pytest.fixture(scope="session")
def redis_server():
    """A Redis server (no persistence) for the session: the Celery broker."""
    require_tool(shutil.which("redis-server") or "/usr/bin/redis-server", "redis-server", "redis-server")
    with RedisServer() as redis:
        yield redis
