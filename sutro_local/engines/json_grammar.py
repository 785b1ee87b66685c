"""JSON-schema constrained decoding for the transformers engine, with xgrammar.

xgrammar compiles a JSON schema against the model's vocabulary into a grammar; at each decoding
step a per-row matcher masks every token that would break the grammar, so the text is valid JSON
for the schema once the grammar completes. xgrammar is imported lazily: it is installed with
``pip install --no-deps xgrammar apache-tvm-ffi`` (its triton dependency is unused on CPU).

Example:
    >>> grammars = JsonGrammars(tokenizer, vocab_size=model.config.vocab_size)   # doctest: +SKIP
    >>> proc = grammars.processor(schema, batch_size=4)                           # doctest: +SKIP
    >>> model.generate(**enc, logits_processor=[proc])                            # doctest: +SKIP
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from .base import EngineInputError

XGRAMMAR_HINT = "pip install --no-deps xgrammar apache-tvm-ffi"


def import_xgrammar() -> Any:
    """Import xgrammar or raise EngineInputError telling how to install it."""
    try:
        import xgrammar
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EngineInputError(
            f"json_schema needs xgrammar for constrained decoding, which is not installed ({exc}); "
            f"install it with: {XGRAMMAR_HINT}, or serve the model on the llamacpp engine, whose grammar "
            "needs no xgrammar (a GGUF file; the default chat model: sutro-local serve --default-engine llamacpp)"
        ) from exc
    return xgrammar


class JsonGrammars:
    """Compiles JSON schemas for one tokenizer and caches the compiled grammars (thread-safe).

    Example:
        >>> grammars = JsonGrammars(tok, vocab_size=1024, stop_token_ids=[2])  # doctest: +SKIP
        >>> grammars.compile({"type": "object"})  # doctest: +SKIP
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        vocab_size: int,
        stop_token_ids: list[int] | None = None,
        cache_size: int = 64,
    ) -> None:
        xgr = import_xgrammar()
        self._xgr = xgr
        self.vocab_size = vocab_size
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids
        )
        self._compiler = xgr.GrammarCompiler(info)
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def compile(self, schema: dict[str, Any]) -> Any:
        """The compiled grammar for a schema; EngineInputError when xgrammar rejects the schema."""
        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        try:
            # Compact JSON (no free whitespace): a weak model cannot spend its budget on blanks.
            compiled = self._compiler.compile_json_schema(
                key, any_whitespace=False, separators=(",", ":"), strict_mode=True
            )
        except Exception as exc:  # xgrammar raises RuntimeError/ValueError subclasses
            raise EngineInputError(f"json_schema cannot be compiled for constrained decoding: {exc}") from exc
        with self._lock:
            self._cache[key] = compiled
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled

    def processor(
        self,
        schema: dict[str, Any],
        batch_size: int,
        *,
        think_tokens: tuple[int, int] | None = None,
        thinking: list[bool] | None = None,
    ) -> GrammarLogitsProcessor:
        """A fresh logits processor for one ``generate()`` call of ``batch_size`` rows."""
        return GrammarLogitsProcessor(
            self._xgr,
            self.compile(schema),
            batch_size,
            self.vocab_size,
            think_tokens=think_tokens,
            thinking=thinking,
        )


class GrammarLogitsProcessor:
    """Masks tokens that would break the grammar, row by row (one use per ``generate()`` call).

    Reasoning models: with ``think_tokens`` = (id of ``<think>``, id of ``</think>``), a row is left
    free while it thinks (its prompt opened ``<think>`` per ``thinking``, or its first token is
    ``<think>``) and is constrained from the token after ``</think>``. Rows whose grammar has
    terminated, or that received a token the grammar refuses (e.g. the pad of a finished row), are
    left unmasked: generate() pads finished rows anyway.
    """

    def __init__(
        self,
        xgr: Any,
        compiled: Any,
        batch_size: int,
        vocab_size: int,
        *,
        think_tokens: tuple[int, int] | None = None,
        thinking: list[bool] | None = None,
    ) -> None:
        self._xgr = xgr
        self._matchers = [xgr.GrammarMatcher(compiled) for _ in range(batch_size)]
        self._bitmask = xgr.allocate_token_bitmask(batch_size, vocab_size)
        self._think = think_tokens
        self._thinking = list(thinking) if (thinking and think_tokens) else [False] * batch_size
        self._dead = [False] * batch_size
        self._steps = 0
        self.vocab_size = vocab_size

    def completed(self, row: int) -> bool:
        """Whether row's output reached the end of the grammar (a complete JSON value)."""
        return self._matchers[row].is_terminated()

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        first_call = self._steps == 0
        second_call = self._steps == 1
        self._steps += 1
        rows, may_open_think = [], []
        for i, matcher in enumerate(self._matchers):
            last = int(input_ids[i, -1])
            if self._thinking[i]:
                if not first_call and last == self._think[1]:  # type: ignore[index]
                    self._thinking[i] = False
                    rows.append(i)  # constrained from the token after </think>
                continue
            if second_call and self._think is not None and last == self._think[0]:
                self._thinking[i] = True  # the model opened a think block itself
                continue
            if self._dead[i] or matcher.is_terminated():
                continue
            if not first_call and not matcher.accept_token(last):
                self._dead[i] = True
                continue
            if not matcher.is_terminated():
                rows.append(i)
                if first_call and self._think is not None:
                    may_open_think.append(i)
        if not rows:
            return scores
        self._xgr.reset_token_bitmask(self._bitmask)
        for i in rows:
            self._matchers[i].fill_next_token_bitmask(self._bitmask, i)
        for i in may_open_think:  # the first token may also open a think block
            tok = self._think[0]  # type: ignore[index]
            word = int(self._bitmask[i, tok // 32]) | (1 << (tok % 32))
            self._bitmask[i, tok // 32] = word - (1 << 32) if word >= (1 << 31) else word
        # Only constrained rows are masked. xgrammar's CUDA path needs triton; without it (or on
        # other devices) the mask is applied on a CPU copy.
        width = min(scores.shape[-1], self.vocab_size)
        if scores.device.type == "cuda" and _has_triton() and scores.dtype == torch.float32:
            self._xgr.apply_token_bitmask_inplace(
                scores, self._bitmask.to(scores.device), vocab_size=width, indices=rows
            )
        else:
            cpu = scores.detach().float().cpu()
            self._xgr.apply_token_bitmask_inplace(cpu, self._bitmask, vocab_size=width, indices=rows)
            scores = cpu.to(scores.device, scores.dtype)
        if scores.shape[-1] > width:  # padded vocab slots beyond the tokenizer: never valid
            scores[rows, width:] = float("-inf")
        return scores


def _has_triton() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True
