"""Object storage (``s3://``, ``gs://``, ``az://`` ...): the one place the core opens, uploads and downloads
remote files, through fsspec and the filesystem libraries users already configure (s3fs, gcsfs, adlfs).

Credentials come from ``storage_options`` (fsspec's, e.g. s3fs's ``key``/``secret``/``endpoint_url``) or,
with none given, from the library's own chain: for S3 the standard AWS environment (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``), profiles or an instance role.
They are used, never stored: not in a manifest, a log line or an error message. A value may be a
``pydantic.SecretStr``; it is unwrapped only when the filesystem is built.

Uploads to S3 are ours rather than s3fs's ``put_file``, which reads a file under 100 MB into memory whole
(and a larger one 10 parts of 50 MB at a time): up to ``MULTIPART_THRESHOLD`` one ``PutObject`` whose body
is streamed from the file, above it a multipart upload of ``PART_SIZE`` parts, ``UPLOAD_CONCURRENCY`` at a
time, so memory stays flat whatever the size. Either way the object appears at its key only complete (a
PUT is atomic; a multipart upload is published by ``CompleteMultipartUpload``); a failed multipart upload
is aborted, and the unfinished uploads a killed process left for the same key are aborted before the next
upload of it.

Example:
    >>> fs, path = filesystem("s3://bucket/out/results.parquet", {"endpoint_url": "http://127.0.0.1:9000"})  # doctest: +SKIP
    >>> upload_file("/tmp/results.parquet", fs, path)                                                      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from .errors import InputValidationError

log = logging.getLogger(__name__)

#: Files up to this size go up as one streamed PutObject (S3 allows 5 GiB): one request, no parts to clean.
MULTIPART_THRESHOLD = 512 << 20
#: Bytes per multipart part (S3 needs >= 5 MiB but the last).
PART_SIZE = 16 << 20
#: Parts in flight at once: memory is about PART_SIZE times this.
UPLOAD_CONCURRENCY = 4
_MAX_PARTS = 10_000  # S3's limit: larger files get larger parts

# The package to install for a protocol fsspec knows but cannot load.
_INSTALL = {
    "s3": "pip install 'sutro-pipelines[s3]' (s3fs)",
    "s3a": "pip install 'sutro-pipelines[s3]' (s3fs)",
    "gs": "pip install gcsfs",
    "gcs": "pip install gcsfs",
    "az": "pip install adlfs",
    "abfs": "pip install adlfs",
    "abfss": "pip install adlfs",
}
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@")


def is_remote(uri: str) -> bool:
    """True for an fsspec URI other than ``file://`` (the file then goes through fsspec).

    Example:
        >>> is_remote("s3://bucket/x.parquet"), is_remote("/data/x.parquet")
        (True, False)
    """
    return "://" in uri and not uri.startswith("file://")


def protocol_of(uri: str) -> str:
    """The URI's scheme, lower case (``""`` for a plain path).

    Example:
        >>> protocol_of("S3://bucket/key")
        's3'
    """
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def safe_uri(uri: str) -> str:
    """``uri`` fit to print or store: user info (``scheme://user:secret@``) and the query string removed.

    Example:
        >>> safe_uri("s3://AKIA:hunter2@bucket/key.parquet?X-Amz-Signature=abc")
        's3://bucket/key.parquet'
    """
    return _USERINFO.sub(r"\1", uri).split("?", 1)[0]


def resolve_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``storage_options`` with ``SecretStr`` values (at any depth) unwrapped.

    Example:
        >>> from pydantic import SecretStr
        >>> resolve_options({"secret": SecretStr("s"), "client_kwargs": {"region_name": "eu-west-1"}})
        {'secret': 's', 'client_kwargs': {'region_name': 'eu-west-1'}}
    """
    def unwrap(value: Any) -> Any:
        if hasattr(value, "get_secret_value"):
            return value.get_secret_value()
        if isinstance(value, Mapping):
            return {k: unwrap(v) for k, v in value.items()}
        return value

    return {k: unwrap(v) for k, v in (storage_options or {}).items()}


def filesystem(uri: str, storage_options: Mapping[str, Any] | None = None, *,
               field: str = "output_uri") -> tuple[Any, str]:
    """The fsspec filesystem and path of a remote ``uri``. A protocol whose library is missing raises
    ``InputValidationError`` naming ``field`` and what to install (``s3://``: the ``s3`` extra).

    Example:
        >>> fs, path = filesystem("memory://sutro/x.parquet")
        >>> path
        '/sutro/x.parquet'
    """
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - fsspec ships with polars' cloud support and every orchestrator
        raise InputValidationError(field, f"{safe_uri(uri)!r} needs fsspec: pip install fsspec") from exc
    try:
        return fsspec.core.url_to_fs(uri, **resolve_options(storage_options))
    except ImportError as exc:
        proto = protocol_of(uri)
        fix = _INSTALL.get(proto, f"install the fsspec implementation of {proto}://")
        raise InputValidationError(field, f"{safe_uri(uri)!r} needs {proto}:// support: {fix}") from exc
    except ValueError as exc:
        if "Protocol not known" not in str(exc):
            raise
        raise InputValidationError(field, f"{safe_uri(uri)!r}: fsspec knows no {protocol_of(uri)}:// filesystem; "
                                   "use a local path or an s3://, gs://, az:// ... URI") from exc


def _is_s3(fs: Any) -> bool:
    try:
        from s3fs import S3FileSystem
    except ImportError:
        return False
    return isinstance(fs, S3FileSystem)


def upload_file(local_path: str | os.PathLike[str], fs: Any, path: str, *,
                multipart_threshold: int | None = None, part_size: int | None = None,
                concurrency: int | None = None) -> None:
    """Copy a local file to ``path`` on ``fs`` so that it appears there only complete, in flat memory.

    On S3: unfinished multipart uploads of the same key (a killed earlier try) are aborted first; then one
    streamed ``PutObject`` (files up to ``multipart_threshold``) or a multipart upload (``concurrency``
    parts of ``part_size`` in flight), aborted if anything fails. Other filesystems: their ``put_file``.
    The defaults are this module's ``MULTIPART_THRESHOLD``, ``PART_SIZE`` and ``UPLOAD_CONCURRENCY``.

    Example:
        >>> fs, path = filesystem("memory://sutro/up.txt")
        >>> _ = open("/tmp/up.txt", "w").write("x")
        >>> upload_file("/tmp/up.txt", fs, path); fs.cat(path)
        b'x'
    """
    local = os.fspath(local_path)
    if not _is_s3(fs):
        parent = path.rstrip("/").rsplit("/", 1)[0]
        if parent and parent != path:
            fs.makedirs(parent, exist_ok=True)
        fs.put_file(local, path)
        return
    bucket, key, _ = fs.split_path(path)
    abort_stale_uploads(fs, path)
    size = os.path.getsize(local)
    threshold = MULTIPART_THRESHOLD if multipart_threshold is None else multipart_threshold
    try:
        if size <= threshold:
            _put_streamed(fs, bucket, key, local, size)
        else:
            _put_multipart(fs, bucket, key, local, size, part_size or PART_SIZE, concurrency or UPLOAD_CONCURRENCY)
    except OSError as exc:
        named = _naming(exc, f"s3://{bucket}/{key}")
        if named is exc:
            raise
        raise named from exc
    fs.invalidate_cache(path)


def _naming(exc: OSError, uri: str) -> OSError:
    """The same kind of error, saying which object it was about (s3fs's say "The specified bucket does not
    exist" and no more)."""
    where = safe_uri(uri)
    try:
        return type(exc)(f"could not write {where}: {exc.strerror or exc}")
    except TypeError:  # an OSError subclass with another constructor: keep it as it is
        return exc


def _request_extras(fs: Any, client: Any, operation: str) -> dict[str, Any]:
    """What s3fs adds to its own calls (``s3_additional_kwargs`` such as SSE, requester-pays), where the
    operation takes it."""
    members = client.meta.service_model.operation_model(operation).input_shape.members
    extras = {**getattr(fs, "s3_additional_kwargs", {}), **getattr(fs, "req_kw", {})}
    return {k: v for k, v in extras.items() if k in members and v is not None}


def _put_streamed(fs: Any, bucket: str, key: str, local: str, size: int) -> None:
    from fsspec.asyn import sync

    async def put() -> None:
        # The client itself, not s3fs's call_s3: s3fs retries a failed call with the same body object,
        # by then read to its end; botocore's own retries rewind the file to where the request began.
        await fs.set_session()
        client = await fs.get_s3(bucket)
        from botocore.exceptions import ClientError
        from s3fs.errors import translate_boto_error

        with open(local, "rb") as body:
            try:
                await client.put_object(Bucket=bucket, Key=key, Body=body, ContentLength=size,
                                        **_request_extras(fs, client, "PutObject"))
            except ClientError as exc:  # as s3fs's own calls raise them: FileNotFoundError, PermissionError ...
                raise translate_boto_error(exc) from exc

    sync(fs.loop, put)


def _put_multipart(fs: Any, bucket: str, key: str, local: str, size: int, part_size: int, concurrency: int) -> None:
    part_size = max(part_size, 5 << 20, math.ceil(size / _MAX_PARTS))
    upload_id = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)["UploadId"]

    def put_part(index: int) -> dict[str, Any]:
        # Each worker reads its own part when it starts: at most `concurrency` parts are in memory.
        with open(local, "rb") as fh:
            fh.seek(index * part_size)
            body = fh.read(part_size)
        out = fs.call_s3("upload_part", Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=index + 1, Body=body)
        return {"PartNumber": index + 1, "ETag": out["ETag"]}

    try:
        with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="sutro-upload") as pool:
            parts = list(pool.map(put_part, range(math.ceil(size / part_size))))
        fs.call_s3("complete_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id,
                   MultipartUpload={"Parts": parts})
    except BaseException:
        try:  # the parts would otherwise be kept (and billed) by S3 until a lifecycle rule removes them
            fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception as exc:  # noqa: BLE001 - the upload's own error is the one to raise
            log.warning("could not abort the multipart upload of %s: %s (the next upload of it retries)",
                        safe_uri(f"s3://{bucket}/{key}"), type(exc).__name__)
        raise


