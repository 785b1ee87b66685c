"""The `echo` engine: a plumbing/benchmark engine that runs no model.

It returns each input row, or a deterministic, text-like expansion of it, at a cost of about a
microsecond per row. It exists so the real submit -> worker -> chunked parquet results path can be
measured (and tested) with millions of rows on a small machine, where any real model would be the
bottleneck. It is never a default: a model uses it only when the server config says
``engine: echo``.

Options (config ``models.<name>.options``):

- ``output_chars`` (default 0): 0 echoes each row unchanged; N > 0 makes each output exactly N
  characters: the row, then pseudo-random words from a fixed 4,096-word vocabulary. The words are
  drawn from a generator seeded by the chunk's row offset and a CRC32 of its rows, so a re-run chunk
  (resume after a restart) gives the same outputs, and outputs compress like text (~3x under zstd),
  not like repeats.

Sampling: ``max_tokens`` is honoured as N whitespace-separated words: a longer output is cut to its first N
words and its row carries ``finish_reason`` "length" (the others "stop"), as a model cut by ``max_tokens``
would; without ``max_tokens`` no ``finish_reason`` column is written. Deterministic and instant, so the
client's handling of cut rows (row status, repair rounds) is testable without a model.

Example:
    >>> from sutro_local.config import ModelConfig
    >>> eng = create(ModelConfig(name="echo", engine="echo", options={"output_chars": 24}))
    >>> out = eng.run(["row 1"], ChunkParams()).outputs[0]
    >>> len(out), out.startswith("row 1 ")
    (24, True)
"""

from __future__ import annotations

import random
import zlib

from ..config import ConfigError, ModelConfig
from .base import ChunkParams, ChunkResult

_SYLLABLES = "ka lo mi ne ru sa ti vo be da fe gi ho ju ly pe qu ri so tu wa xe yo ze".split()


def _vocabulary(size: int = 4096) -> list[str]:
    """A fixed vocabulary of 1-3 syllable pseudo-words (same on every run and machine)."""
    rng = random.Random(8)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3))))
    return sorted(words)


class EchoEngine:
    """Echo rows back (optionally expanded to a fixed length); see the module docstring."""

    def __init__(self, model: ModelConfig) -> None:
        chars = model.options.get("output_chars", 0)
        if isinstance(chars, bool) or not isinstance(chars, int) or chars < 0:
            raise ConfigError(
                f"config models.{model.name}.options.output_chars must be an integer >= 0, got {chars!r}"
            )
        self.name = model.name
        self.output_chars = chars
        self._vocab = _vocabulary() if chars else []

    def count_tokens(self, rows: list[str]) -> list[int]:
        """Whitespace-separated words, as a stand-in for tokens."""
        return [len(r.split()) for r in rows]

    def _expand(self, rows: list[str], row_offset: int) -> list[str]:
        import numpy as np

        n = self.output_chars
        seed = zlib.crc32("\n".join(rows).encode(), row_offset)  # same chunk -> same outputs
        picks = np.random.default_rng(seed).integers(0, len(self._vocab), size=(len(rows), n // 3 + 1))
        vocab = self._vocab
        out = []
        for row, idx in zip(rows, picks.tolist()):
            text = row + " " + " ".join([vocab[i] for i in idx]) if len(row) < n else row
            out.append(text[:n])
        return out

    def run(self, rows: list[str], params: ChunkParams) -> ChunkResult:
        """Outputs for one chunk: the rows themselves, or their fixed-length expansions, cut at
        ``max_tokens`` words when the job sets it."""
        outputs = self._expand(rows, params.row_offset) if self.output_chars else list(rows)
        carried: dict[str, list[str]] = {}
        limit = params.sampling_params.get("max_tokens")
        if limit is not None:
            words = [o.split() for o in outputs]
            carried["finish_reason"] = ["length" if len(w) > limit else "stop" for w in words]
            outputs = [" ".join(w[:limit]) if len(w) > limit else o for w, o in zip(words, outputs)]
        return ChunkResult(
            outputs=outputs,
            input_tokens=self.count_tokens(rows),
            output_tokens=[len(o) // 4 for o in outputs],  # ~4 characters a token, like English BPE
            carried=carried,
        )


def create(model: ModelConfig) -> EchoEngine:
    """Engine factory used by the registry."""
    return EchoEngine(model)
