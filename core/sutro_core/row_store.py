"""Row reuse across runs: content keys per row, and a store of paid results as immutable parquet files.

**Row keys.** ``row_keys(identity, rows)`` gives each row a 32-character hex key (BLAKE2b, 16 bytes) of
what determines its result:

- the identity (``request_identity(request)``): the model or Function name, the Function's revision
  where known, the system prompt, the output JSON schema, the sampling parameters, ``random_seed_per_input``,
  ``truncate_rows`` and any extra request fields, as canonical JSON (sorted keys), plus the key scheme's
  version;
- the row's input: its text exactly as submitted, or, for a Function, its object as canonical JSON (sorted
  keys, so key order does not matter; ``1`` and ``1.0`` are different inputs).

It deliberately leaves out what does not change a row's result: the job priority, the job name and
description, dry runs, where the rows came from (a file URL, column names, the id column), the columns a
step carries beside the rows, and the row's position (identical rows anywhere share one key, so they are
paid once). Keys are stable across processes, machines and library versions (no Python ``hash``, no
polars hash): the same row and identity give the same key tomorrow.

**The store.** ``RowStore(uri)`` is a folder (a local path, ``file://`` or any fsspec URI) of parquet
files named ``<UTC timestamp>-<uuid>.parquet``. Each file is written once and never modified: on disk
under a temp name (``.tmp-...part``, which readers ignore) renamed into place; on object storage uploaded
straight to its key, where it appears only complete (an upload a killed writer left unfinished is aborted
by the next ``compact``/``prune`` a day later). So two writers at once cannot corrupt anything and a
half-written file is never read; remote files are read by ranges (footers, key columns, the row groups
that match). Every file has the string column
``sutro_row_key`` beside whatever result columns the caller stores. The files read with polars, DuckDB or
Spark (``pl.scan_parquet("store/*.parquet")``).

- ``lookup(keys)``: the stored rows of those keys, one per key (a key stored twice: the copy in the
  earliest file). A file that cannot be read is skipped with a ``RowStoreWarning`` naming it: its rows are
  simply not found (and so paid again), never wrong.
- ``append(frame)``: one new file.
- ``compact()``: merges small files into larger ones (deduplicated), then removes the files it merged.
  A reader that meets a file removed under it lists the folder again; at worst a row is not found.
- **Clearing and expiry**: files are immutable, so deleting any of them at any time is safe (their rows
  are paid again when next needed). ``prune(older_than)`` deletes files written before a cut-off (a
  compacted file counts as old as the oldest file merged into it); ``clear()`` deletes them all;
  ``rm -r`` of the folder works as well while no step writes to it.

Command line::

    python -m sutro_core.row_store info    URI
    python -m sutro_core.row_store compact URI [--target-rows 1000000]
    python -m sutro_core.row_store prune   URI --older-than-days 30

Example:
    >>> identity = {"model": "qwen-3-4b", "system_prompt": "Classify", "json_schema": None, "sampling_params": None}
    >>> keys = row_keys(identity, ["I love it", "Broken on arrival"])
    >>> store = RowStore("/tmp/rows")                                              # doctest: +SKIP
    >>> store.append(pl.DataFrame({"sutro_row_key": keys, "output": ["pos", "neg"]}))  # doctest: +SKIP
    >>> store.lookup(keys[:1])["output"].to_list()                                 # doctest: +SKIP
    ['pos']
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import posixpath
import re
import sys
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from . import storage

if TYPE_CHECKING:
    from .inputs import NormalisedInputs
    from .request import BatchJobRequest

KEY = "sutro_row_key"
#: Bumped whenever what a key covers changes, so old stored rows are simply not found (never reused wrongly).
KEY_SCHEME = "sutro-row-key/1"
FILE_PATTERN = re.compile(r"^(\d{8}T\d{12}Z)-([0-9a-f]{32})\.parquet$")
TEMP_PATTERN = re.compile(r"^\.tmp-[0-9a-f]{32}\.part$")
#: A temp file this old belongs to a writer that died (a live write takes seconds); compact/prune remove it.
STALE_TEMP_S = 86_400
ROW_GROUP_ROWS = 65_536
#: Remote reads fetch at most this much past what was asked (s3fs would read 50 MB blocks).
_RANGE_BYTES = 1 << 20
#: Subfolder of write-once submission records: which rows a step's job was sent (see ``claim_submission``).
SUBMISSIONS = "submissions"
_RECORD_PATTERN = re.compile(r"^[0-9A-Za-z_.-]{1,200}\.parquet$")
# Helper columns of a lookup: the batch (one scan) a row came from, its row in that scan, its file's rank.
_BATCH, _ROW, _RANK = "__sutro_row_store_batch", "__sutro_row_store_row", "__sutro_row_store_rank"
#: Rounds of listing and reading new files while a compaction or prune runs under a lookup.
_MAX_ROUNDS = 10
#: What reading a damaged file may raise: polars panics (a BaseException) on some malformed pages.
_READ_ERRORS = (Exception, pl.exceptions.PanicException)


class RowStoreWarning(UserWarning):
    """A store file was skipped (unreadable, not parquet, no string ``sutro_row_key``): its rows are paid again."""


def _warn(message: str) -> None:
    """Warn, attributed to the caller's line outside this module (so warning filters and logs name it)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, RowStoreWarning, stacklevel=level)