def abort_stale_uploads(fs: Any, path: str, *, under: bool = False, older_than_s: float | None = None) -> int:
    """Abort the unfinished multipart uploads of exactly ``path``'s key (S3 only); returns how many.

    Called before each upload of a key: a process killed mid-upload leaves its parts stored (invisible, but
    billed). Best effort: without the ``s3:ListBucketMultipartUploads`` permission it does nothing. An
    upload of the same key still running elsewhere is aborted too (its step then fails and its retry
    writes the same file): two live writers of one artifact key are already a conflict.

    ``under=True``: every key under the folder ``path`` instead, but only uploads started more than
    ``older_than_s`` seconds ago (a folder's keys are written by others too; a live upload is recent).

    Example:
        >>> abort_stale_uploads(fs, "bucket/out/results.parquet")  # doctest: +SKIP
        1
        >>> abort_stale_uploads(fs, "bucket/rows", under=True, older_than_s=86400)  # doctest: +SKIP
        0
    """
    if not _is_s3(fs):
        return 0
    bucket, key, _ = fs.split_path(path)
    prefix = key.rstrip("/") + "/" if under else key
    try:
        listed = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix)
    except Exception as exc:  # noqa: BLE001 - permissions, or a store without the call: nothing to clean
        log.debug("could not list unfinished uploads under %s: %s", safe_uri(f"s3://{bucket}/{key}"),
                  type(exc).__name__)
        return 0
    cutoff = time.time() - (older_than_s or 0)
    aborted = 0
    for upload in listed.get("Uploads", []):
        if not under and upload.get("Key") != key:
            continue
        started = upload.get("Initiated")
        if under and (started is None or started.timestamp() > cutoff):
            continue
        try:
            fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted += 1
        except Exception as exc:  # noqa: BLE001 - already completed or aborted by someone else
            log.debug("could not abort upload %s: %s", upload.get("UploadId"), type(exc).__name__)
    if aborted:
        log.info("aborted %d unfinished upload(s) %s %s left by an earlier try", aborted,
                 "under" if under else "of", safe_uri(f"s3://{bucket}/{key}"))
    return aborted


