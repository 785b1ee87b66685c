"""Model name -> engine: each engine is created lazily on first use, once, and cached.

Engine types map to factories by dotted path, so heavy libraries (torch, transformers) are only
imported when a model of that type is first used; server startup stays fast.

A factory is ``create(model: ModelConfig) -> Engine``. To add an engine type, add one line to
``ENGINE_FACTORIES`` (and the type name to ``config.ENGINE_TYPES``).

Example:
    >>> from sutro_local.config import load_config
    >>> reg = EngineRegistry(load_config(None))
    >>> reg.available_models()
    ['all-minilm-l6-v2', 'smollm2-135m-instruct']
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any, Callable

from ..config import ModelConfig, ServerConfig
from .base import Engine

log = logging.getLogger(__name__)

ENGINE_FACTORIES: dict[str, str] = {
    "embedding": "sutro_local.engines.embedding:create",
    "transformers": "sutro_local.engines.transformers_engine:create",
    "llamacpp": "sutro_local.engines.llamacpp_engine:create",
    "openai": "sutro_local.engines.openai_engine:create",
    "echo": "sutro_local.engines.echo:create",  # no model: plumbing and benchmarks
}


class UnknownModelError(KeyError):
    """A model name that the config does not serve."""

    def __init__(self, model: str, available: list[str]) -> None:
        super().__init__(model)
        self.model = model
        self.available = available

    def __str__(self) -> str:
        return f"unknown model {self.model!r}; available models: {', '.join(self.available)}"


class EngineRegistry:
    """Lazily creates and caches one engine per configured model (thread-safe)."""

    def __init__(self, config: ServerConfig) -> None:
        self._config = config
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def available_models(self) -> list[str]:
        """Names of the configured models, sorted."""
        return sorted(self._config.models)

    def model_config(self, model: str) -> ModelConfig:
        """The config of a model; raises UnknownModelError listing the available ones."""
        try:
            return self._config.models[model]
        except KeyError:
            raise UnknownModelError(model, self.available_models()) from None

    def is_loaded(self, model: str) -> bool:
        """Whether the model's engine has been created already."""
        return model in self._engines

    def get(self, model: str) -> Engine:
        """The engine for a model, created on first call (may take seconds: model load)."""
        engine = self._engines.get(model)
        if engine is not None:
            return engine
        cfg = self.model_config(model)
        with self._lock:  # one load per model even when several threads ask at once
            engine = self._engines.get(model)
            if engine is None:
                log.info("loading model %s (engine %s)", model, cfg.engine)
                engine = _factory(cfg.engine)(cfg)
                self._engines[model] = engine
        return engine


def _factory(engine_type: str) -> Callable[[ModelConfig], Any]:
    try:
        target = ENGINE_FACTORIES[engine_type]
    except KeyError:
        raise ValueError(
            f"engine type {engine_type!r} has no factory; known: {sorted(ENGINE_FACTORIES)}"
        ) from None
    module_name, func = target.split(":")
    return getattr(importlib.import_module(module_name), func)