# ---------------------------------------------------------------------------------------------- row keys


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def request_identity(request: "BatchJobRequest", revision: str | int | None = None) -> dict[str, Any]:
    """What of a request determines each row's result (see the module docstring for what is left out).

    ``revision``: the Function's (or model's) revision where the caller knows it; a new revision gives new keys.

    Example:
        >>> from sutro_core import BatchJobRequest
        >>> req = BatchJobRequest.for_inference(["a"], model="qwen-3-4b", system_prompt="Be brief", job_priority=1)
        >>> ident = request_identity(req)
        >>> ident["model"], ident["system_prompt"], "job_priority" in ident
        ('qwen-3-4b', 'Be brief', False)
    """
    return {
        "kind": "function" if request.is_function else "inference",
        "model": request.model,
        "revision": revision,
        "system_prompt": request.system_prompt,
        "json_schema": request.json_schema,
        "sampling_params": request.sampling_params,
        "random_seed_per_input": request.random_seed_per_input,
        "truncate_rows": request.truncate_rows,
        # extra request fields go to the server as they are, so they may change results
        "extra": request.extra or None,
    }


def row_keys(
    identity: Mapping[str, Any], rows: "Sequence[str] | Sequence[Mapping[str, Any]] | NormalisedInputs | pl.Series"
) -> list[str]:
    """One 32-character hex key per row: BLAKE2b-128 of the identity and the row's input.

    ``rows``: the request's normalised rows (``request.inputs`` or its ``inline`` list): strings for
    inference, dicts for a Function; a polars String Series works too. About 0.5 s per 1M text rows, ~4 s per
    1M Function rows (canonical JSON).

    Example:
        >>> ident = {"model": "qwen-3-4b", "system_prompt": None}
        >>> a, b, c = row_keys(ident, ["same", "same", "other"])
        >>> a == b != c, len(a)
        (True, 32)
        >>> row_keys(ident, [{"x": 1, "y": 2}]) == row_keys(ident, [{"y": 2, "x": 1}])
        True
    """
    if isinstance(rows, pl.Series):
        rows = rows.to_list()
    elif not isinstance(rows, Sequence):  # NormalisedInputs
        if getattr(rows, "inline", None) is None:
            raise ValueError("rows given as a file URL have no local content to key; read the file and pass its rows")
        rows = rows.inline  # type: ignore[union-attr]
    assert isinstance(rows, Sequence)
    identity_digest = hashlib.blake2b(
        (KEY_SCHEME + "\n" + _canonical_json(dict(identity))).encode(), digest_size=32
    ).digest()
    # The prefix is fixed-length (a digest and a one-byte kind), so prefix + row is unambiguous; copying a
    # hasher that has absorbed it is ~2x faster than a keyed hash per row.
    text_base = hashlib.blake2b(identity_digest + b"s", digest_size=16)
    object_base = hashlib.blake2b(identity_digest + b"o", digest_size=16)
    out: list[str] = []
    append = out.append
    if all(type(row) is str for row in rows):
        copy = text_base.copy
        for row in rows:
            h = copy()
            h.update(row.encode("utf-8", "surrogatepass"))
            append(h.hexdigest())
        return out
    for i, row in enumerate(rows):
        if isinstance(row, str):
            h = text_base.copy()
            h.update(row.encode("utf-8", "surrogatepass"))
        elif isinstance(row, Mapping):
            h = object_base.copy()
            h.update(_canonical_json(row).encode("utf-8", "surrogatepass"))
        else:
            raise TypeError(f"row {i} is {type(row).__name__}; rows are strings (inference) or dicts (Functions)")
        append(h.hexdigest())
    return out


# ---------------------------------------------------------------------------------------------- folders


def _new_name(stamp: str | None = None) -> str:
    stamp = stamp or _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{uuid.uuid4().hex}.parquet"


def _stamp_time(name: str) -> _dt.datetime:
    m = FILE_PATTERN.match(name)
    assert m is not None
    return _dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=_dt.timezone.utc)