#: fsspec protocols whose ``put_file`` publishes an object only complete (object stores; memory is in-process).
_WHOLE_OBJECT_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "memory"})


def publishes_whole(fs: Any) -> bool:
    """True when an upload to ``fs`` (``upload_file``) appears at its path only complete: object stores, where
    a write is one atomic PUT or a completed multipart upload. Elsewhere (sftp, hdfs ...) write a temp name
    and rename.

    Example:
        >>> publishes_whole(filesystem("memory://x")[0])
        True
    """
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return any(p in _WHOLE_OBJECT_PROTOCOLS for p in protocols)


def download_file(fs: Any, path: str, local_path: str | os.PathLike[str]) -> None:
    """Stream ``path`` on ``fs`` to a local file in flat memory (S3: one GET read in 64 KiB chunks).

    Example:
        >>> download_file(fs, "bucket/out/results.parquet", "/tmp/results.parquet")  # doctest: +SKIP
    """
    if _is_s3(fs):
        # s3fs fetches files over 50 MB as 10 concurrent 50 MB parts held in memory: one stream instead.
        fs.get_file(path, os.fspath(local_path), max_concurrency=1)
    else:
        fs.get_file(path, os.fspath(local_path))


def open_remote(uri: str, storage_options: Mapping[str, Any] | None = None, *, field: str = "uri",
                block_size: int = 1 << 20) -> IO[bytes]:
    """A seekable binary file over ``uri`` that reads only the byte ranges asked for (footers, heads).

    Example:
        >>> with open_remote("s3://bucket/results.parquet") as fh:  # doctest: +SKIP
        ...     pq.read_metadata(fh).num_rows
    """
    fs, path = filesystem(uri, storage_options, field=field)
    try:
        return fs.open(path, "rb", block_size=block_size)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{safe_uri(uri)} does not exist") from exc


