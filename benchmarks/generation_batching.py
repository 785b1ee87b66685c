"""Per-row-seeded sampling: batched (our per-row seeded sampler) vs one generate() per row.

transformers samples from torch's global RNG, so the obvious way to give every row its own seed
(``random_seed_per_input``) is one ``generate()`` call per row. The transformers engine instead
keeps rows batched and draws each row's tokens with its own ``torch.Generator``. This prints the
time for the same rows and seeds both ways (batch_size 1 = the row-by-row baseline), and checks
that the outputs are identical.

It uses the tiny random-weight test Llama (tests only; its outputs are gibberish), so the numbers
show the per-call overhead that batching removes on CPU, not a real model's throughput.

Usage::

    .venv/bin/python benchmarks/generation_batching.py [ROWS] [MAX_TOKENS]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    """Print a markdown table: batch size, seconds, rows/s, speed-up, same outputs."""
    from support.tiny_llama import cached_tiny_llama
    from sutro_local.engines.base import ChunkParams
    from sutro_local.engines.transformers_engine import TransformersEngine

    rows_n = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    max_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    rows = [f"Review number {i}: the delivery was fast and the product works." for i in range(rows_n)]
    params = ChunkParams(
        sampling_params={"temperature": 0.8, "top_p": 0.95, "max_tokens": max_tokens},
        random_seed_per_input=True,
        job_seed=1234,
    )
    path = cached_tiny_llama()
    baseline, base_s = None, None
    print(
        f"{rows_n} rows, max_tokens {max_tokens}, per-row seeds, tiny random Llama on CPU "
        f"({os.cpu_count()} cores)\n"
    )
    print("| batch_size | seconds | rows/s | speed-up | outputs identical to batch_size 1 |")
    print("| ---: | ---: | ---: | ---: | :---: |")
    for batch in (1, 8, 32):
        engine = TransformersEngine(path, batch_size=batch, threads=1)
        engine.run(rows[:2], params)  # warm-up
        start = time.perf_counter()
        out = engine.run(rows, params).outputs
        took = time.perf_counter() - start
        if baseline is None:
            baseline, base_s = out, took
        print(f"| {batch} | {took:.2f} | {rows_n / took:.1f} | {base_s / took:.1f}x | {out == baseline} |")


if __name__ == "__main__":
    main()
