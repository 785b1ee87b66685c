"""Benchmark 4: sutro-local job throughput vs the raw model call, and the latency of a 1-row job.

Same inputs, same batch size, same torch threads, on the same machine:

- embedding engine (all-MiniLM-L6-v2) vs ``SentenceTransformer.encode`` (normalised, numpy)
- transformers engine on SmolLM2-135M-Instruct (sutro-local's default chat model, its default dtype,
  greedy, ``max_tokens`` 32) vs ``model.generate`` on the same chat-templated, left-padded batches;
  compared in generated tokens per second (tokens up to each row's end-of-sequence, both sides)

The server's peak RSS (VmHWM, both models loaded and run) is reported too.

The raw call runs in its own process after loading the model (load time excluded). The job is timed
from submit to SUCCEEDED (status polled every 20 ms, so the poll adds <= 20 ms) on a server whose
model a warm-up job already loaded; it includes everything a job does: HTTP submit, inputs to
parquet, chunking, token counting, log-probabilities (the worker always records them), part files
with fsync, SQLite bookkeeping, and assembling the results file. Overhead = job time / raw time - 1.

The 1-row latency is submit -> SUCCEEDED for one row on the warm embedding model, seen two ways:
by a 10 ms status poll (the server's own latency) and by ``SutroClient.await_job_completion``
(default backoff: first poll after ~1 s).

``--llamacpp`` measures the llamacpp engine instead (section 4b), on SmolLM2's shipped GGUF file:
sutro-local jobs at 1, 4, 8 and 16 parallel slots (chunks of 2x the slots) against raw ``xllamacpp``
(the same file, slots, threads and rows as concurrent ``handle_chat_completions`` calls, no
sutro-local), and at batch 8 against the transformers engine (the default config's engine and
dtype) on the same prompts and ``max_tokens``; tokens/s = output tokens / (submit -> SUCCEEDED).
Raw runs twice per round: "plain" (llama.cpp's defaults, prompt cache on) and "same work" (the
engine's request: log-probabilities, no prompt cache). Also each server's peak RSS (one engine
per server) and a job's time to first token: a 1-row, ``max_tokens: 1`` job, submit -> SUCCEEDED,
cold (the server's first job: model load included) and warm. Everything is interleaved round by round.

``--default-engines`` (section 4c) measures what decides the default chat model's engine: the default
config's ``smollm2-135m-instruct`` served on each engine (``--default-engine llamacpp`` /
``transformers``: exactly the models a user gets, batch 8, 1 thread) plus the transformers engine in
float32 (the dtype it runs in on CPUs without bfloat16 instructions), one server each, the same rows
and ``max_tokens``; each round runs one job on each, in a rotating order, and the ratios are per round.

Usage::

    .venv/bin/python benchmarks/local_engines.py --quick      # 256 embedding rows, 16 generation rows, 2 repeats
    .venv/bin/python benchmarks/local_engines.py              # 2,048 and 64 rows, 3 repeats
    .venv/bin/python benchmarks/local_engines.py --llamacpp --gen-rows 16 --repeats 3   # section 4b
    .venv/bin/python benchmarks/local_engines.py --default-engines --repeats 4          # section 4c
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

EMBED_BATCH = 32
EMBED_CHUNK = 256
GEN_MODEL = "smollm2-135m-instruct"
GEN_BATCH = 8  # the default config's batch and chunk size
GEN_CHUNK = 8
GEN_MAX_TOKENS = 32
EOS_ID = 2  # SmolLM2's <|im_end|>
# torch's thread count is process-global, so in one sutro-local process the last engine loaded sets it
# for all; both engines and both raw calls use 1 (on the shared 2-core box also the fastest, steadiest).
THREADS = {"embedding": 1, "transformers": 1}
_WORDS = ("the delivery was late but support fixed my billing problem quickly and the app works well "
          "again after the update although the login page still crashes sometimes on my phone").split()


def texts(n: int, words: int = 20) -> list[str]:
    """Deterministic review-like rows of ``words`` words."""
    return [f"#{i} " + " ".join(_WORDS[(i * 7 + k * 3) % len(_WORDS)] for k in range(words)) for i in range(n)]


def gen_dtype() -> str:
    """The dtype the default config runs SmolLM2 in on this machine."""
    from sutro_local.engines.smollm2 import default_dtype

    return default_dtype()


def server_config(gen_chunk: int = GEN_CHUNK) -> dict:
    """The two engines under test, with the batch sizes and threads the raw calls use."""
    return {
        "models": {
            "all-minilm-l6-v2": {"engine": "embedding", "chunk_size": EMBED_CHUNK,
                                 "options": {"batch_size": EMBED_BATCH, "threads": THREADS["embedding"]}},
            GEN_MODEL: {"engine": "transformers", "chunk_size": gen_chunk,
                        "options": {"builtin": "smollm2", "batch_size": GEN_BATCH, "max_tokens": GEN_MAX_TOKENS,
                                    "threads": THREADS["transformers"], "dtype": gen_dtype()}},
        },
        "quotas": [{"job_priority": 0, "row_quota": None}, {"job_priority": 1, "row_quota": None}],
    }  # fmt: skip


# ---- raw calls (run as their own process: `local_engines.py --raw KIND N REPEATS [PATH]`) ----------


def raw_embedding(n: int, repeats: int) -> list[float]:
    """Seconds per ``SentenceTransformer.encode`` of n rows (model loaded first)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from sutro_local.engines.embedding import default_model_path

    torch.set_num_threads(THREADS["embedding"])
    model = SentenceTransformer(default_model_path(), device="cpu")
    rows = texts(n)
    model.encode(rows[:EMBED_BATCH], batch_size=EMBED_BATCH)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.encode(rows, batch_size=EMBED_BATCH, normalize_embeddings=True, convert_to_numpy=True,
                     show_progress_bar=False)  # fmt: skip
        times.append(time.perf_counter() - t0)
    return times


