"""The background worker: runs jobs chunk by chunk, durably, in priority order.

One thread. Each step advances the most urgent runnable job (priority 0 before 1, then FIFO) by
one chunk, so a new interactive job overtakes a long batch job at the next chunk boundary. After
a chunk the engine's outputs are written as an atomic parquet part file and the chunk (rows,
tokens) is recorded in SQLite in one transaction; a restart after `kill -9` therefore resumes
each unfinished job from its last finished chunk. A model's `min_seconds_per_chunk` delays only
that job's next chunk (other jobs keep running). Cancellation is checked between chunks.

Example:
    >>> # start_worker(state)  -> Worker(state).start(); state.wake_worker() after a submit
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .config import DEFAULT_EMBEDDING_MODEL, ModelConfig
from .engines.base import ChunkParams, ChunkResult, EngineInputError
from .functions import parse_definition
from .results import RESULTS_ROW_GROUP, build_default_projection
from .state import ServerState, acquire_worker_lock
from .store import ACTIVE_STATUSES, JobRow, utcnow

#: Rows per parquet row group in results files (clients stream them a group at a time).
log = logging.getLogger(__name__)



class Worker(threading.Thread):
    """Advances jobs; see the module docstring. `wake()` after a submit/cancel, `stop()` to end."""

    def __init__(self, state: ServerState) -> None:
        super().__init__(name="sutro-local-worker", daemon=True)
        self.state = state
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._not_before: dict[str, float] = {}
        self._inputs: OrderedDict[str, list[str]] = OrderedDict()

    def wake(self) -> None:
        """Re-check the queue now."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current step."""
        self._stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        """Requeue interrupted jobs, then loop: advance one job, or sleep until woken."""
        requeued = self.state.store.requeue_interrupted()
        if requeued:
            log.info("resuming %d interrupted job(s): %s", len(requeued), requeued)
        while not self._stopping.is_set():
            try:
                worked = self._step()
            except Exception:  # never let one bad job kill the worker
                log.exception("worker step failed")
                worked = False
            if not worked:
                self._wake.wait(self._idle_wait())
                self._wake.clear()

    def _idle_wait(self) -> float:
        if not self._not_before:
            return 1.0
        return max(0.01, min(1.0, min(self._not_before.values()) - time.monotonic()))

    def _step(self) -> bool:
        now = time.monotonic()
        for job in self.state.store.runnable_jobs():
            if job.status == "CANCELLING":
                self._cancelled(job)
                return True
            if self._not_before.get(job.job_id, 0.0) > now:
                continue
            self._not_before.pop(job.job_id, None)
            self._advance(job)
            return True
        return False

    # ---- one step of one job ---------------------------------------------------------
    def _advance(self, job: JobRow) -> None:
        store = self.state.store
        try:
            if job.status in ("QUEUED", "STARTING"):
                store.transition(job.job_id, ("QUEUED", "STARTING"), "STARTING", started_at=job.started_at or utcnow())
                self._engine(job)  # load the model while the job reads STARTING
                store.transition(job.job_id, ("STARTING",), "RUNNING")
                return
            engine = self._engine(job)
            if job.dry_run:
                self._estimate(job, engine)
            else:
                self._run_chunk(job, engine)
        except EngineInputError as exc:
            self._fail(job, str(exc))
        except Exception as exc:
            log.exception("job %s failed", job.job_id)
            self._fail(job, f"{type(exc).__name__}: {exc}")

    def _engine(self, job: JobRow) -> Any:
        fn = job.params.get("function")
        if fn:
            return self.state.functions.runner(parse_definition(fn))
        return self.state.engines.get(job.model)

    def _model_config(self, job: JobRow) -> ModelConfig:
        fn = job.params.get("function")
        name = (fn.get("model") or DEFAULT_EMBEDDING_MODEL) if fn else job.model
        return self.state.config.models.get(name) or ModelConfig(name=name, engine="embedding")

    def _chunk_params(self, job: JobRow, row_offset: int) -> ChunkParams:
        p = job.params
        return ChunkParams(
            system_prompt=p.get("system_prompt"),
            json_schema=p.get("json_schema"),
            sampling_params=dict(p.get("sampling_params") or {}),
            random_seed_per_input=bool(p.get("random_seed_per_input")),
            truncate_rows=bool(p.get("truncate_rows")),
            want_logprobs=True,  # results may be asked for with include_cumulative_logprobs later
            row_offset=row_offset,
            job_seed=int(p.get("job_seed", 0)),
        )

    def _rows(self, job: JobRow) -> list[str]:
        rows = self._inputs.get(job.job_id)
        if rows is None:
            import pyarrow.parquet as pq

            rows = pq.read_table(self.state.job_dir(job.job_id) / "inputs.parquet", columns=["inputs"])[
                "inputs"
            ].to_pylist()
            self._inputs[job.job_id] = rows
            while len(self._inputs) > 4:
                self._inputs.popitem(last=False)
        return rows

    def _run_chunk(self, job: JobRow, engine: Any) -> None:
        started = time.monotonic()
        size = int(job.params.get("chunk_size") or self.state.config.chunk_size)
        index = self.state.store.count_chunks(job.job_id)
        start, end = index * size, min(index * size + size, job.num_rows)
        if start >= job.num_rows:
            self._complete(job)
            return
        rows = self._rows(job)[start:end]
        result = engine.run(rows, self._chunk_params(job, start))
        _check_result(result, len(rows))
        _write_part(self._parts_dir(job) / f"part-{index:06d}.parquet", result)
        in_tok, out_tok = sum(result.input_tokens), sum(result.output_tokens)
        cost = self._model_config(job).cost(job.input_tokens + in_tok, job.output_tokens + out_tok)
        self.state.store.record_chunk(job.job_id, index, start, end, in_tok, out_tok, cost)
        throttle = self._model_config(job).min_seconds_per_chunk
        if throttle > 0:
            self._not_before[job.job_id] = started + throttle
        elif end >= job.num_rows:
            self._complete(self.state.store.get_job(job.job_id) or job)

    def _parts_dir(self, job: JobRow) -> Path:
        return self.state.job_dir(job.job_id) / "parts"

    def _estimate(self, job: JobRow, engine: Any) -> None:
        rows = self._rows(job)
        cfg = self._model_config(job)
        in_tok = sum(sum(engine.count_tokens(rows[i : i + 256])) for i in range(0, len(rows), 256))
        per_row = 0
        if cfg.engine != "embedding":
            per_row = _output_tokens_per_row(job, cfg)
        estimate = cfg.cost(in_tok, per_row * job.num_rows)
        if not self.state.store.transition(job.job_id, ACTIVE_STATUSES, "SUCCEEDED", cost_estimate=estimate,
                                           finished_at=utcnow(), job_cost=0.0):  # fmt: skip
            self._cancelled(job)
        log.info("job %s dry run: %d input tokens, estimate $%s", job.job_id, in_tok, estimate)

    def _complete(self, job: JobRow) -> None:
        """Assemble the results file from the parts (atomically), then mark SUCCEEDED."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        jdir = self.state.job_dir(job.job_id)
        chunks = self.state.store.finished_chunks(job.job_id)
        parts = pa.concat_tables(
            [pq.read_table(self._parts_dir(job) / f"part-{c['chunk_index']:06d}.parquet") for c in chunks],
            promote_options="default",
        )
        inputs = pq.read_table(jdir / "inputs.parquet")
        if parts.num_rows != job.num_rows:
            raise RuntimeError(f"assembled {parts.num_rows} result rows for {job.num_rows} inputs")
        cols: dict[str, Any] = {"inputs": inputs["inputs"], "outputs": parts["outputs"]}
        if "cumulative_logprobs" in parts.column_names:
            cols["cumulative_logprobs"] = parts["cumulative_logprobs"]
        id_col = job.params.get("id_column")
        if id_col and id_col in inputs.column_names:
            cols[id_col] = inputs[id_col]
        for name in parts.column_names:
            if name not in ("outputs", "cumulative_logprobs"):
                cols[name] = parts[name]
        table = pa.table(cols).replace_schema_metadata(
            {"sutro.job_id": job.job_id, "sutro.model": job.model, "sutro.id_column": id_col or ""}
        )
        tmp = jdir / "results.parquet.tmp"
        # Bounded row groups: a client can then read a million-row result a slice at a time.
        pq.write_table(table, tmp, compression="zstd", row_group_size=RESULTS_ROW_GROUP)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, jdir / "results.parquet")
        _build_default_projection(jdir, table)
        fresh = self.state.store.get_job(job.job_id) or job
        if self.state.store.transition(job.job_id, ACTIVE_STATUSES, "SUCCEEDED", finished_at=utcnow(),
                                       rows_processed=job.num_rows):  # fmt: skip
            log.info("job %s succeeded: %d rows, %d/%d tokens", job.job_id, job.num_rows,
                     fresh.input_tokens, fresh.output_tokens)  # fmt: skip
        else:
            self._cancelled(fresh)
        shutil.rmtree(self._parts_dir(job), ignore_errors=True)
        self._inputs.pop(job.job_id, None)

    def _fail(self, job: JobRow, message: str) -> None:
        if self.state.store.transition(job.job_id, ACTIVE_STATUSES, "FAILED", failure_reason=message, finished_at=utcnow()):
            log.info("job %s failed: %s", job.job_id, message)
        else:
            self._cancelled(job)
        self._not_before.pop(job.job_id, None)
        self._inputs.pop(job.job_id, None)

    def _cancelled(self, job: JobRow) -> None:
        if self.state.store.transition(job.job_id, ("CANCELLING",), "CANCELLED", finished_at=utcnow()):
            log.info("job %s cancelled", job.job_id)
            shutil.rmtree(self._parts_dir(job), ignore_errors=True)
        self._not_before.pop(job.job_id, None)
        self._inputs.pop(job.job_id, None)


def _build_default_projection(jdir: Path, table: Any) -> None:
    """The default results projection, written before SUCCEEDED so no first download waits for it.

    A failure here only costs speed: the results route builds a missing projection on request.
    """
    try:
        build_default_projection(jdir, table)
    except Exception:
        log.warning("default results projection of %s not built; it will be on first request", jdir.name,
                    exc_info=True)


def _check_result(result: ChunkResult, n: int) -> None:
    lengths = {len(result.outputs), len(result.input_tokens), len(result.output_tokens)}
    if lengths != {n}:
        raise RuntimeError(f"engine returned {sorted(lengths)} entries for a chunk of {n} rows")


def _write_part(path: Path, result: ChunkResult) -> None:
    """One chunk's outputs as a parquet part, written atomically (temp + fsync + rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    first = next((o for o in result.outputs if o is not None), None)
    if isinstance(first, (list, tuple)) or (first is not None and hasattr(first, "tolist")):
        outputs = pa.array([None if o is None else list(o) for o in result.outputs], pa.list_(pa.float32()))
    else:
        outputs = pa.array(
            [o if o is None or isinstance(o, str) else json.dumps(o) for o in result.outputs], pa.string()
        )
    cols: dict[str, Any] = {"outputs": outputs}
    if result.cumulative_logprobs is not None:
        cols["cumulative_logprobs"] = pa.array(result.cumulative_logprobs, pa.float64())
    for name, values in result.carried.items():  # e.g. finish_reason, a Function's confidence_score
        cols[name] = pa.array(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.table(cols), tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _output_tokens_per_row(job: JobRow, cfg: ModelConfig) -> int:
    """The output tokens a dry run prices per row: the job's max_tokens (checked again here: a job
    stored before submits checked it must not price -10^12 tokens), else the model's default."""
    from .errors import ApiError
    from .sampling_check import check_sampling, max_tokens_limit

    sp = job.params.get("sampling_params") or {}
    wanted = sp.get("max_tokens", sp.get("max_new_tokens")) if isinstance(sp, dict) else None
    if wanted is None:
        return cfg.default_output_tokens
    try:
        check_sampling({"max_tokens": wanted}, max_tokens_limit=max_tokens_limit(cfg), model=cfg.name)
    except ApiError as exc:
        raise EngineInputError(exc.detail) from None
    return int(wanted)


def start_worker(state: ServerState) -> Worker:
    """Take the data dir's worker lock, requeue interrupted jobs and start the worker thread.

    Two workers on one data dir would run the same chunks twice; the lock (released by the OS even on
    kill -9) makes a second server on the same data dir fail at start instead.

    Example:
        >>> # start_worker(state); state.wake_worker()  # after a submit
    """
    state._lock_file = acquire_worker_lock(state.data_dir)
    state.worker = Worker(state)
    state.worker.start()
    return state.worker
