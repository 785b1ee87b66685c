"""Fixtures of the real-model tier: sutro-local on its DEFAULT config (no --config), once per engine.

The default config serves the embedded SmolLM2-135M-Instruct as ``smollm2-135m-instruct`` on the engine
``smollm2.choose_engine()`` picks for this CPU (llamacpp on the shipped GGUF, or transformers on the
converted bfloat16 folder). The tier runs twice: on a server left to choose (``auto``), and on one
forced to the other engine through ``SUTRO_LOCAL_DEFAULT_ENGINE``, so both branches of the choice are
tested on any machine. Each server loads the model on its first job and keeps it for its half of the tier;
pytest stops one server before it starts the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from sutro_local.engines.smollm2 import ENGINE_ENV, choose_engine

MODEL = "smollm2-135m-instruct"
CHOSEN = choose_engine("auto").engine  # what this machine's default is, by the same rule the server applies
OTHER = "transformers" if CHOSEN == "llamacpp" else "llamacpp"


@dataclass(frozen=True)
class Engine:
    """The engine a tier server serves the default model on, and whether the server chose it itself."""

    name: str
    auto: bool


@pytest.fixture(scope="session", params=[Engine(CHOSEN, True), Engine(OTHER, False)],
                ids=[f"{CHOSEN}-auto", f"{OTHER}-forced"])  # fmt: skip
def default_engine(request: pytest.FixtureRequest) -> Engine:
    return request.param


@pytest.fixture(scope="session")
def default_server(tmp_path_factory: pytest.TempPathFactory, default_engine: Engine) -> Iterator[object]:
    """sutro-local with no --config: the default models (all-minilm-l6-v2, smollm2-135m-instruct)."""
    from sutro_local.engines import smollm2
    from sutro_local.testing import LocalServer

    if default_engine.name == "transformers":  # its folder is converted once per venv, before the server
        try:  # starts, so that no test waits on a conversion (./run install does it where it is the default)
            smollm2.prepare()
        except smollm2.ModelNotInstalledError as exc:  # a checkout installed without ./run: say how to fix it
            pytest.fail(str(exc))
    setting = "auto" if default_engine.auto else default_engine.name  # never the developer's own setting
    server = LocalServer(tmp_path_factory.mktemp(f"realmodel-{default_engine.name}") / "data", None,
                         env={ENGINE_ENV: setting})  # fmt: skip
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def real_key(default_server) -> str:
    """One API key per server (its tests share the server and the loaded model)."""
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