def raw_generate(n: int, repeats: int) -> tuple[list[float], int]:
    """Seconds per greedy ``model.generate`` over n chat-templated rows in left-padded batches, and the
    tokens generated (each row up to its end-of-sequence token)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sutro_local.engines.smollm2 import prepare

    path = str(prepare())
    torch.set_num_threads(THREADS["transformers"])
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, gen_dtype())).eval()
    prompts = [tok.apply_chat_template([{"role": "user", "content": r}], tokenize=False, add_generation_prompt=True)
               for r in texts(n)]  # fmt: skip

    def run_all() -> int:
        tokens = 0
        for i in range(0, n, GEN_BATCH):
            enc = tok(prompts[i : i + GEN_BATCH], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=GEN_MAX_TOKENS, do_sample=False,
                                     pad_token_id=tok.pad_token_id, eos_token_id=EOS_ID)  # fmt: skip
            for row in out[:, enc["input_ids"].shape[1] :].tolist():
                tokens += row.index(EOS_ID) if EOS_ID in row else len(row)
        return tokens

    run_all()  # warm-up
    times, tokens = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        tokens = run_all()
        times.append(time.perf_counter() - t0)
    return times, tokens


# ---- jobs ----------------------------------------------------------------------------------------


def job_seconds(url: str, key: str, model: str, rows: list[str], interval: float = 0.02) -> float:
    """Submit -> SUCCEEDED seconds of one job, polling its status every ``interval`` seconds."""
    return job_run(url, key, model, rows, interval)[0]


def job_run(url: str, key: str, model: str, rows: list[str], interval: float = 0.02,
            sampling: dict | None = None) -> tuple[float, int]:
    """Submit -> SUCCEEDED seconds of one job (with ``sampling`` params when given), and its output tokens."""
    import httpx

    body: dict = {"model": model, "inputs": rows, "job_priority": 1}
    if sampling is not None:
        body["sampling_params"] = sampling
    with httpx.Client(base_url=url, headers={"Authorization": f"Key {key}"}, timeout=600) as http:
        t0 = time.perf_counter()
        r = http.post("/batch-inference", json=body)
        r.raise_for_status()
        job_id = r.json()["results"]
        while True:
            status = http.get(f"/job-status/{job_id}").json()["job_status"][job_id]
            if status in ("SUCCEEDED", "FAILED", "CANCELLED"):
                break
            time.sleep(interval)
        elapsed = time.perf_counter() - t0
        job = http.get(f"/jobs/{job_id}").json()["job"]
    if status != "SUCCEEDED":
        raise RuntimeError(f"{model} job {job_id} ended {status}: {job.get('failure_reason')}")
    return elapsed, int(job.get("output_tokens") or 0)


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory so far (Linux VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def client_latency(url: str, key: str, model: str) -> float:
    """Seconds until ``SutroClient.await_job_completion`` returns for a 1-row job (default polling)."""
    from sutro_core import BatchJobRequest, SutroClient

    with SutroClient(api_key=key, api_url=url) as client:
        t0 = time.perf_counter()
        sub = client.submit_job(BatchJobRequest.for_inference(["one row"], model=model))
        client.await_job_completion(sub.job_id, timeout=120, obtain_results=False)
        return time.perf_counter() - t0


def run(n_embed: int, n_gen: int, repeats: int, gen_chunk: int = GEN_CHUNK,
        kinds: tuple[str, ...] = ("embedding", "transformers")) -> str:
    """Measure the engines in `kinds` (default both) and the 1-row latency; return the markdown section."""
    from _common import OUR_PYTHON, bench_server, command_line, machine_line, measure, save_section, table  # noqa: F401

    me = Path(__file__).resolve()
    raw: dict[str, list[float]] = {"embedding": [], "transformers": []}
    raw_tokens = 0

    def measure_raw(times: int = 1) -> None:
        nonlocal raw_tokens
        for kind, n in (("embedding", n_embed), ("transformers", n_gen)):
            if kind not in kinds:
                continue
            m = measure([OUR_PYTHON, str(me), "--raw", kind, str(n), str(times)])
            if m.returncode != 0:
                raise RuntimeError(f"raw {kind} failed:\n{m.stderr_tail}")
            raw[kind] += m.report["times"]
            raw_tokens = m.report.get("tokens", raw_tokens)

    jobs: dict[str, list[float]] = {"embedding": [], "transformers": []}
    job_tokens = 0
    with bench_server("engines", server_config(gen_chunk)) as srv:
        url, key = srv.url, srv.api_key
        for kind, model in (("embedding", "all-minilm-l6-v2"), ("transformers", GEN_MODEL)):
            if kind in kinds:  # load the models before timing
                job_seconds(url, key, model, texts(4))
        for _ in range(repeats):
            # A raw run (own process; the idle server waits) right before each job pair, and one after
            # the last: the shared machine's drift then hits both sides alike.
            measure_raw()
            if "embedding" in kinds:
                jobs["embedding"].append(job_seconds(url, key, "all-minilm-l6-v2", texts(n_embed)))
            if "transformers" in kinds:
                seconds, job_tokens = job_run(url, key, GEN_MODEL, texts(n_gen))
                jobs["transformers"].append(seconds)
        one_server = [job_seconds(url, key, "all-minilm-l6-v2", ["one row"], interval=0.01) for _ in range(5)]
        one_client = [client_latency(url, key, "all-minilm-l6-v2") for _ in range(3)]
        server_rss = peak_rss_mb(srv.proc.pid)
        measure_raw()
    rows = []
    overhead = {}
    for kind, n, label, raw_label in (
        ("embedding", n_embed, "embedding engine (MiniLM)", "SentenceTransformer.encode"),
        ("transformers", n_gen, f"transformers engine (SmolLM2-135M, {gen_dtype()}, <= {GEN_MAX_TOKENS} new tokens)",
         "model.generate"),
    ):
        if kind not in kinds:
            continue
        # Best of N on both sides: on a shared, loaded machine the least-disturbed run is the best estimate.
        r, j = min(raw[kind]), min(jobs[kind])
        overhead[kind] = j / r - 1
        rows.append([label, n, raw_label, round(n / r, 1), round(n / j, 1), f"{100 * overhead[kind]:+.0f}%"])
    # Paired: each job against the mean of the raw runs just before and after it (same machine weather).
    paired = {
        kind: sorted(j / ((raw[kind][i] + raw[kind][i + 1]) / 2) - 1 for i, j in enumerate(jobs[kind]))
        for kind in kinds
    }
    lines = [
        f"### 4. Local engines: job throughput vs the raw model call",
        "",
        f"Command: `{command_line()}`  ",
        machine_line() + f" Best of {repeats + 1} raw runs (interleaved with the jobs) and of {repeats} "
        f"job(s). Batch sizes: embedding {EMBED_BATCH} (chunks of "
        f"{EMBED_CHUNK} rows), generation {GEN_BATCH} (chunks of {gen_chunk}); torch threads: embedding "
        f"{THREADS['embedding']}, generation {THREADS['transformers']}.",
        "",
        table(["engine", "rows", "raw call", "raw rows/s", "job rows/s", "job overhead"], rows),
        "",
        "Raw runs (s): " + "; ".join(f"{k}: {', '.join(f'{t:.2f}' for t in v)}" for k, v in raw.items() if v)
        + ". Jobs (s): " + "; ".join(f"{k}: {', '.join(f'{t:.2f}' for t in v)}" for k, v in jobs.items() if v)
        + ".",
        "",
        f"- 1-row job, submit -> SUCCEEDED: **{1000 * statistics.median(one_server):.0f} ms** seen by a 10 ms "
        f"status poll (server latency, median of 5); {statistics.median(one_client):.2f} s until "
        "`SutroClient.await_job_completion` returns (its first poll comes after ~1 s, median of 3).",
        *([f"- generation, tokens/s: raw `model.generate` **{raw_tokens / min(raw['transformers']):.1f}** "
           f"({raw_tokens} tokens), sutro-local job **{job_tokens / min(jobs['transformers']):.1f}** "
           f"({job_tokens} tokens; log-probabilities and finish reasons recorded)."] if "transformers" in kinds else []),
        "- target <= 10% overhead (best of each side): "
        + ", ".join(f"{k} {100 * v:+.0f}%" for k, v in overhead.items())
        + ". Paired (each job vs the raw runs just before and after it), median [range]: "
        + "; ".join(f"{k} {100 * statistics.median(v):+.0f}% [{100 * v[0]:+.0f}% .. {100 * v[-1]:+.0f}%]"
                    for k, v in paired.items()) + ".",
        f"- sutro-local peak RSS ({' and '.join(kinds)} model(s) loaded and run): **{server_rss:.0f} MB**.",
    ]
    return "\n".join(lines) + "\n"


# ---- llamacpp (section 4b) -----------------------------------------------------------------------

LLAMA_SLOTS = (1, 4, 8, 16)  # parallel slots measured; 8 is the transformers engine's batch
LLAMA_THREADS = 1  # as the transformers engine: one thread is the steadiest on the shared 2-core box
LLAMA_CONTEXT = 1024  # tokens per slot: the bench's prompts + outputs fit with room to spare


def llama_model(slots: int, max_tokens: int) -> dict:
    """A llamacpp model on SmolLM2's shipped GGUF with ``slots`` parallel slots (chunks of 2x slots)."""
    return {"engine": "llamacpp", "chunk_size": 2 * slots,
            "options": {"builtin": "smollm2", "threads": LLAMA_THREADS, "parallel": slots,
                        "context": LLAMA_CONTEXT, "max_tokens": max_tokens}}  # fmt: skip