class _Folder:
    """The store's folder: local (paths, os.replace, fsync) or fsspec (a local file uploaded whole to its
    final key on object stores; elsewhere a temp name, then mv)."""

    def __init__(self, uri: str, storage_options: Mapping[str, Any] | None) -> None:
        self.remote = "://" in uri and not uri.startswith("file://")
        if self.remote:
            self.fs, self.path = storage.filesystem(uri, storage_options, field="row_store")
            self.path = self.path.rstrip("/")
            self.fs.makedirs(self.path, exist_ok=True)
        else:
            self.fs = None
            self.path = str(Path(uri.removeprefix("file://")).expanduser().absolute())
            os.makedirs(self.path, exist_ok=True)

    def join(self, name: str) -> str:
        return posixpath.join(self.path, name) if self.remote else os.path.join(self.path, name)

    def entries(self, under: str = "") -> list[tuple[str, float]]:
        """(name, mtime) of every entry in the folder, or in its subfolder ``under`` (mtime 0 where the
        filesystem gives none; no entries when the subfolder does not exist)."""
        path = self.join(under) if under else self.path
        if not self.remote:
            out = []
            try:
                with os.scandir(path) as it:
                    for e in it:
                        try:
                            out.append((e.name, e.stat().st_mtime))
                        except FileNotFoundError:  # removed while listing
                            pass
            except FileNotFoundError:
                if not under:
                    raise
            return out
        self.fs.invalidate_cache(path)  # s3fs/gcsfs cache listings: a stale one hides new files
        out = []
        try:
            infos = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            if not under:
                raise
            infos = []
        for info in infos:
            mtime = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
            if isinstance(mtime, _dt.datetime):
                mtime = mtime.timestamp()
            out.append((posixpath.basename(info["name"].rstrip("/")), float(mtime or 0)))
        return out

    def data_files(self) -> list[str]:
        """Complete data files, oldest first (names sort by their UTC timestamp)."""
        return sorted(n for n, _ in self.entries() if FILE_PATTERN.match(n))

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.join(name)) if self.remote else os.path.exists(self.join(name))

    def records(self) -> list[tuple[str, float]]:
        """(name, mtime) of the submission records."""
        return [(n, t) for n, t in self.entries(SUBMISSIONS) if _RECORD_PATTERN.match(n)]

    def write_once(self, data: pl.DataFrame, name: str) -> bool:
        """Write ``name`` unless it exists (then leave it as it is): False when another writer got there first.

        Local: a complete temp file hard-linked to the name (``link`` fails on an existing name). Object
        stores: an exclusive put (``If-None-Match``); where the store has no such put, a check then a put.
        """
        target = self.join(name)
        if not self.remote:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            temp = os.path.join(os.path.dirname(target), f".tmp-{uuid.uuid4().hex}.part")
            try:
                data.write_parquet(temp)
                try:
                    os.link(temp, target)
                except FileExistsError:
                    return False
                return True
            finally:
                os.unlink(temp)
        buffer = io.BytesIO()
        data.write_parquet(buffer)
        try:
            with self.fs.open(target, "xb") as fh:
                fh.write(buffer.getvalue())
            return True
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError, TypeError):  # no exclusive put here
            if self.fs.exists(target):
                return False
            self.fs.pipe_file(target, buffer.getvalue())
            return True

    def remove(self, name: str) -> bool:
        try:
            if self.remote:
                self.fs.rm(self.join(name))
            else:
                os.unlink(self.join(name))
            return True
        except FileNotFoundError:  # another compactor or pruner got there first
            return False

    def open_meta(self, name: str) -> tuple[pl.Schema, int | None]:
        """The file's schema (and row count where it comes free), from its footer only."""
        if not self.remote:
            # polars reads the footer in ~0.2 ms and spares a lookup importing pyarrow (~0.15 s, ~60 MB)
            return pl.read_parquet_schema(self.join(name)), None
        import pyarrow.parquet as pq

        # range reads: the footer, not the file
        with self.fs.open(self.join(name), "rb", block_size=_RANGE_BYTES) as fh:
            pf = pq.ParquetFile(fh)
            arrow_schema, rows = pf.schema_arrow, pf.metadata.num_rows
        return pl.from_arrow(arrow_schema.empty_table()).schema, rows  # type: ignore[union-attr]

    def num_rows(self, name: str) -> int:
        """Rows in a file, from its footer."""
        if self.remote:
            rows = self.open_meta(name)[1]
            assert rows is not None
            return rows
        return int(pl.scan_parquet(self.join(name), glob=False).select(pl.len()).collect().item())

    def read_small(self, name: str, columns: list[str]) -> pl.DataFrame:
        """A small file (a submission record) read whole."""
        if self.remote:
            return pl.read_parquet(io.BytesIO(self.fs.cat_file(self.join(name))), columns=columns)
        return pl.read_parquet(self.join(name), columns=columns)

    @contextlib.contextmanager
    def local_paths(self, names: list[str]) -> Iterator[list[str]]:
        """Local paths of the files ``names`` (remote ones downloaded one stream each, removed on exit)."""
        if not self.remote:
            yield [self.join(n) for n in names]
            return
        paths: list[Path] = []
        try:
            for n in names:
                paths.append(storage.temp_path("row-store"))
                storage.download_file(self.fs, self.join(n), paths[-1])
            yield [str(p) for p in paths]
        finally:
            for p in paths:
                p.unlink(missing_ok=True)

    def hits(self, name: str, keys: pl.DataFrame, keys_only: bool, tidy: list[pl.Expr]) -> pl.DataFrame:
        """A remote file's rows of ``keys`` with their row index (``_ROW``), by range reads: each row group's
        key column, then its other columns only where a key matched (memory: about one row group)."""
        import pyarrow.parquet as pq

        def read(pf: Any, group: int, start: int, columns: list[str] | None) -> pl.DataFrame:
            table = pl.from_arrow(pf.read_row_group(group, columns=columns))
            assert isinstance(table, pl.DataFrame)
            return table.with_row_index(_ROW, start).join(keys, on=KEY, how="semi")

        found = []
        with self.fs.open(self.join(name), "rb", block_size=_RANGE_BYTES) as fh:
            pf = pq.ParquetFile(fh)
            start = 0
            for group in range(pf.num_row_groups):
                rows = read(pf, group, start, [KEY])
                if rows.height:
                    found.append((rows if keys_only else read(pf, group, start, None)).with_columns(tidy))
                start += pf.metadata.row_group(group).num_rows
        return pl.concat(found) if found else pl.DataFrame()

    def write(self, data: pl.DataFrame | pl.LazyFrame, name: str) -> None:
        """Write ``name`` so that it is never seen half written: locally a temp name readers ignore, renamed
        into place; on object stores a local file uploaded to its final key (one atomic PUT, or a multipart
        upload published only when complete)."""
        if not self.remote:
            self._write_local(data, name)
            return
        local = storage.temp_path("row-store")
        try:
            _write_parquet(data, str(local))
            if storage.publishes_whole(self.fs):
                storage.upload_file(local, self.fs, self.join(name))
                return
            tmp_remote = self.join(f".tmp-{uuid.uuid4().hex}.part")
            try:
                self.fs.put_file(str(local), tmp_remote)
                self.fs.mv(tmp_remote, self.join(name))
            except BaseException:
                try:
                    self.fs.rm(tmp_remote)
                except (FileNotFoundError, OSError):
                    pass
                raise
        finally:
            local.unlink(missing_ok=True)

    def _write_local(self, data: pl.DataFrame | pl.LazyFrame, name: str) -> None:
        tmp_path = self.join(f".tmp-{uuid.uuid4().hex}.part")
        try:
            _write_parquet(data, tmp_path)
            fd = os.open(tmp_path, os.O_RDONLY)
            try:
                os.fsync(fd)  # the data is on disk before the name is
            finally:
                os.close(fd)
            os.replace(tmp_path, self.join(name))
        except BaseException:
            try:
                os.unlink(tmp_path)
            except FileNotFoundError:
                pass
            raise
        try:
            dir_fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:  # some filesystems refuse fsync on a directory; the rename itself is atomic
            pass

    def abort_stale_uploads(self, older_than_s: float) -> int:
        """Unfinished multipart uploads under the folder that a killed writer left (S3; by age)."""
        return storage.abort_stale_uploads(self.fs, self.path, under=True, older_than_s=older_than_s) \
            if self.remote else 0


