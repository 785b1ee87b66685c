"""Row store: looking up 1M input rows in a 10M-row store, ours vs a bare polars semi join of the same files.

The store is generated once into ``$SUTRO_BENCH_TMP/row-store`` (default ``/tmp/sutro-bench``): 10 files x
1M rows, each a ``sutro_row_key`` (``row_keys`` of ``"row <i>"``), a ~100-character text output, a
``finish_reason`` and a ``sutro_job_id``, written by ``RowStore.append`` (zstd, 64k-row groups). The input
is 1M keys, 90% of them stored (drawn at random over the whole store), 10% not, shuffled.

Contenders, each in its own fresh process (peak RSS is its own, read by ``/usr/bin/time``), in
interleaved rounds (the order alternates):

- bare polars: ``pl.scan_parquet(files).join(keys, on="sutro_row_key", how="semi")`` streamed, then a left
  join back to input order (``keys.join(found, how="left", maintain_order="left")``)
- ours: ``RowStore(dir).lookup(keys, aligned=True)`` (the same two steps, plus listing the folder, footer
  checks, skipping unreadable files, earliest-copy deduplication, and copying the matched strings out of
  the decoded pages)
- bare polars with the matched strings copied (``pl.concat_str([col, ""])`` after the join): the floor for
  ours' memory, as the plain semi join keeps every decoded page of string data alive (string views)

Time is the operation alone (in-process, after imports and reading the input keys). A bare
``filter(pl.col("sutro_row_key").is_in(keys))`` is not a contender: with a 1M-key Series polars 1.44
rebuilt the set per morsel (126 s and 15 GB peak RSS in a trial), so the semi join is the fair floor.

``row_keys`` is timed on 1M text rows and 1M Function (object) rows in their own processes too.

Usage::

    .venv/bin/python benchmarks/row_store.py --quick          # 100k inputs, 1M-row store, 1 round
    .venv/bin/python benchmarks/row_store.py                  # 1M inputs, 10M-row store, 3 rounds
    .venv/bin/python benchmarks/row_store.py --repeats 5 --save row_store
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    SCRATCH, Measured, command_line, machine_line, measure, save_section, table, value_range as rng,
)

OUTPUT_CHARS = 100
BARE = "bare polars: scan_parquet semi join + left join"
OURS = "ours: RowStore.lookup(keys, aligned=True)"
BARE_COPY = "bare polars, matched strings copied (ours' query alone)"
KEYS_TEXT = "row_keys: text rows"
KEYS_OBJECTS = "row_keys: Function rows (3-field objects)"
IDENTITY = {"kind": "inference", "model": "qwen-3-4b", "system_prompt": "Answer briefly", "json_schema": None,
            "sampling_params": {"temperature": 0.2}}  # fmt: skip


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load() -> str:
    """The 1/5/15-minute load average."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def build_store(folder: Path, files: int, rows_per_file: int, inputs: int) -> Path:
    """The store and the input keys, once (a marker file records the sizes); returns the inputs file."""
    import numpy as np
    import polars as pl

    from sutro_core.row_store import KEY, RowStore, row_keys

    marker = folder / "sizes.json"
    sizes = {"files": files, "rows_per_file": rows_per_file, "inputs": inputs, "output_chars": OUTPUT_CHARS}
    inputs_path = folder / "inputs.parquet"
    if marker.exists() and json.loads(marker.read_text()) == sizes:
        return inputs_path
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    store = RowStore(folder / "store")
    t0 = time.perf_counter()
    for f in range(files):
        ids = range(f * rows_per_file, (f + 1) * rows_per_file)
        keys = row_keys(IDENTITY, [f"row {i}" for i in ids])
        text = pl.Series("output", [f"answer for row {i}: " for i in ids]).str.pad_end(OUTPUT_CHARS, "x")
        store.append(pl.DataFrame({KEY: keys, "output": text, "finish_reason": ["stop"] * rows_per_file,
                                   "sutro_job_id": [f"job-{f:04d}"] * rows_per_file}))  # fmt: skip
    total = files * rows_per_file
    rng = np.random.default_rng(24)
    present = rng.choice(total, int(inputs * 0.9), replace=False)
    ids = np.concatenate([present, np.arange(total, total + inputs - len(present))])
    rng.shuffle(ids)
    pl.DataFrame({KEY: row_keys(IDENTITY, [f"row {i}" for i in ids.tolist()])}).write_parquet(inputs_path)
    marker.write_text(json.dumps(sizes))
    print(f"store built in {time.perf_counter() - t0:.0f} s: {total:,} rows in {files} files", file=sys.stderr)
    return inputs_path


def contender(name: str, folder: str, inputs: str) -> None:
    """Run one contender in this process; print its JSON report as the last line."""
    import polars as pl

    from sutro_core.row_store import KEY, RowStore, row_keys

    if name in ("keys_text", "keys_objects"):
        n = int(inputs)
        rows = ([f"customer review {i}: arrived late, works fine" for i in range(n)] if name == "keys_text"
                else [{"text": f"customer review {i}", "lang": "en", "stars": i % 5} for i in range(n)])  # fmt: skip
        before = _rss_mb()
        t0 = time.perf_counter()
        keys = row_keys(IDENTITY, rows)
        print(json.dumps({"op_s": time.perf_counter() - t0, "rss_before_mb": before, "rows": len(keys)}))
        return
    keys = pl.read_parquet(inputs)[KEY]
    before = _rss_mb()
    t0 = time.perf_counter()
    if name in ("bare", "bare_copy"):
        files = sorted(str(p) for p in Path(folder).glob("*.parquet"))
        lf = pl.scan_parquet(files).join(keys.to_frame().lazy(), on=KEY, how="semi")
        if name == "bare_copy":
            lf = lf.with_columns(pl.concat_str([pl.col(c), pl.lit("")]).alias(c)
                                 for c, t in lf.collect_schema().items() if t == pl.String)  # fmt: skip
        found = lf.collect(engine="streaming")
        merged = keys.to_frame().join(found, on=KEY, how="left", maintain_order="left")
    else:
        merged = RowStore(folder).lookup(keys, aligned=True)
    op = time.perf_counter() - t0
    assert merged[KEY].equals(keys)
    print(json.dumps({"op_s": op, "rss_before_mb": before, "found": int(merged["output"].is_not_null().sum()),
                      "rows": merged.height}))  # fmt: skip