def raw_llamacpp(n: int, repeats: int, slots: int, max_tokens: int, same_work: bool) -> tuple[list[float], list[int]]:
    """Seconds and output tokens of n greedy chat completions, ``slots`` at a time, on raw xllamacpp.

    ``same_work``: the request the llamacpp engine sends (every sampler explicit, log-probabilities,
    no prompt cache); else llama.cpp's defaults (prompt cache on, no log-probabilities).
    """
    from concurrent.futures import ThreadPoolExecutor

    import xllamacpp as xlc

    from sutro_local.engines.smollm2 import gguf_path

    params = xlc.CommonParams()
    params.model.path = str(gguf_path())
    params.n_parallel = slots
    params.n_ctx = LLAMA_CONTEXT * slots
    params.cpuparams.n_threads = LLAMA_THREADS
    params.cpuparams_batch.n_threads = LLAMA_THREADS
    params.cache_ram_mib = 0
    params.verbosity = -1
    server = xlc.Server(params)
    base: dict = {"max_tokens": max_tokens, "temperature": 0}
    if same_work:
        from sutro_local.engines.llamacpp_engine import _request_base
        from sutro_local.engines.sampling import parse_sampling_params

        base = _request_base(parse_sampling_params({"max_tokens": max_tokens}), None, True, LLAMA_CONTEXT, False)
    rows = texts(n)
    with ThreadPoolExecutor(2 * slots) as pool:
        def run_all() -> int:
            replies = pool.map(lambda r: server.handle_chat_completions(
                {**base, "messages": [{"role": "user", "content": r}]}), rows)  # fmt: skip
            return sum(int(rep["usage"]["completion_tokens"]) for rep in replies)

        server.handle_chat_completions({**base, "messages": [{"role": "user", "content": rows[0]}]})  # warm-up
        times, tokens = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            tokens.append(run_all())
            times.append(time.perf_counter() - t0)
    return times, tokens


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def cold_job(url: str, key: str, model: str) -> float:
    """Submit -> SUCCEEDED of the server's first job on ``model`` (1 row, 1 token): load included."""
    return job_run_params(url, key, model, ["What is the capital of France?"], {"max_tokens": 1}, 0.01)[0]