def _write_parquet(data: pl.DataFrame | pl.LazyFrame, path: str) -> None:
    if isinstance(data, pl.LazyFrame):
        data.sink_parquet(path, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    else:
        data.write_parquet(path, compression="zstd", row_group_size=ROW_GROUP_ROWS)


# ---------------------------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class _Meta:
    schema: pl.Schema
    rows: int | None  # None: not read yet (local lookups need only the schema)


def _rewritten_since(before: list[str], after: list[str]) -> bool:
    """True when files listed before are gone, or a file older than the newest listed appeared (a merge).

    An append is named with the current time, so it sorts after every file listed before it; a merged
    file takes the time of its oldest input.
    """
    seen = set(before)
    if not seen.issubset(after):
        return True
    return bool(before) and any(name not in seen and name < before[-1] for name in after)


def _key_series(keys: Iterable[str] | pl.Series) -> pl.Series:
    series = keys.rename(KEY) if isinstance(keys, pl.Series) else pl.Series(KEY, list(keys), dtype=pl.String)
    if series.dtype != pl.String:
        raise TypeError(f"keys must be strings (from row_keys), got {series.dtype}")
    if series.null_count():
        raise ValueError(f"{series.null_count()} keys are null; every row has a key")
    return series


class RowStore:
    """A folder of immutable parquet files of paid row results, keyed by ``sutro_row_key``.

    ``uri``: a local folder, ``file://...`` or any fsspec URI (``s3://bucket/rows``); created if missing.
    ``storage_options`` go to fsspec for remote URIs. One instance caches the footers of the files it has
    read (files never change); it is not meant to be shared between threads.

    Example:
        >>> store = RowStore("/tmp/rows")                                               # doctest: +SKIP
        >>> name = store.append(pl.DataFrame({"sutro_row_key": ["k1", "k2"], "output": ["a", "b"]}))  # doctest: +SKIP
        >>> store.lookup(["k2", "k9"]).to_dicts()                                       # doctest: +SKIP
        [{'sutro_row_key': 'k2', 'output': 'b'}]
    """

    def __init__(self, uri: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> None:
        self.uri = os.fspath(uri)
        self._folder = _Folder(self.uri, storage_options)
        self._meta: dict[str, _Meta | None] = {}  # name -> footer facts; None: unreadable (warned once)

    def __repr__(self) -> str:
        return f"RowStore({self.uri!r})"

    # -- reading

    def files(self) -> list[str]:
        """Names of the store's complete files, oldest first."""
        return self._folder.data_files()

    def _skip(self, name: str, why: str) -> None:
        if self._meta.get(name, "unseen") is not None:
            _warn(f"row store {self.uri}: skipping {name}: {why} (its rows will be submitted again)")
        self._meta[name] = None

    def _readable(self, names: list[str], vanished: list[str] | None = None) -> list[tuple[str, _Meta]]:
        """The listed files whose footer reads and which have a string key column; others warned and skipped.

        Files removed since the listing (compaction, pruning) are left out and named in ``vanished``.
        """
        out = []
        for name in names:
            if name not in self._meta:
                try:
                    schema, rows = self._folder.open_meta(name)
                except _READ_ERRORS as exc:  # any unreadable file is skipped, never fatal
                    if isinstance(exc, FileNotFoundError) or not self._folder.exists(name):
                        if vanished is not None:
                            vanished.append(name)
                        continue
                    self._skip(name, f"not a readable parquet file ({type(exc).__name__}: {exc})")
                    continue
                if schema.get(KEY) != pl.String:
                    self._skip(name, f"no string column {KEY!r} (columns: {list(schema)})")
                    continue
                self._meta[name] = _Meta(schema, rows)
            meta = self._meta[name]
            if meta is not None:
                out.append((name, meta))
        return out

    def _counted(self, files: list[tuple[str, _Meta]]) -> list[tuple[str, _Meta]]:
        """The files with their row counts read (files removed meanwhile left out)."""
        out = []
        for name, meta in files:
            if meta.rows is None:
                try:
                    meta = self._meta[name] = _Meta(meta.schema, self._folder.num_rows(name))
                except _READ_ERRORS:
                    continue  # removed, or unreadable beyond its footer: not compacted, not counted
            out.append((name, meta))
        return out

    def _scan(self, paths: list[str], row_index: str | None = None) -> pl.LazyFrame:
        """One scan over local files of one schema, in the order given (one reader: concatenating per-file
        scans costs ~100 MB more, their readers running side by side)."""
        return pl.scan_parquet(paths, glob=False, row_index_name=row_index)

    def _batches(self, files: list[tuple[str, _Meta]]) -> list[list[tuple[str, _Meta]]]:
        """Local files grouped by schema (one lazy query each); remote files one at a time (range reads)."""
        if self._folder.remote:
            return [[f] for f in files]
        groups: dict[tuple[tuple[str, str], ...], list[tuple[str, _Meta]]] = {}
        for f in files:
            groups.setdefault(tuple((c, str(t)) for c, t in f[1].schema.items()), []).append(f)
        return list(groups.values())

    def _collect(self, batch: list[tuple[str, _Meta]], keys: pl.LazyFrame, vanished: list[str],
                 keys_only: bool = False) -> list[tuple[pl.DataFrame, list[str]]]:  # fmt: skip
        """The batch's rows of ``keys`` with their row index in the batch's scan, and the files scanned."""
        schema = batch[0][1].schema
        # A filtered string column keeps its whole decoded page buffers alive (string views): at 10% hits the
        # result would hold every file's strings. Copying the matching strings bounds memory to the rows found.
        compact = [pl.concat_str([pl.col(c), pl.lit("")]).alias(c) for c, t in schema.items()
                   if t == pl.String and (not keys_only or c == KEY)]

        def query(names: list[str]) -> pl.DataFrame:
            if self._folder.remote:
                return self._folder.hits(names[0], keys.collect(), keys_only, compact)
            scan = self._scan([self._folder.join(n) for n in names], _ROW)
            if keys_only:  # the result columns are never read
                scan = scan.select(KEY, _ROW)
            return (scan.join(keys, on=KEY, how="semi").with_columns(compact)
                    .collect(engine="streaming"))  # fmt: skip

        names = [name for name, _ in batch]
        try:
            return [(query(names), names)]
        except _READ_ERRORS:  # find the file(s) at fault below
            pass
        parts = []
        for name in names:
            try:
                parts.append((query([name]), [name]))
            except _READ_ERRORS as exc:
                if self._folder.exists(name):
                    self._skip(name, f"cannot be read ({type(exc).__name__}: {str(exc)[:200]})")
                else:
                    vanished.append(name)
        return parts

    def lookup(self, keys: Iterable[str] | pl.Series, *, aligned: bool = False,
               keys_only: bool = False) -> pl.DataFrame:
        """The stored rows of ``keys``: one row per stored key, in no particular order.

        ``aligned=True``: one row per given key instead, in the given order (a left join: the result
        columns are null where a key is not stored; ``is_not_null`` on a result column tells which).
        ``keys_only=True``: only the key column (which keys are stored), without reading the results.

        Reads the key column and the rows that match, one streaming query over the files (never the
        whole store in memory); a key stored twice comes from the earliest file. Unreadable files are
        skipped with a ``RowStoreWarning``.

        Example:
            >>> store.lookup(row_keys(identity, rows), aligned=True)  # doctest: +SKIP
        """
        wanted = _key_series(keys)
        keys_lf = wanted.to_frame().lazy()  # a semi join needs no unique keys
        parts: list[tuple[pl.DataFrame, list[str]]] = []
        done: set[str] = set()
        listing = self.files()
        for gone in set(self._meta) - set(listing):
            del self._meta[gone]
        for _ in range(_MAX_ROUNDS):
            # A compaction or prune under us removes files we listed (their rows are in a merged file named
            # as old as its inputs), and a directory read racing renames may miss both a merged file and its
            # inputs. Seeing either, list again and read the files not read yet.
            vanished: list[str] = []
            files = self._readable([n for n in listing if n not in done], vanished)
            done.update(listing)
            for batch in self._batches(files):
                parts += [(df, names) for df, names in self._collect(batch, keys_lf, vanished, keys_only)
                          if df.height]
            after = self.files()
            if not vanished and not _rewritten_since(listing, after):
                break
            listing = after
        found = self._merge(parts)
        if aligned:
            return wanted.to_frame().join(found, on=KEY, how="left", maintain_order="left")
        return found

    def _merge(self, parts: list[tuple[pl.DataFrame, list[str]]]) -> pl.DataFrame:
        """The parts as one frame, one row per key: the copy from the earliest file (by name)."""
        if not parts:
            return pl.DataFrame(schema={KEY: pl.String})
        frames = [df.with_columns(pl.lit(i, pl.UInt32).alias(_BATCH)) for i, (df, _) in enumerate(parts)]
        found = frames[0]
        for frame, (_, names) in zip(frames[1:], parts[1:]):
            try:
                found = pl.concat([found, frame], how="diagonal_relaxed")
            except Exception as exc:  # noqa: BLE001 - stored under one key with clashing column types
                _warn(f"row store {self.uri}: rows of {', '.join(names)} do not fit the columns of earlier files "
                      f"({exc}); skipping them")  # fmt: skip
        if found[KEY].n_unique() < found.height:  # a key in two files: keep the earliest file's copy
            found = found.with_columns(self._file_rank(found, parts)).sort(_RANK, maintain_order=True)
            found = found.unique(KEY, keep="first", maintain_order=True).drop(_RANK)
        return found.drop(_BATCH, _ROW)

    def _rows_of(self, name: str) -> int:
        meta = self._meta.get(name)
        return meta.rows if meta is not None and meta.rows is not None else self._folder.num_rows(name)

    def _file_rank(self, found: pl.DataFrame, parts: list[tuple[pl.DataFrame, list[str]]]) -> pl.Series:
        """Each row's file, as its rank among all files read by name (the row index says which file of a
        batch's scan it came from; only needed when a key is stored twice, so row counts are read here)."""
        import numpy as np

        rank = {name: i for i, name in enumerate(sorted({n for _, names in parts for n in names}))}
        batch, row = found[_BATCH].to_numpy(), found[_ROW].to_numpy()
        out = np.zeros(found.height, dtype=np.int64)
        for b, (_, names) in enumerate(parts):
            ranks = np.array([rank[n] for n in names])
            mask = batch == b
            try:
                counts = [self._rows_of(n) for n in names]
            except _READ_ERRORS:  # a file compacted away since: rank the batch by its first file
                out[mask] = ranks[0]
                continue
            starts = np.cumsum([0, *counts[:-1]])
            out[mask] = ranks[np.searchsorted(starts, row[mask], side="right") - 1]
        return pl.Series(_RANK, out)

    # -- writing

    def append(self, frame: pl.DataFrame) -> str | None:
        """Write ``frame`` (with a string ``sutro_row_key`` column) as one new file; returns its name.

        An empty frame writes nothing (returns None). Rows with the same key are written once.

        Example:
            >>> store.append(pl.DataFrame({"sutro_row_key": keys, "output": outputs}))  # doctest: +SKIP
            '20261201T101500123456Z-3f2a...parquet'
        """
        if KEY not in frame.columns:
            raise ValueError(f"the frame needs a {KEY!r} column (from row_keys); it has {frame.columns}")
        if frame.height == 0:
            return None
        if frame.schema[KEY] != pl.String:
            raise TypeError(f"{KEY!r} must be a string column, got {frame.schema[KEY]}")
        if frame[KEY].null_count():
            raise ValueError(f"{frame[KEY].null_count()} rows have a null {KEY!r}")
        if frame[KEY].n_unique() < frame.height:
            frame = frame.unique(KEY, keep="first", maintain_order=True)
        name = _new_name()
        self._folder.write(frame, name)
        return name

    # -- upkeep

    def compact(self, target_rows: int = 1_000_000) -> list[str]:
        """Merge files of fewer than ``target_rows`` rows into files of about ``target_rows`` rows.

        Files are merged in name order (per column schema), duplicates dropped (the earliest copy kept); each
        merged file is written atomically, named with the timestamp of the oldest file in it, and only then
        are its inputs removed. A reader during compaction finds every row, or at worst misses some (they
        are paid again); it never reads a wrong one. Unreadable files are left in place (with a warning).
        Holds about one output file's rows in memory. Returns the names of the files written.

        Also ``python -m sutro_core.row_store compact URI``.

        Example:
            >>> RowStore("s3://bucket/rows").compact()  # doctest: +SKIP
            ['20261201T101500123456Z-....parquet']
        """
        self._remove_stale_temps()
        counted = self._counted(self._readable(self.files()))
        small = [(name, meta) for name, meta in counted if (meta.rows or 0) < target_rows]
        groups: dict[tuple[tuple[str, str], ...], list[tuple[str, _Meta]]] = {}
        for name, meta in small:
            groups.setdefault(tuple((c, str(t)) for c, t in meta.schema.items()), []).append((name, meta))
        batches: list[list[tuple[str, _Meta]]] = []
        for group in groups.values():
            batch: list[tuple[str, _Meta]] = []
            rows = 0
            for name, meta in group:
                batch.append((name, meta))
                rows += meta.rows or 0
                if rows >= target_rows:
                    batches.append(batch)
                    batch, rows = [], 0
            batches.append(batch)
        written = []
        for batch in batches:
            if len(batch) < 2:
                continue
            names = [name for name, _ in batch]
            try:
                # one scan in name order: the first copy of a key is the earliest file's
                out = _new_name(FILE_PATTERN.match(names[0]).group(1))  # type: ignore[union-attr]
                with self._folder.local_paths(names) as paths:
                    merged = self._scan(paths).unique(KEY, keep="first", maintain_order=True)
                    self._folder.write(merged, out)
            except _READ_ERRORS as exc:  # a file removed or unreadable: leave this batch as it is
                _warn(f"row store {self.uri}: not compacting {names[0]} .. {names[-1]}: {exc}")
                continue
            written.append(out)
            for name in names:
                self._folder.remove(name)
        return written

    def prune(self, older_than: _dt.timedelta) -> list[str]:
        """Delete the files written more than ``older_than`` ago (by the timestamp in their names).

        Safe while others read and write: their rows are simply paid again when next needed. Also removes
        temp files a killed writer left (older than a day). Returns the names removed.

        Example:
            >>> RowStore("rows").prune(datetime.timedelta(days=30))  # doctest: +SKIP
        """
        cutoff = _dt.datetime.now(_dt.timezone.utc) - older_than
        removed = [n for n in self.files() if _stamp_time(n) < cutoff and self._folder.remove(n)]
        # A submission record is needed only while its step may still be retried.
        old = cutoff.timestamp()
        removed += [f"{SUBMISSIONS}/{n}" for n, mtime in self._folder.records()
                    if mtime and mtime < old and self._folder.remove(f"{SUBMISSIONS}/{n}")]
        return removed + self._remove_stale_temps()

    def clear(self) -> int:
        """Delete every file of the store (and stale temp files); returns how many data files went.

        Example:
            >>> RowStore("rows").clear()  # doctest: +SKIP
            12
        """
        removed = sum(self._folder.remove(n) for n in self.files())
        for n, _ in self._folder.records():
            self._folder.remove(f"{SUBMISSIONS}/{n}")
        self._remove_stale_temps()
        self._meta.clear()
        return removed

    def _remove_stale_temps(self) -> list[str]:
        # Only by age: a temp file of a live writer on another machine (same bucket or NFS folder) looks the
        # same as one of a dead writer here.
        now = time.time()
        stale = [n for n, mtime in self._folder.entries()
                 if TEMP_PATTERN.match(n) and mtime and now - mtime > STALE_TEMP_S]  # fmt: skip
        self._folder.abort_stale_uploads(STALE_TEMP_S)
        return [n for n in stale if self._folder.remove(n)]

    # -- submission records

    def claim_submission(self, step_key: str, keys: Sequence[str] | pl.Series) -> pl.Series:
        """Record, once, the row keys a step's job under idempotency key ``step_key`` is sent; returns the
        record that holds (this one, or the one another try of the step wrote first), a String Series named
        ``sutro_row_key`` (a million keys as Python strings would cost twice the memory).

        A retry of the step reads it back (``submission``) and sends the same rows, so it reattaches to the
        same job even when the store gained rows since. Written before the job is submitted.

        Example:
            >>> store.claim_submission("3f2a...", ["k1", "k2"]).to_list()  # doctest: +SKIP
            ['k1', 'k2']
        """
        name = self._record_name(step_key)
        keys = _key_series(keys)
        if self._folder.write_once(keys.to_frame(), name):
            return keys
        recorded = self.submission(step_key)
        if recorded is None:  # the other writer's record vanished (cleared) between the two calls
            raise RuntimeError(f"row store {self.uri}: the submission record {name} could not be read back")
        return recorded

    def submission(self, step_key: str) -> pl.Series | None:
        """The row keys recorded for ``step_key`` (a String Series named ``sutro_row_key``; None when there is
        no record).

        Example:
            >>> store.submission("3f2a...").to_list()  # doctest: +SKIP
            ['k1', 'k2']
        """
        name = self._record_name(step_key)
        try:
            return self._folder.read_small(name, [KEY])[KEY]
        except FileNotFoundError:
            return None

    @staticmethod
    def _record_name(step_key: str) -> str:
        if not _RECORD_PATTERN.match(f"{step_key}.parquet"):
            raise ValueError(f"{step_key!r} is not an idempotency key (letters, digits, '-', '_', '.')")
        return f"{SUBMISSIONS}/{step_key}.parquet"

    def info(self) -> dict[str, Any]:
        """Files, rows (duplicates included) and unreadable files of the store.

        Example:
            >>> RowStore("rows").info()  # doctest: +SKIP
            {'uri': 'rows', 'files': 3, 'rows': 2000000, 'unreadable': []}
        """
        names = self.files()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RowStoreWarning)
            readable = self._counted(self._readable(names))
        ok = {n for n, _ in readable}
        return {"uri": self.uri, "files": len(names), "rows": sum(m.rows or 0 for _, m in readable),
                "unreadable": [n for n in names if n not in ok]}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (``info``, ``compact``, ``prune``)."""
    parser = argparse.ArgumentParser(prog="python -m sutro_core.row_store", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd, text in (("info", "files and rows"), ("compact", "merge small files"), ("prune", "delete old files")):
        p = sub.add_parser(cmd, help=text)
        p.add_argument("uri")
        if cmd == "compact":
            p.add_argument("--target-rows", type=int, default=1_000_000, help="rows per merged file")
        if cmd == "prune":
            p.add_argument("--older-than-days", type=float, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sutro_core.row_store {info,compact,prune} URI``: look after a row store."""
    args = build_parser().parse_args(argv)
    store = RowStore(args.uri)
    if args.command == "info":
        result: Any = store.info()
    elif args.command == "compact":
        before = len(store.files())
        written = store.compact(args.target_rows)
        result = {"files_before": before, "written": written, "files_after": len(store.files())}
    else:
        result = {"removed": store.prune(_dt.timedelta(days=args.older_than_days))}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover - the CLI
    sys.exit(main())
