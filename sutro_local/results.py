"""Results of a finished job: column projections (cached on disk), csv-zip, JSON and inline shapes.

The stored file `results.parquet` holds every column (`inputs`, `outputs`, `cumulative_logprobs`
when the engine has them, carried columns). A request that asks for fewer columns gets a
projection written once (atomically) and reused. The common one (outputs and carried columns,
what every client asks for by default) is built by the worker when the job finishes, so the first
download of a fresh job costs what a warm one does; the other variants are built on first request.

Example:
    >>> # path = results_file(state, job, include_inputs=False, include_logprobs=False)
"""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any

from .errors import ApiError
from .state import ServerState
from .store import JobRow

BASE_COLUMNS = ("inputs", "outputs", "cumulative_logprobs")


#: Row-group size of results files (the worker writes them; projections keep it).
RESULTS_ROW_GROUP = 65_536

def ensure_results(job: JobRow) -> None:
    """409 unless the job SUCCEEDED with results (dry runs have none)."""
    if job.status != "SUCCEEDED":
        raise ApiError(
            409, "job_not_succeeded",
            f"job {job.job_id} is {job.status}; results exist only for SUCCEEDED jobs"
            + (f" (failure: {job.failure_reason})" if job.failure_reason else ""),
        )  # fmt: skip
    if job.dry_run:
        raise ApiError(409, "dry_run_has_no_results",
                       f"job {job.job_id} was a cost estimate (dry run); read cost_estimate from jobs/{{id}}")  # fmt: skip


def wanted_columns(stored: list[str], include_inputs: bool, include_logprobs: bool) -> list[str]:
    """The column list of a projection, in the fixed order (inputs, outputs, logprobs, carried)."""
    carried = [c for c in stored if c not in BASE_COLUMNS]
    return (["inputs"] if include_inputs else []) + ["outputs"] + (
        ["cumulative_logprobs"] if include_logprobs else []
    ) + carried


def projection_path(jdir: Path, include_inputs: bool, include_logprobs: bool) -> Path:
    """Where the projection with these columns is cached."""
    return jdir / f"results-proj{'-inputs' if include_inputs else ''}{'-logprobs' if include_logprobs else ''}.parquet"


def write_projection(table: Any, want: list[str], dest: Path) -> None:
    """Write ``want`` of ``table`` (a pyarrow Table) to ``dest`` atomically; absent logprobs are nulls."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {c: table[c] if c in table.column_names else pa.nulls(table.num_rows, pa.float64()) for c in want}
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(pa.table(cols).replace_schema_metadata(table.schema.metadata), tmp, compression="zstd",
                       row_group_size=RESULTS_ROW_GROUP)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def build_default_projection(jdir: Path, table: Any) -> None:
    """The projection a default request asks for (no inputs, no logprobs), from the table in memory.

    Called by the worker before the job is marked SUCCEEDED: no first request pays for it.
    """
    write_projection(table, wanted_columns(table.column_names, False, False), projection_path(jdir, False, False))


def results_file(state: ServerState, job: JobRow, include_inputs: bool, include_logprobs: bool) -> Path:
    """Path of the parquet file with exactly the asked columns (the stored file or a cached projection)."""
    import pyarrow.parquet as pq

    ensure_results(job)
    jdir = state.job_dir(job.job_id)
    full = jdir / "results.parquet"
    if not full.exists():  # SUCCEEDED is set only after the file is in place; be explicit anyway
        raise ApiError(503, "results_not_ready", f"results of job {job.job_id} are still being written; retry",
                       {"Retry-After": "1"})  # fmt: skip
    proj = projection_path(jdir, include_inputs, include_logprobs)
    if proj.exists():  # the common case: built when the job finished (no schema read needed)
        return proj
    stored = pq.read_schema(full).names
    want = wanted_columns(stored, include_inputs, include_logprobs)
    if want == stored:
        return full
    # Only the columns the projection keeps are read (a logprobs-free request never decodes inputs).
    write_projection(pq.read_table(full, columns=[c for c in want if c in stored]), want, proj)
    return proj


def results_columns(path: Path) -> dict[str, list[Any]]:
    """The file's columns as JSON-ready lists (for the JSON and inline shapes)."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pydict()


def csv_zip(path: Path, job_id: str) -> Path:
    """A ZIP holding one CSV of the file (list columns as JSON text), cached beside it.

    As the docs say, the CSV's outputs column is named after the job id ("Column names: inputs,
    {job_id} outputs, cumulative_logprobs"); parquet and JSON keep ``outputs``.
    """
    import polars as pl

    # ".jobcol": a cache written before the rename (column `outputs`) is never served again
    out = path.with_suffix(".jobcol.csv.zip")
    if out.exists():
        return out
    df = pl.read_parquet(path)
    df = df.rename({"outputs": job_id})
    df = df.with_columns(
        # Nested values as JSON text, vectorised: encode {"v": value} and strip the wrapper.
        [pl.struct(pl.col(c).alias("v")).struct.json_encode().str.slice(5).str.strip_suffix("}").alias(c)
         for c, t in df.schema.items() if isinstance(t, (pl.List, pl.Array, pl.Struct))]  # fmt: skip
    )
    buf = io.BytesIO()
    df.write_csv(buf)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(path.stem + ".csv", buf.getvalue())
    os.replace(tmp, out)
    return out