def job_run_params(url: str, key: str, model: str, rows: list[str], sampling: dict,
                   interval: float = 0.1) -> tuple[float, int]:
    """``job_run`` with sampling params, polling every 0.1 s by default (a 20 ms poll costs the server a
    few % of a core, which the raw side does not pay; jobs here take seconds)."""
    return job_run(url, key, model, rows, interval, sampling)


def _span(values: list[float], digits: int = 1) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.{digits}f}" if round(lo, digits) == round(hi, digits) else f"{lo:.{digits}f}-{hi:.{digits}f}"


def run_llamacpp(n_gen: int, repeats: int, max_tokens: int) -> str:
    """Section 4b: the llamacpp engine vs raw xllamacpp and vs the transformers engine (see the docstring)."""
    import subprocess

    from _common import command_line, machine_line, table

    me = Path(__file__).resolve()
    rows = texts(n_gen)
    sampling = {"max_tokens": max_tokens}  # greedy (the default)
    loads = [loadavg()]

    def raw(kind: str, *args: object) -> tuple[list[float], list[int]]:
        proc = subprocess.run([sys.executable, str(me), "--raw", kind, str(n_gen), "1", *map(str, args)],
                              capture_output=True, text=True, timeout=3600)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"raw {kind} failed:\n{proc.stderr[-2000:]}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        return report["times"], report["tokens"]

    jobs: dict[str, list[float]] = {}  # tokens/s per contender, one entry per round
    rss: dict[str, float] = {}
    cold: dict[str, float] = {}
    warm: dict[str, list[float]] = {"llamacpp": [], "transformers": []}
    trans_cfg = {"models": {GEN_MODEL: {"engine": "transformers", "chunk_size": GEN_CHUNK,
                                        "options": {"builtin": "smollm2", "batch_size": GEN_BATCH, "threads": 1,
                                                    "max_tokens": max_tokens, "dtype": gen_dtype()}}}}  # fmt: skip
    llama_cfg = {"models": {"llama-8": llama_model(8, max_tokens)}}
    sweep_cfg = {"models": {f"llama-{p}": llama_model(p, max_tokens) for p in LLAMA_SLOTS if p != 8}}
    cached = llama_model(8, max_tokens)
    cached["options"]["prompt_cache"] = True
    sweep_cfg["models"]["llama-8-cache"] = cached
    from _common import bench_server

    with bench_server("llamacpp-8", llama_cfg) as srv_l, bench_server("transformers-8", trans_cfg) as srv_t, \
            bench_server("llamacpp-sweep", sweep_cfg) as srv_s:  # fmt: skip
        cold["llamacpp"] = cold_job(srv_l.url, srv_l.api_key, "llama-8")
        cold["transformers"] = cold_job(srv_t.url, srv_t.api_key, GEN_MODEL)
        for model in sweep_cfg["models"]:
            cold_job(srv_s.url, srv_s.api_key, model)
        for _ in range(repeats):
            for p in LLAMA_SLOTS:
                for same in (False, True):
                    t, k = raw("llamacpp", p, max_tokens, int(same))
                    jobs.setdefault(f"raw-{p}-{'same' if same else 'plain'}", []).append(k[0] / t[0])
                srv, model = (srv_l, "llama-8") if p == 8 else (srv_s, f"llama-{p}")
                secs, toks = job_run_params(srv.url, srv.api_key, model, rows, sampling)
                jobs.setdefault(f"job-{p}", []).append(toks / secs)
                if p == 8:
                    secs, toks = job_run_params(srv_s.url, srv_s.api_key, "llama-8-cache", rows, sampling)
                    jobs.setdefault("job-8-cache", []).append(toks / secs)
                    t, k = raw("transformers-tok", max_tokens)
                    jobs.setdefault("raw-transformers", []).append(k[0] / t[0])
                    secs, toks = job_run_params(srv_t.url, srv_t.api_key, GEN_MODEL, rows, sampling)
                    jobs.setdefault("job-transformers", []).append(toks / secs)
            loads.append(loadavg())
        for name, srv, model in (("llamacpp", srv_l, "llama-8"), ("transformers", srv_t, GEN_MODEL)):
            for _ in range(5):
                warm[name].append(job_run_params(srv.url, srv.api_key, model, ["What is the capital of France?"],
                                                 {"max_tokens": 1}, 0.01)[0])  # fmt: skip
            rss[name] = peak_rss_mb(srv.proc.pid)
    loads.append(loadavg())
    best = max((p for p in LLAMA_SLOTS), key=lambda p: statistics.median(jobs[f"job-{p}"]))
    out_rows = []
    for p in LLAMA_SLOTS:
        job, plain, same = jobs[f"job-{p}"], jobs[f"raw-{p}-plain"], jobs[f"raw-{p}-same"]
        over_plain = [r / j - 1 for j, r in zip(job, plain)]
        over_same = [r / j - 1 for j, r in zip(job, same)]
        out_rows.append([f"{p}{' (best)' if p == best else ''}", _span(job), _span(plain), _span(same),
                         f"{100 * statistics.median(over_plain):+.0f}% [{100 * min(over_plain):+.0f}..{100 * max(over_plain):+.0f}]",
                         f"{100 * statistics.median(over_same):+.0f}% [{100 * min(over_same):+.0f}..{100 * max(over_same):+.0f}]"])  # fmt: skip
    ratio = [lj / tj for lj, tj in zip(jobs["job-8"], jobs["job-transformers"])]
    lines = [
        "### 4b. llamacpp engine: SmolLM2-135M's shipped GGUF (Q4_1) vs raw xllamacpp and vs the transformers engine",
        "",
        f"Command: `{command_line()}`  ",
        machine_line() + f" {n_gen} rows, greedy, `max_tokens` {max_tokens}, {LLAMA_THREADS} thread, "
        f"{repeats} interleaved rounds (ranges are min-max over the rounds). Load average (1 min) during the run: "
        f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores shared with other engineers' test runs.",
        "",
        table(["slots (batch)", "sutro-local job tok/s", "raw xllamacpp tok/s (plain)", "raw tok/s (same work)",
               "raw over job, plain: median [range]", "same work"], out_rows),  # fmt: skip
        "",
        f"- batch 8, same prompts and `max_tokens`: llamacpp job **{_span(jobs['job-8'])}** tok/s, transformers "
        f"engine job **{_span(jobs['job-transformers'])}** tok/s ({gen_dtype()}; raw `model.generate` "
        f"{_span(jobs['raw-transformers'])}): llamacpp / transformers per round **{_span(ratio, 2)}x** "
        f"(goal >= 2x).",
        f"- batch 8 with `prompt_cache: true` (the shared chat-template prefix is not recomputed; rows are then "
        f"less reproducible): **{_span(jobs['job-8-cache'])}** tok/s; raw over job, plain: median "
        f"{100 * statistics.median([r / j - 1 for j, r in zip(jobs['job-8-cache'], jobs['raw-8-plain'])]):+.0f}%.",
        f"- time to first token of a job (1 row, `max_tokens` 1, submit -> SUCCEEDED): cold (first job: model load "
        f"included) llamacpp **{cold['llamacpp']:.2f} s**, transformers **{cold['transformers']:.2f} s**; warm, median "
        f"of 5: llamacpp **{1000 * statistics.median(warm['llamacpp']):.0f} ms**, transformers "
        f"**{1000 * statistics.median(warm['transformers']):.0f} ms**.",
        f"- server peak RSS (one engine per server, after its jobs): llamacpp (8 slots x {LLAMA_CONTEXT} tokens) "
        f"**{rss['llamacpp']:.0f} MB**, transformers **{rss['transformers']:.0f} MB**.",
        "- per round (tok/s): " + "; ".join(f"{k} {', '.join(f'{v:.1f}' for v in vs)}" for k, vs in jobs.items()) + ".",
    ]
    return "\n".join(lines) + "\n"


