"""The contract between the sutro-local worker and its inference engines.

An engine turns one chunk of rows into outputs. The worker owns everything around it
(job lifecycle, chunking, persistence, progress, cancellation between chunks); an engine
only computes, so a chunk is the unit of progress and of resume after a crash.

Example:
    >>> class Upper:
    ...     def run(self, rows, params):
    ...         return ChunkResult(outputs=[r.upper() for r in rows],
    ...                            input_tokens=[len(r) for r in rows],
    ...                            output_tokens=[len(r) for r in rows])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ChunkParams:
    """Per-job settings an engine needs for every chunk of that job.

    ``row_offset`` is the index of the chunk's first row within the job, so per-row seeds
    (``random_seed_per_input``) stay the same when a chunk is re-run after a restart.
    """

    system_prompt: str | None = None
    json_schema: dict[str, Any] | None = None
    sampling_params: dict[str, Any] = field(default_factory=dict)
    random_seed_per_input: bool = False
    truncate_rows: bool = True
    want_logprobs: bool = False
    row_offset: int = 0
    job_seed: int = 0


@dataclass
class ChunkResult:
    """What an engine returns for a chunk: one entry per input row, in input order.

    ``outputs`` holds strings for generative engines (JSON text when a schema was given,
    ``{"content", "reasoning_content"}`` JSON for reasoning models) and lists of floats for
    embedding engines. ``cumulative_logprobs`` is None when the engine has none. ``carried`` holds
    extra per-row columns the worker writes into the results file beside ``outputs``: generative
    engines carry ``finish_reason`` ("stop", or "length" when ``max_tokens`` cut the row; such a
    row's JSON-schema output is the raw, incomplete text).
    """

    outputs: list[Any]
    input_tokens: list[int]
    output_tokens: list[int]
    cumulative_logprobs: list[float] | None = None
    carried: dict[str, list[Any]] = field(default_factory=dict)


class EngineInputError(ValueError):
    """A row or job setting the engine cannot serve (the worker fails the job with this message)."""


@runtime_checkable
class Engine(Protocol):
    """An inference engine bound to one model. Must be safe to call from the worker thread."""

    def run(self, rows: list[str], params: ChunkParams) -> ChunkResult:
        """Compute one chunk. Raise EngineInputError for bad rows/settings (fails the job)."""
        ...

    def count_tokens(self, rows: list[str]) -> list[int]:
        """Input token counts, used for dry-run cost estimates without running the model."""
        ...
