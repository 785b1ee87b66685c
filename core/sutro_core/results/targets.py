"""Where a results file goes and how it lands: a temp file first, checked, finished, moved into place atomically.

Works for local paths and any fsspec URI (``s3://``, ``gs://``, ``memory://`` ...), or an fsspec path object
(``UPath``, Airflow's ``ObjectStoragePath``) whose filesystem carries its credentials. A remote file is
finished in a local temp file, then uploaded once (``storage.upload_file``: it appears at its key only
complete). Parquet files get
key-value metadata in their footer (job id, model, rows, created time) without rewriting the data
(``parquet_footer``); the one results shape is written by ``shape.shape_file`` through ``finalize``'s
``transform``.

Example:
    >>> target = prepare_target("out/results.parquet", "parquet")   # doctest: +SKIP
    >>> # ... the body is streamed to target.tmp_path ...
    >>> finalize(target, job, "parquet").uri                          # doctest: +SKIP
    '/abs/out/results.parquet'
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from .. import storage
from ..errors import InputValidationError, ResultsFormatError
from ..models import Job, ResultsManifest
from .parquet_footer import add_key_value_metadata

RESULT_FORMATS = ("parquet", "csv", "json")
METADATA_PREFIX = "sutro."


@dataclass(frozen=True)
class Target:
    """Where a download goes: a local temp file first, then the final local path or remote URI."""

    uri: str
    tmp_path: Path
    local_path: Path | None
    fs: Any = None
    fs_path: str | None = None


is_remote = storage.is_remote


def _path_object(destination: Any) -> bool:
    """A ``UPath`` / ``ObjectStoragePath``: a remote path that brings its own filesystem."""
    return hasattr(destination, "fs") and bool(getattr(destination, "protocol", None)) and \
        getattr(destination, "protocol", None) not in ("file", "local")


def prepare_target(destination: Any, result_format: str, storage_options: dict[str, Any] | None = None) -> Target:
    """Validate the destination and pick the temp file (beside the final file when local).

    ``destination``: a local path, an fsspec URI, or a ``UPath`` / ``ObjectStoragePath`` (its own filesystem
    and credentials are used). ``storage_options`` go to fsspec for remote URIs (credentials, endpoint,
    ...); without them the filesystem's own chain applies (for S3 the standard AWS environment).

    Example:
        >>> prepare_target("s3://bucket/out.parquet", "parquet", {"anon": False}).uri  # doctest: +SKIP
        's3://bucket/out.parquet'
    """
    if result_format not in RESULT_FORMATS:
        raise InputValidationError("format", f"{result_format!r} is not one of {RESULT_FORMATS}")
    if _path_object(destination) and not storage_options:
        protocol = destination.protocol if isinstance(destination.protocol, str) else destination.protocol[0]
        fs_path = destination.fs._strip_protocol(str(destination.path))
        uri = storage.safe_uri(f"{protocol}://{fs_path}")
        return Target(uri=uri, tmp_path=storage.temp_path("upload"), local_path=None, fs=destination.fs,
                      fs_path=fs_path)
    uri = os.fspath(destination) if isinstance(destination, os.PathLike) else str(destination)
    if not uri:
        raise InputValidationError("destination", "give a file path or URI such as 'out/results.parquet'")
    if is_remote(uri):
        fs, fs_path = storage.filesystem(uri, storage_options, field="output_uri")
        if uri.endswith("/") or not fs_path.strip("/"):
            raise InputValidationError("output_uri", f"{storage.safe_uri(uri)!r} names a folder; give a file "
                                       "name inside it, e.g. 's3://bucket/out/results.parquet'")
        # The manifest and every message carry the URI without user info or query (never credentials).
        return Target(uri=storage.safe_uri(uri), tmp_path=storage.temp_path("upload"), local_path=None, fs=fs,
                      fs_path=fs_path)
    path = Path(uri.removeprefix("file://")).expanduser().absolute()
    if path.is_dir():
        raise InputValidationError("destination", f"{path} is a directory; give a file name inside it")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path)
    return Target(uri=str(path), tmp_path=path.parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.part",
                  local_path=path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_parts(path: Path) -> list[Path]:
    """Delete temp files a killed download of ``path`` left behind.

    Temp files are named ``.<name>.<pid>-<uuid>.part``. One whose process is gone is stale; one of a live
    process (another download of the same file, or one in flight in this process) is left alone unless it
    is a day old.
    """
    removed = []
    for part in path.parent.glob(f".{glob.escape(path.name)}.*.part"):
        pid = part.name[len(path.name) + 2:].split("-", 1)[0]
        try:
            old = time.time() - part.stat().st_mtime > 86400
        except OSError:
            continue
        owner_alive = pid.isdigit() and (int(pid) == os.getpid() or _pid_alive(int(pid)))
        if old or not owner_alive:
            part.unlink(missing_ok=True)
            removed.append(part)
    return removed


def discard(target: Target) -> None:
    """Remove a half-written temp file (never the destination)."""
    target.tmp_path.unlink(missing_ok=True)


def job_metadata(job: Job) -> dict[str, str]:
    """Footer key-value metadata describing the job behind a results file."""
    values = {
        "job_id": job.job_id,
        "model": job.model,
        "num_rows": job.num_rows,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "name": job.name,
        "input_tokens": job.input_tokens,
        "output_tokens": job.output_tokens,
    }
    return {METADATA_PREFIX + k: str(v) for k, v in values.items() if v is not None}


def _unzip_single_csv(path: Path) -> None:
    """The ZIP the API sends, replaced by the one CSV inside it (a bare CSV body is kept as it is)."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            if len(members) != 1:
                raise ResultsFormatError(f"expected one CSV in the results ZIP, found {members[:5]}")
            if archive.testzip() is not None:
                raise ResultsFormatError("the results ZIP is corrupt (a member fails its CRC check)")
            out = path.with_suffix(".csv.part")
            with archive.open(members[0]) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ResultsFormatError(f"the results ZIP is truncated or corrupt: {exc}") from exc
    os.replace(out, path)


