"""The `echo` engine: a plumbing/benchmark engine that runs no model.

It returns each input row, or a deterministic, text-like expansion of it, at a cost of about a
microsecond per row. It exists so the real submit -> worker -> chunked parquet results path can be
measured (and tested) with millions of rows on a small machine, where any real model would be the
bottleneck. It is never a default: a model uses it only when the server config says
``engine: echo``.

Options (config ``models.<name>.options``):

- ``output_chars`` (default 0): 0 echoes each row unchanged; N > 0 makes each output exactly N
  characters: the row, then words taken from a fixed pseudo-random text at an offset derived from
  the row (CRC32), so outputs are deterministic, differ per row and compress like text.

Example:
    >>> from sutro_core.local.config import ModelConfig
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

_WORDS = (
    "the of and to in is for on that with as was at by from this be are or an it not have which their "
    "batch model output token result job row data value parquet stream pipeline request server client "
    "status queue worker chunk file record index number text label score review ticket price order"
).split()


def _corpus(size: int = 1 << 20, seed: int = 8) -> str:
    """A fixed ~1 MB text of random vocabulary words (same on every run and machine)."""
    rng = random.Random(seed)
    words: list[str] = []
    length = 0
    while length < size:
        w = rng.choice(_WORDS)
        words.append(w)
        length += len(w) + 1
    return " ".join(words)


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
        self._text = _corpus() if chars else ""
        self._span = len(self._text) - chars - 1

    def count_tokens(self, rows: list[str]) -> list[int]:
        """Whitespace-separated words, as a stand-in for tokens."""
        return [len(r.split()) for r in rows]

    def _expand(self, row: str) -> str:
        n = self.output_chars
        if len(row) >= n:
            return row[:n]
        # The offset comes from the row, so a re-run chunk (after a restart) gives the same output.
        start = zlib.crc32(row.encode()) % self._span
        return (row + " " + self._text[start : start + n])[:n]

    def run(self, rows: list[str], params: ChunkParams) -> ChunkResult:
        """Outputs for one chunk: the rows themselves, or their fixed-length expansions."""
        outputs = [self._expand(r) for r in rows] if self.output_chars else list(rows)
        return ChunkResult(
            outputs=outputs,
            input_tokens=self.count_tokens(rows),
            output_tokens=[len(o) // 4 for o in outputs],  # ~4 characters a token, like English BPE
        )


def create(model: ModelConfig) -> EchoEngine:
    """Engine factory used by the registry."""
    return EchoEngine(model)
