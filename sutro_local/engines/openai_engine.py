"""The `openai` engine: forwards rows to any OpenAI-compatible ``/v1/chat/completions`` server.

This is how sutro-local runs real large models and scales past one machine: point it at vLLM
(one server or a load-balanced cluster), Ollama, llama.cpp's server, or another sutro-local.
Each row is one chat completion; rows of a chunk run with bounded concurrency; a row's call is
idempotent (it only reads a model), so 429, 5xx and connection failures are retried with
backoff (``Retry-After`` honoured). A JSON schema is sent as ``response_format`` (``json_schema``,
strict); ``reasoning_content`` (vLLM) or ``reasoning`` (Ollama) in the reply gives the
``{"content", "reasoning_content"}`` output shape; token counts come from ``usage`` and
cumulative log-probabilities from ``logprobs`` when the server returns them.

Options (config ``models.<name>.options``):
    base_url         server root, e.g. http://vllm:8000 (``/v1`` is added unless the URL ends with it)
    model            the remote model name (default: this model's name)
    api_key_env      environment variable holding the remote API key (sent as ``Bearer``); or
    api_key          the key itself (prefer api_key_env: configs get committed)
    max_concurrency  requests in flight per chunk (default 8)
    timeout          seconds per request (default 120)
    max_retries      retries per row for 429/5xx/connection errors (default 5)
    retry_backoff    first retry delay in seconds, doubled each time (default 0.5; Retry-After wins)
    max_tokens       default sampling_params.max_tokens (default: the model's default_output_tokens)
    logprobs         ask for token log-probabilities (default true; some servers reject it)
    extra_body       dict merged into every request (server-specific knobs)

``count_tokens`` (dry-run estimates) has no tokenizer for the remote model: it estimates one token
per four characters.

Example:
    >>> eng = create(ModelConfig("llama-70b", "openai", options={"base_url": "http://vllm:8000",
    ...                          "model": "meta-llama/Llama-3.3-70B-Instruct"}))      # doctest: +SKIP
    >>> eng.run(["Say hi"], ChunkParams()).outputs                                   # doctest: +SKIP
    ['Hi!']
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from ..config import ModelConfig
from .base import ChunkParams, ChunkResult, EngineInputError
from .sampling import SamplingSettings, parse_sampling_params, row_seed

log = logging.getLogger(__name__)

RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524}


class RemoteModelError(RuntimeError):
    """The remote server kept failing after retries (the worker fails the job with this message)."""


@dataclass
class _Reply:
    output: str
    prompt_tokens: int
    completion_tokens: int
    logprob: float | None
    finish_reason: str | None = None  # the server's: "stop", "length" (cut by max_tokens), ...


class OpenAIEngine:
    """Runs rows as chat completions on an OpenAI-compatible server (thread-safe).

    Example:
        >>> eng = OpenAIEngine("http://127.0.0.1:8000", "qwen2.5-7b", max_concurrency=4)  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        name: str | None = None,
        api_key: str | None = None,
        max_concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        max_tokens: int = 256,
        logprobs: bool = True,
        extra_body: dict[str, Any] | None = None,
        retry_backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise EngineInputError(
                f"options.base_url {base_url!r} must be an http(s) URL, e.g. http://vllm:8000"
            )
        if max_concurrency < 1:
            raise EngineInputError("options.max_concurrency must be a positive integer")
        root = base_url.rstrip("/")
        self.url = root + ("/chat/completions" if root.endswith("/v1") else "/v1/chat/completions")
        self.model = model
        self.name = name or model
        self.max_concurrency = int(max_concurrency)
        self.max_retries = int(max_retries)
        self.retry_backoff = float(retry_backoff)
        self.max_tokens = int(max_tokens)
        self.logprobs = bool(logprobs)
        self.extra_body = dict(extra_body or {})
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            limits=httpx.Limits(
                max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
            ),
            transport=transport,
        )
        self._pool = ThreadPoolExecutor(
            max_workers=self.max_concurrency, thread_name_prefix=f"openai-{self.name}"
        )

    def close(self) -> None:
        """Release connections and threads."""
        self._pool.shutdown(wait=False)
        self._http.close()

    def count_tokens(self, rows: list[str]) -> list[int]:
        """Estimated prompt tokens (one per four characters): the remote tokenizer is not here."""
        return [max(1, (len(r) + 3) // 4) for r in rows]

    def run(self, rows: list[str], params: ChunkParams) -> ChunkResult:
        """One chat completion per row, at most ``max_concurrency`` at a time; outputs in row order."""
        settings = parse_sampling_params(params.sampling_params, default_max_tokens=self.max_tokens)
        if params.json_schema is not None and not isinstance(params.json_schema, dict):
            raise EngineInputError("json_schema must be a JSON object (a dict) describing the output")
        bodies = []
        for i, row in enumerate(rows):
            if not isinstance(row, str):
                raise EngineInputError(f"row {params.row_offset + i}: generative models take text rows")
            # Same seed semantics as the transformers engine: shared, or derived per row.
            seed = settings.seed if settings.seed is not None else params.job_seed
            if params.random_seed_per_input:
                seed = row_seed(seed, params.row_offset + i)
            bodies.append(self._body(row, params, settings, seed))
        replies = list(
            self._pool.map(
                lambda a: self._call(*a), [(b, params.row_offset + i) for i, b in enumerate(bodies)]
            )
        )
        logprobs = [r.logprob for r in replies]
        return ChunkResult(
            outputs=[r.output for r in replies],
            input_tokens=[r.prompt_tokens for r in replies],
            output_tokens=[r.completion_tokens for r in replies],
            cumulative_logprobs=logprobs if all(lp is not None for lp in logprobs) else None,  # type: ignore[arg-type]
            carried={"finish_reason": [r.finish_reason for r in replies]},
        )

    def _body(self, row: str, params: ChunkParams, s: SamplingSettings, seed: int | None) -> dict[str, Any]:
        messages = [{"role": "system", "content": params.system_prompt}] if params.system_prompt else []
        messages.append({"role": "user", "content": row})
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
        }
        # Only what the job set: OpenAI itself rejects vLLM's extras (top_k, min_p, ...).
        optional = {
            "top_p": s.top_p,
            "top_k": s.top_k,
            "min_p": s.min_p,
            "seed": seed,
            "repetition_penalty": s.repetition_penalty,
            "presence_penalty": s.presence_penalty,
            "frequency_penalty": s.frequency_penalty,
            "stop": list(s.stop) or None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if params.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": params.json_schema, "strict": True},
            }
        if self.logprobs and params.want_logprobs:
            body["logprobs"] = True
        body.update(self.extra_body)
        return body

    def _call(self, body: dict[str, Any], row: int) -> _Reply:
        delay = self.retry_backoff
        for attempt in range(self.max_retries + 1):
            wait = None
            try:
                resp = self._http.post(self.url, json=body)
            except httpx.TransportError as exc:  # connect/read errors: the call is safe to repeat
                problem, wait = f"{type(exc).__name__}: {exc}", None
            else:
                if resp.status_code == 200:
                    return _parse_reply(resp, row, json_content="response_format" in body)
                problem = f"HTTP {resp.status_code}: {_error_text(resp)}"
                if resp.status_code not in RETRY_STATUSES:
                    raise EngineInputError(
                        f"row {row}: the model server at {self.url} refused the request ({problem})"
                        + ("; check options.api_key_env" if resp.status_code in (401, 403) else "")
                    )
                wait = _retry_after(resp)
            if attempt == self.max_retries:
                raise RemoteModelError(
                    f"row {row}: the model server at {self.url} failed {attempt + 1} times; last: {problem}"
                )
            sleep = wait if wait is not None else delay * (1 + random.random())
            log.warning("row %d: %s; retrying in %.1fs", row, problem, sleep)
            time.sleep(min(sleep, 60.0))
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")


def _parse_reply(resp: httpx.Response, row: int, json_content: bool) -> _Reply:
    try:
        data = resp.json()
        choice = data["choices"][0]
        message = choice["message"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise RemoteModelError(
            f"row {row}: the model server answered without choices[0].message ({exc})"
        ) from None
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    output = content
    if reasoning is not None:
        value: Any = content
        if json_content and content:
            try:
                value = json.loads(content)
            except json.JSONDecodeError:
                value = content
        output = json.dumps({"content": value, "reasoning_content": reasoning}, ensure_ascii=False)
    usage = data.get("usage") or {}
    logprob = None
    tokens = ((choice.get("logprobs") or {}).get("content")) or None
    if tokens:
        logprob = float(sum(t.get("logprob", 0.0) for t in tokens))
    return _Reply(
        output=output,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        logprob=logprob,
        finish_reason=str(choice["finish_reason"]) if choice.get("finish_reason") is not None else None,
    )


def _error_text(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if data.get("detail"):
            return str(data["detail"])
    return json.dumps(data)[:300]


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def create(model: ModelConfig) -> OpenAIEngine:
    """Registry factory: build the engine from ``models.<name>.options`` (see module docstring).

    Example:
        >>> cfg = ModelConfig("m", "openai", options={"base_url": "http://127.0.0.1:8000"})
        >>> create(cfg)  # doctest: +SKIP
    """
    opts = dict(model.options)
    known = {
        "base_url",
        "model",
        "api_key",
        "api_key_env",
        "max_concurrency",
        "timeout",
        "max_retries",
        "retry_backoff",
        "max_tokens",
        "logprobs",
        "extra_body",
    }
    unknown = set(opts) - known
    if unknown:
        raise EngineInputError(
            f"models.{model.name}.options has unknown keys {sorted(unknown)}; allowed: {sorted(known)}"
        )
    if not opts.get("base_url"):
        raise EngineInputError(
            f"models.{model.name}.options.base_url is missing; set it to the server root, e.g. http://vllm:8000"
        )
    api_key = opts.get("api_key")
    if opts.get("api_key_env"):
        api_key = os.environ.get(str(opts["api_key_env"]))
        if not api_key:
            raise EngineInputError(
                f"models.{model.name}.options.api_key_env names {opts['api_key_env']!r}, "
                "which is not set in the server's environment"
            )
    extra = opts.get("extra_body") or {}
    if not isinstance(extra, dict):
        raise EngineInputError(f"models.{model.name}.options.extra_body must be a mapping")
    return OpenAIEngine(
        str(opts["base_url"]),
        str(opts.get("model") or model.name),
        name=model.name,
        api_key=api_key,
        max_concurrency=int(opts.get("max_concurrency", 8)),
        timeout=float(opts.get("timeout", 120)),
        max_retries=int(opts.get("max_retries", 5)),
        retry_backoff=float(opts.get("retry_backoff", 0.5)),
        max_tokens=int(opts.get("max_tokens", model.default_output_tokens)),
        logprobs=bool(opts.get("logprobs", True)),
        extra_body=extra,
    )