def run_default_engines(n_gen: int, repeats: int, max_tokens: int) -> str:
    """Section 4c: the default chat model on each engine (see the module docstring)."""
    from _common import bench_server, command_line, machine_line, table

    from sutro_local.engines.smollm2 import ENGINE_ENV, choose_engine, cpu_flags, has_bf16

    rows = texts(n_gen)
    sampling = {"max_tokens": max_tokens}  # greedy (the default)
    f32 = {"models": {GEN_MODEL: {"engine": "transformers", "chunk_size": GEN_CHUNK,
                                  "options": {"builtin": "smollm2", "batch_size": GEN_BATCH, "threads": 1,
                                              "dtype": "float32"}}}}  # fmt: skip
    names = ("llamacpp", "transformers", "transformers-float32")
    tps: dict[str, list[float]] = {n: [] for n in names}
    cold: dict[str, float] = {}
    loads = [loadavg()]
    with bench_server("default-llamacpp", None, env={ENGINE_ENV: "llamacpp"}) as s_l, \
            bench_server("default-transformers", None, env={ENGINE_ENV: "transformers"}) as s_t, \
            bench_server("transformers-float32", f32) as s_f:  # fmt: skip
        servers = dict(zip(names, (s_l, s_t, s_f)))
        for name, srv in servers.items():
            cold[name] = cold_job(srv.url, srv.api_key, GEN_MODEL)
        for r in range(repeats):
            order = names[r % 3:] + names[:r % 3]  # rotate: no contender always runs first or last
            for name in order:
                secs, toks = job_run_params(servers[name].url, servers[name].api_key, GEN_MODEL, rows, sampling)
                tps[name].append(toks / secs)
            loads.append(loadavg())
    vs_bf16 = [lj / tj for lj, tj in zip(tps["llamacpp"], tps["transformers"])]
    vs_f32 = [lj / tj for lj, tj in zip(tps["llamacpp"], tps["transformers-float32"])]
    flags = cpu_flags()
    lines = [
        "### 4c. The default chat model on each engine (what `choose_engine` decides by)",
        "",
        f"Command: `{command_line()}`  ",
        machine_line() + f" CPU flags: avx2 {'avx2' in flags}, avx512f {'avx512f' in flags}, bfloat16 "
        f"{has_bf16(flags)}. {n_gen} rows, greedy, `max_tokens` {max_tokens}, batch/slots 8, 1 thread, {repeats} "
        f"interleaved rounds (ranges are min-max over the rounds). Load average (1 min): "
        f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores shared with other engineers' runs. "
        f"`choose_engine()` here: **{choose_engine('auto').engine}**.",
        "",
        table(["engine (default model config)", "job tok/s", "cold first job (load + 1 token), s"],
              [[n, _span(tps[n]), f"{cold[n]:.2f}"] for n in names]),
        "",
        f"- llamacpp / transformers (default dtype, {gen_dtype()}) per round: **{_span(vs_bf16, 2)}x**; "
        f"llamacpp / transformers float32: **{_span(vs_f32, 2)}x**.",
        "- per round (tok/s): " + "; ".join(f"{k} {', '.join(f'{v:.1f}' for v in vs)}" for k, vs in tps.items()) + ".",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="256 embedding rows, 16 generation rows, 2 repeats")
    parser.add_argument("--embed-rows", type=int, default=None)
    parser.add_argument("--gen-rows", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--gen-chunk", type=int, default=GEN_CHUNK, help="worker chunk size of the generation model")
    parser.add_argument("--save", default=None, help="also write the section to benchmarks/results/<SAVE>.md")
    parser.add_argument("--only", choices=["embedding"], help="measure only this engine (and the 1-row latency)")
    parser.add_argument("--llamacpp", action="store_true", help="section 4b: the llamacpp engine (see above)")
    parser.add_argument("--max-tokens", type=int, default=64, help="--llamacpp, --default-engines: max_tokens of every row")
    parser.add_argument("--default-engines", action="store_true",
                        help="section 4c: the default chat model on each engine (see above)")
    parser.add_argument("--raw", nargs="+", help=argparse.SUPPRESS)  # internal: one raw-call process
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.raw:
        kind, n, repeats = args.raw[:3]
        if kind == "embedding":
            print(json.dumps({"times": raw_embedding(int(n), int(repeats))}))
        elif kind == "llamacpp":
            slots, max_tokens, same = (int(v) for v in args.raw[3:6])
            times, tokens = raw_llamacpp(int(n), int(repeats), slots, max_tokens, bool(same))
            print(json.dumps({"times": times, "tokens": tokens}))
        elif kind == "transformers-tok":
            global GEN_MAX_TOKENS
            GEN_MAX_TOKENS = int(args.raw[3])
            times, tokens = raw_generate(int(n), int(repeats))
            print(json.dumps({"times": times, "tokens": [tokens] * len(times)}))
        else:
            times, tokens = raw_generate(int(n), int(repeats))
            print(json.dumps({"times": times, "tokens": tokens}))
        return
    if args.llamacpp or args.default_engines:
        run_section = run_default_engines if args.default_engines else run_llamacpp
        section = run_section(args.gen_rows or 16, args.repeats or 3, args.max_tokens)
        print(section)
        if args.save:
            from _common import save_section

            save_section(args.save, section)
        return
    n_embed = args.embed_rows or (256 if args.quick else 2048)
    n_gen = args.gen_rows or (16 if args.quick else 64)
    repeats = args.repeats or (2 if args.quick else 3)
    kinds = (args.only,) if args.only else ("embedding", "transformers")
    section = run(n_embed, n_gen, repeats, args.gen_chunk, kinds)
    print(section)
    if args.save:
        from _common import save_section

        save_section(args.save, section)


if __name__ == "__main__":
    main()
