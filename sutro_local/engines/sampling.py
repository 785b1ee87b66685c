"""Sampling parameters and per-row seeds shared by the generative engines.

Jobs carry ``sampling_params`` as a free-form dict (the hosted API passes it to vLLM). This module
checks it once, with errors that name the field and the fix, and turns job seeds into per-row
seeds that do not depend on how rows were chunked (so a resumed job reproduces its outputs).

Example:
    >>> s = parse_sampling_params({"temperature": 0.7, "max_tokens": 16}, default_max_tokens=256)
    >>> (s.temperature, s.max_tokens, s.do_sample)
    (0.7, 16, True)
    >>> row_seed(42, 3) == row_seed(42, 3)
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .base import EngineInputError

# Keys every generative engine understands; engines may reject some (see ``unsupported``).
KNOWN_KEYS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "max_tokens",
    "seed",
    "repetition_penalty",
    "stop",
    "presence_penalty",
    "frequency_penalty",
)
# Accepted spelling variants -> canonical key.
ALIASES = {"max_new_tokens": "max_tokens", "stop_sequences": "stop"}


@dataclass(frozen=True)
class SamplingSettings:
    """Validated sampling parameters. ``temperature == 0`` means greedy (the default).

    Example:
        >>> SamplingSettings(max_tokens=8).do_sample
        False
    """

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)

    @property
    def do_sample(self) -> bool:
        """Whether tokens are sampled (temperature > 0) rather than picked greedily."""
        return self.temperature > 0


def parse_sampling_params(
    params: Mapping[str, Any] | None,
    *,
    default_max_tokens: int = 256,
    unsupported: tuple[str, ...] = (),
) -> SamplingSettings:
    """Validate a job's ``sampling_params``; raise EngineInputError naming the bad field and the fix.

    Example:
        >>> parse_sampling_params({"stop": "\\n"}).stop
        ('\\n',)
        >>> parse_sampling_params({"temprature": 1})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        sutro_local.engines.base.EngineInputError: sampling_params.temprature is not supported; ...
    """
    raw: dict[str, Any] = {}
    for key, value in dict(params or {}).items():
        key = ALIASES.get(key, key)
        if key not in KNOWN_KEYS or key in unsupported:
            allowed = ", ".join(k for k in KNOWN_KEYS if k not in unsupported)
            raise EngineInputError(f"sampling_params.{key} is not supported; use one of: {allowed}")
        if value is not None:
            raw[key] = value
    out: dict[str, Any] = {}
    out["max_tokens"] = _int(raw.get("max_tokens", default_max_tokens), "max_tokens", minimum=1)
    out["temperature"] = _float(raw.get("temperature", 0.0), "temperature", minimum=0.0)
    if "top_p" in raw:
        out["top_p"] = _float(raw["top_p"], "top_p", minimum=0.0, maximum=1.0)
        if out["top_p"] == 0:
            raise EngineInputError("sampling_params.top_p must be in (0, 1]; use 1 to disable it")
    if "top_k" in raw:
        top_k = _int(raw["top_k"], "top_k", minimum=-1)
        out["top_k"] = None if top_k <= 0 else top_k  # vLLM spells "disabled" as -1 or 0
    if "min_p" in raw:
        out["min_p"] = _float(raw["min_p"], "min_p", minimum=0.0, maximum=1.0) or None
    if "seed" in raw:
        out["seed"] = _int(raw["seed"], "seed", minimum=0)
    if "repetition_penalty" in raw:
        rp = _float(raw["repetition_penalty"], "repetition_penalty", minimum=0.0)
        if rp == 0:
            raise EngineInputError("sampling_params.repetition_penalty must be > 0; use 1.0 to disable it")
        out["repetition_penalty"] = rp
    for key in ("presence_penalty", "frequency_penalty"):
        if key in raw:
            out[key] = _float(raw[key], key, minimum=-2.0, maximum=2.0)
    if "stop" in raw:
        stop = raw["stop"]
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) and s for s in stops):
            raise EngineInputError(
                "sampling_params.stop must be a non-empty string or a list of non-empty strings"
            )
        out["stop"] = tuple(stops)
    return SamplingSettings(**out)


def row_seed(job_seed: int, row_index: int) -> int:
    """A seed for one row, fixed by the job seed and the row's index in the job (not its chunk).

    Example:
        >>> row_seed(0, 0) != row_seed(0, 1)
        True
    """
    digest = hashlib.sha256(f"{int(job_seed)}:{int(row_index)}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _int(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise EngineInputError(f"sampling_params.{name} must be an integer, got {value!r}")
    if value < minimum:
        raise EngineInputError(f"sampling_params.{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _float(value: Any, name: str, *, minimum: float, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EngineInputError(f"sampling_params.{name} must be a number, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise EngineInputError(f"sampling_params.{name} must be {bound}, got {value!r}")
    return float(value)