@contextlib.contextmanager
def local_copy(uri: str, storage_options: Mapping[str, Any] | None = None, *, field: str = "uri") -> Iterator[Path]:
    """A local path to read ``uri`` from: the file itself when local, else a temporary download (one streamed
    GET, flat memory) removed on exit.

    Example:
        >>> with local_copy("s3://bucket/results.parquet") as path:  # doctest: +SKIP
        ...     pl.read_parquet(path).height
    """
    if not is_remote(uri):
        yield Path(uri.removeprefix("file://")).expanduser()
        return
    fs, path = filesystem(uri, storage_options, field=field)
    tmp = temp_path("download")
    try:
        try:
            download_file(fs, path, tmp)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{safe_uri(uri)} does not exist") from exc
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


# ---- local temp files of remote transfers ---------------------------------------------------------------

def _temp_dir() -> Path:
    # Per user: the sweep below then only ever meets this user's files.
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    folder = Path(tempfile.gettempdir()) / f"sutro-transfers-{uid}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def temp_path(kind: str) -> Path:
    """A fresh local temp file name for a remote upload or download (``<kind>-<pid>-<uuid>.part``), after
    removing the ones processes that are gone left behind (a kill -9 runs no cleanup).

    Example:
        >>> temp_path("upload").name.startswith("upload-")
        True
    """
    folder = _temp_dir()
    remove_stale_temp_files(folder)
    return folder / f"{kind}-{os.getpid()}-{uuid.uuid4().hex}.part"


def remove_stale_temp_files(folder: Path, max_age_s: float = 86400.0) -> list[Path]:
    """Delete ``*-<pid>-<uuid>.part`` files in ``folder`` whose process is gone, or older than ``max_age_s``.

    Example:
        >>> remove_stale_temp_files(Path(tempfile.mkdtemp()))
        []
    """
    removed = []
    for part in folder.glob("*-*-*.part"):
        pid = part.name.rsplit("-", 2)[-2]
        try:
            old = time.time() - part.stat().st_mtime > max_age_s
        except OSError:
            continue
        if old or not (pid.isdigit() and _pid_alive(int(pid))):
            try:
                part.unlink()
                removed.append(part)
            except OSError:
                pass
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # someone else's live process (or no way to tell: keep it)
        return True
    return True