def run(inputs: int, files: int, rows_per_file: int, repeats: int) -> str:
    """Measure the contenders in interleaved rounds; return the markdown section."""
    folder = SCRATCH / "row-store"
    inputs_path = build_store(folder, files, rows_per_file, inputs)
    store_dir = str(folder / "store")
    me = [sys.executable, str(Path(__file__).resolve()), "--contender"]
    lookups = {name: [*me, arg, store_dir, str(inputs_path)]
               for name, arg in ((BARE, "bare"), (OURS, "ours"), (BARE_COPY, "bare_copy"))}  # fmt: skip
    keyers = {KEYS_TEXT: [*me, "keys_text", "-", str(inputs)], KEYS_OBJECTS: [*me, "keys_objects", "-", str(inputs)]}
    runs: dict[str, list[Measured]] = {n: [] for n in [*lookups, *keyers]}
    loads = []
    for r in range(repeats):
        order = list(lookups) if r % 2 == 0 else list(reversed(lookups))
        before = load()
        for name in order + list(keyers):
            cmd = {**lookups, **keyers}[name]
            m = measure(cmd, timeout=1800)
            if m.returncode != 0:
                raise RuntimeError(f"{name} failed: {m.stderr_tail}")
            runs[name].append(m)
        loads.append(f"{before} -> {load()}")

    rows = []
    for name in [*lookups, *keyers]:
        ms = runs[name]
        rows.append([name, rng([m.op_s for m in ms]), f"{statistics.median(m.op_s for m in ms):.2f}",
                     rng([m.wall_s for m in ms], "{:.1f}"), rng([m.peak_rss_mb for m in ms], "{:.0f}"),
                     rng([m.peak_rss_mb - m.report.get("rss_before_mb", 0) for m in ms], "{:.0f}"),
                     ms[0].report.get("found", ms[0].report.get("rows", "-"))])  # fmt: skip
    t_ratio = [o.op_s / b.op_s for o, b in zip(runs[OURS], runs[BARE])]
    m_ratio = [o.peak_rss_mb / b.peak_rss_mb for o, b in zip(runs[OURS], runs[BARE])]
    g_ratio = [(o.peak_rss_mb - o.report["rss_before_mb"]) / (b.peak_rss_mb - b.report["rss_before_mb"])
               for o, b in zip(runs[OURS], runs[BARE])]  # fmt: skip
    t_copy = [o.op_s / b.op_s for o, b in zip(runs[OURS], runs[BARE_COPY])]
    m_copy = [o.peak_rss_mb / b.peak_rss_mb for o, b in zip(runs[OURS], runs[BARE_COPY])]
    same = {m.report["found"] for m in runs[OURS] + runs[BARE] + runs[BARE_COPY]}
    lines = [
        f"### Row store: {inputs:,} input rows against a {files * rows_per_file:,}-row store ({files} files)",
        "",
        f"Command: `{command_line()}`  ",
        f"{machine_line()} {repeats} interleaved round(s), each contender a fresh process; the box's 2 cores are "
        f"shared with other engineers' runs. Load average (1/5/15 min) per round: {'; '.join(loads)}.",
        "",
        table(["contender", "op time (s), range", "median (s)", "process wall (s)", "peak RSS (MB)",
               "growth during op (MB)", "rows found"], rows),  # fmt: skip
        "",
        f"- ours / bare, paired per round: time **{rng(t_ratio)}x** (median {statistics.median(t_ratio):.2f}x), "
        f"peak RSS **{rng(m_ratio)}x**, growth during the op {rng(g_ratio)}x (goal: <= 1.5x time and memory)",
        f"- ours / bare with strings copied: time {rng(t_copy)}x (median {statistics.median(t_copy):.2f}x), "
        f"peak RSS {rng(m_copy)}x",
        f"- all found the same rows: {'yes' if len(same) == 1 else 'NO: ' + str(sorted(same))} "
        f"({inputs * 9 // 10:,} of {inputs:,} stored)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k inputs, 1M-row store (10 files), 1 round")
    parser.add_argument("--inputs", type=int, default=None, help="input rows (default 1M, quick 100k)")
    parser.add_argument("--files", type=int, default=10, help="store files (default 10)")
    parser.add_argument("--rows-per-file", type=int, default=None, help="default 1M, quick 100k")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--save", default=None, help="also write the section to benchmarks/results/<SAVE>.md")
    parser.add_argument("--contender", nargs=3, metavar=("NAME", "STORE", "INPUTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        contender(*args.contender)
        return
    inputs = args.inputs or (100_000 if args.quick else 1_000_000)
    per_file = args.rows_per_file or (100_000 if args.quick else 1_000_000)
    section = run(inputs, args.files, per_file, args.repeats or (1 if args.quick else 3))
    print(section)
    if args.save:
        save_section(args.save, section)


if __name__ == "__main__":
    main()
