"""Sampling parameters checked when a request arrives: a bad value is a 400 naming the field, never a
job that fails later (or a dry run that prices 10^12 tokens).

The engines parse `sampling_params` again when they run (engines/sampling.py: unknown keys, ranges);
this adds what that parse lets through -- NaN and infinities, integers like 1e30, seeds past 64
bits, values no model can use -- and the model's own limit on `max_tokens`.

Example:
    >>> check_sampling({"max_tokens": 16, "temperature": 0.7}, max_tokens_limit=1023)
    {'max_tokens': 16, 'temperature': 0.7}
    >>> try:
    ...     check_sampling({"max_tokens": 1e30}, max_tokens_limit=1023)
    ... except ApiError as exc:
    ...     print(exc.status, exc.detail[:63])
    400 field 'sampling_params.max_tokens' must be an integer from 1 to
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .config import ModelConfig
from .engines.base import EngineInputError
from .engines.sampling import ALIASES, parse_sampling_params
from .errors import ApiError, echo

# max_tokens of a model whose context window is not known here (remote servers, embedding models);
# `models.<name>.max_output_tokens` overrides it
DEFAULT_MAX_TOKENS_LIMIT = 131_072
MAX_SEED = 2**63 - 1  # int64, what vLLM and OpenAI take
MAX_STOPS, MAX_STOP_CHARS = 64, 1000
# (lowest, highest) of each numeric field; the engines' parse adds the finer rules (top_p > 0, ...)
BOUNDS: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 10.0),
    "top_p": (0.0, 1.0),
    "min_p": (0.0, 1.0),
    "top_k": (-1, 1_000_000),
    "repetition_penalty": (0.0, 10.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
    "seed": (0, MAX_SEED),
}
INTEGER_FIELDS = ("top_k", "seed")


def _bad(field: str, detail: str) -> ApiError:
    return ApiError(400, "invalid_sampling_params", f"field {field!r} {detail}")


def check_sampling(
    params: Any, *, max_tokens_limit: int, prefix: str = "sampling_params.", model: str | None = None,
    aliases: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The sampling parameters, checked (unchanged); ApiError(400, naming the field) otherwise.

    `prefix` names the fields in errors ("sampling_params." for a job, "" for a chat completion);
    `model` is quoted in the max_tokens error; `aliases` adds spellings of this route (a chat
    completion's `max_completion_tokens`).

    Example:
        >>> check_sampling({"seed": 7}, max_tokens_limit=100, prefix="")
        {'seed': 7}
    """
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise _bad(prefix.rstrip(".") or "body", "must be an object like {\"temperature\": 0.7}")
    names = {**ALIASES, **(aliases or {})}
    for raw_key, value in params.items():
        key = names.get(raw_key, raw_key)
        field = f"{prefix}{raw_key}"
        if value is None:
            continue
        if key == "max_tokens":
            whose = f" (the limit of model {model!r})" if model else ""
            if not _is_int(value) or not 1 <= value <= max_tokens_limit:
                raise _bad(field, f"must be an integer from 1 to {max_tokens_limit}{whose}, got {echo(value)}")
        elif key in BOUNDS:
            low, high = BOUNDS[key]
            kind = "an integer" if key in INTEGER_FIELDS else "a number"
            ok = _is_int(value) if key in INTEGER_FIELDS else _is_number(value)
            if not ok or not low <= value <= high:
                span = f"{int(low)} to {int(high)}" if key in INTEGER_FIELDS else f"{low:g} to {high:g}"
                raise _bad(field, f"must be {kind} from {span}, got {echo(value)}")
        elif key == "stop":
            stops = [value] if isinstance(value, str) else value
            if isinstance(stops, list) and (len(stops) > MAX_STOPS or any(
                    isinstance(s, str) and len(s) > MAX_STOP_CHARS for s in stops)):  # fmt: skip
                raise _bad(field, f"takes at most {MAX_STOPS} strings of at most {MAX_STOP_CHARS} characters")
    try:  # unknown keys, top_p 0, repetition_penalty 0, stop types: the engines' own rules
        parse_sampling_params({(aliases or {}).get(k, k): v for k, v in params.items()}, default_max_tokens=1)
    except EngineInputError as exc:
        detail = str(exc)
        if prefix != "sampling_params.":
            detail = detail.replace("sampling_params.", prefix)
        raise ApiError(400, "invalid_sampling_params", detail) from None
    return params


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    # 8.0 is an integer (JSON has one number type); 1e30 passes this and is refused by the bounds
    return _is_number(value) and float(value).is_integer()


def max_tokens_limit(model: ModelConfig | None, loaded_context: int | None = None) -> int:
    """The largest `max_tokens` a job on `model` may ask for: `max_output_tokens` from the config,
    else the context window less one (from the loaded engine, `options.context_window`, or the model
    folder's config.json; the engines refuse max_tokens >= the window), else 131072.

    Example:
        >>> max_tokens_limit(ModelConfig("m", "transformers", options={"context_window": 1024}))
        1023
        >>> max_tokens_limit(None)
        131072
    """
    if model is None:
        return DEFAULT_MAX_TOKENS_LIMIT
    if model.max_output_tokens:
        return model.max_output_tokens
    window = loaded_context or _configured_window(model)
    return max(1, window - 1) if window else DEFAULT_MAX_TOKENS_LIMIT


def _configured_window(model: ModelConfig) -> int | None:
    opts = model.options or {}
    for key in ("context_window", "n_ctx"):
        if _is_int(opts.get(key)) and opts[key] > 1:
            return int(opts[key])
    if model.engine != "transformers":
        return None
    path = opts.get("path")
    if opts.get("builtin") == "smollm2":
        from .engines import smollm2

        path = str(smollm2.cache_dir())
    # the engine's own fallback when config.json names no window is 2048
    return _window_in_folder(path) if isinstance(path, str) else TRANSFORMERS_DEFAULT_WINDOW


TRANSFORMERS_DEFAULT_WINDOW = 2048
_WINDOWS: dict[str, int] = {}  # config.json files read once per folder (misses are read again)


def _window_in_folder(path: str) -> int:
    if path not in _WINDOWS:
        try:
            cfg = json.loads((Path(path).expanduser() / "config.json").read_text())
        except (OSError, ValueError):
            return TRANSFORMERS_DEFAULT_WINDOW  # not there yet (a builtin not prepared): read again later
        text = cfg.get("text_config") if isinstance(cfg, dict) else None
        value = (text or {}).get("max_position_embeddings") if isinstance(text, dict) else None
        value = value or (cfg.get("max_position_embeddings") if isinstance(cfg, dict) else None)
        _WINDOWS[path] = int(value) if _is_int(value) and value > 1 else TRANSFORMERS_DEFAULT_WINDOW
    return _WINDOWS[path]


def model_max_tokens(state: Any, model: str) -> int:
    """`max_tokens_limit` of a served model, from its engine's real context window once it is loaded.

    Example:
        >>> # model_max_tokens(state, "tiny-llama")  -> 1023
    """
    cfg = state.config.models.get(model)
    loaded = None
    if cfg is not None and state.engines.is_loaded(model):
        window = getattr(state.engines.get(model), "context_window", None)
        loaded = int(window) if _is_int(window) and window > 1 else None
    return max_tokens_limit(cfg, loaded)