def validate_results_file(path: Path, result_format: str) -> None:
    """Check a downloaded body really is ``result_format`` before anything is moved into place.

    An HTML error page, parquet bytes asked as CSV or a cut-off body raise ``ResultsFormatError``;
    the caller's destination stays untouched.
    """
    with open(path, "rb") as fh:
        head = fh.read(512)
        fh.seek(max(0, path.stat().st_size - 4))
        tail = fh.read(4)
    try:
        if result_format == "parquet":
            if head[:4] != b"PAR1" or tail != b"PAR1":
                raise ResultsFormatError(f"the results body is not a complete parquet file (starts {head[:16]!r})")
            pq.read_metadata(path)
        elif result_format == "csv":
            if head[:4] in (b"PAR1", b"PK\x03\x04") or head.lstrip()[:1] in (b"<", b"{", b"["):
                raise ResultsFormatError(f"the results body is not CSV (starts {head[:16]!r})")
            pl.scan_csv(path).collect_schema()
        else:
            json.loads(path.read_bytes())
    except ResultsFormatError:
        raise
    except Exception as exc:  # pyarrow, polars and json each raise their own types for a corrupt body
        raise ResultsFormatError(f"the results body is not valid {result_format}: {type(exc).__name__}: {exc}") from exc


def _rows_and_columns(path: Path, result_format: str) -> tuple[int, list[str]]:
    if result_format == "parquet":
        meta = pq.read_metadata(path)
        return meta.num_rows, list(meta.schema.to_arrow_schema().names)
    if result_format == "csv":
        lazy = pl.scan_csv(path)
        return int(lazy.select(pl.len()).collect().item()), lazy.collect_schema().names()
    body = json.loads(path.read_text())
    body = body.get("results", body) if isinstance(body, dict) else body
    outputs = body.get("outputs", []) if isinstance(body, dict) else []
    return len(outputs), list(body) if isinstance(body, dict) else []


def finalize(target: Target, job: Job, result_format: str,
             transform: "Callable[[Path], dict[str, Any] | None] | None" = None) -> ResultsManifest:
    """Validate and finish the temp file, then move it into place atomically; return its manifest.

    ``transform`` rewrites the validated temp file in place (the one results shape, see ``shape.shape_file``)
    and may return more manifest fields (the row status counts); without it a parquet file only gets the
    job's footer metadata.
    """
    extra: dict[str, Any] = {}
    try:
        if result_format == "csv":
            _unzip_single_csv(target.tmp_path)
        validate_results_file(target.tmp_path, result_format)
        if transform is not None:
            extra = transform(target.tmp_path) or {}
        elif result_format == "parquet":
            add_key_value_metadata(target.tmp_path, job_metadata(job))
        rows, columns = _rows_and_columns(target.tmp_path, result_format)
        size = target.tmp_path.stat().st_size
        if target.local_path is not None:
            os.replace(target.tmp_path, target.local_path)
        else:
            # One upload that appears at the key only complete (storage.upload_file), in flat memory.
            storage.upload_file(target.tmp_path, target.fs, target.fs_path)
    finally:
        discard(target)
    return ResultsManifest(
        uri=target.uri, format=result_format, rows=rows, bytes=size, job_id=job.job_id, model=job.model,
        columns=columns, input_tokens=job.input_tokens, output_tokens=job.output_tokens,
        cost=job.job_cost if job.job_cost is not None else job.cost_estimate,
        created_at=job.created_at.isoformat() if job.created_at else None, **extra,
    )
