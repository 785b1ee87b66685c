"""Translate Airflow's ways of naming data into what ``sutro_core`` accepts.

* Inputs: a list, a DataFrame, a local .csv/.parquet/.txt path and an http(s) URL go to the core as they
  are. An object-storage URI (``s3://``, ``gs://``, ``file://``, ``memory://``...) or an ``ObjectStoragePath``
  is read here through Airflow's object storage (so Airflow connections supply credentials). An upstream
  Sutro task's manifest (the dict it returned to XCom) means "the parquet file at its ``uri``".
* Outputs: a templated string or an ``ObjectStoragePath`` becomes the URI string the core writes to; an
  ``ObjectStoragePath`` with a connection (``ObjectStoragePath("s3://bucket/x.parquet", conn_id="aws_s3")``,
  or the string form ``"s3://aws_s3@bucket/x.parquet"``) is handed to the core as it is
  (``output_destination``), so the results are written with that connection's credentials and endpoint.
  The manifest's ``uri`` never names the connection; its ``conn_id`` does, so a downstream Sutro task that
  takes the manifest as ``inputs`` reads the file through the same connection.

Example::

    resolve_inputs(["a", "b"])                              # ['a', 'b']
    resolve_inputs({"uri": "/data/run1/embeddings.parquet"}) # '/data/run1/embeddings.parquet'
    output_uri_to_str(ObjectStoragePath("file:///tmp/out.parquet"))
    output_destination("s3://aws_s3@bucket/{{ ds }}.parquet")  # after templating: an ObjectStoragePath
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import polars as pl
from sutro_core import InputValidationError


_READABLE = (".parquet", ".csv")

_URI_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_CONN_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://([^/@:]+)@")  # scheme://conn_id@bucket/key


def _is_object_storage_uri(value: str) -> bool:
    match = _URI_RE.match(value)
    return bool(match) and match.group(1).lower() not in ("http", "https")


def _storage_path(uri: str) -> Any:
    """An ``ObjectStoragePath`` when Airflow knows the scheme (credentials from Airflow connections),
    else a plain fsspec path (e.g. ``memory://``) so any fsspec filesystem still works."""
    from airflow.sdk import ObjectStoragePath

    path = ObjectStoragePath(uri)
    try:
        path.fs  # noqa: B018 - resolving the filesystem is the check
    except ValueError:
        from upath import UPath

        return UPath(uri)
    return path


def _read_object_storage(path: Any, field: str) -> pl.DataFrame:
    from sutro_core import storage

    name = str(path).split("?", 1)[0].lower()
    if not name.endswith(_READABLE):
        raise InputValidationError(field, f"object-storage inputs must be .parquet or .csv: {str(path)!r}")
    if not path.exists():
        raise InputValidationError(field, f"{str(path)!r} does not exist; check the upstream output URI")
    # One streamed download to a local temp file (the path's own filesystem: its connection's credentials),
    # then a local read: the file is never held in memory beside the frame.
    local = storage.temp_path("download")
    try:
        storage.download_file(path.fs, path.fs._strip_protocol(str(path.path)), local)
        return pl.read_parquet(local) if name.endswith(".parquet") else pl.read_csv(local)
    finally:
        local.unlink(missing_ok=True)


def resolve_inputs(value: Any, field: str = "inputs") -> Any:
    """Turn an Airflow-side input reference into data ``BatchJobRequest`` accepts.

    Example::

        resolve_inputs("s3://bucket/tickets.parquet")   # polars DataFrame read via ObjectStoragePath
    """
    from airflow.sdk import ObjectStoragePath

    if isinstance(value, Mapping) and "uri" in value and "rows" in value:
        # An upstream Sutro task's manifest: chain on its results file, through the connection it was
        # written with (if any).
        conn_id = value.get("conn_id")
        value = value["uri"]
        if conn_id and isinstance(value, str) and _is_object_storage_uri(value):
            value = ObjectStoragePath(value, conn_id=conn_id)
    if isinstance(value, ObjectStoragePath):
        if not value.protocol or value.protocol == "file":
            return os.fspath(value.path)
        return _read_object_storage(value, field)
    if isinstance(value, str) and _is_object_storage_uri(value):
        if value.lower().startswith("file://"):
            return value[len("file://") :]
        return _read_object_storage(_storage_path(value), field)
    if value is None:
        raise InputValidationError(field, "no inputs given; pass a list, a file path/URI, a URL or DataFrame")
    return value


def output_uri_to_str(value: Any, field: str = "output_uri") -> str:
    """The URI string the core writes results to.

    Example::

        output_uri_to_str("/tmp/{{ run_id }}.parquet")   # after templating: '/tmp/manual__...parquet'
    """
    from airflow.sdk import ObjectStoragePath

    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputValidationError(
            field,
            "no output location given; pass output_uri='s3://bucket/path/results.parquet' or a local path",
        )
    if isinstance(value, ObjectStoragePath):
        if value.protocol and value.protocol != "file":
            return f"{value.protocol}://{value.path}"  # never "scheme://conn_id@...": fsspec would misread it
        return os.fspath(value.path)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if not isinstance(value, str):
        raise InputValidationError(field, f"must be a path or URI string, got {type(value).__name__}")
    value = value.strip()
    match = _CONN_RE.match(value)
    if match and match.group(1).lower() not in ("http", "https"):
        return f"{match.group(1)}://{value[match.end():]}"
    return value


def output_destination(value: Any, field: str = "output_uri") -> Any:
    """What the core writes the results to: the URI string of ``output_uri_to_str``, or, for an
    ``ObjectStoragePath`` with an Airflow connection (or a ``scheme://conn_id@bucket/key`` string), the path
    itself, whose filesystem the connection configures (credentials, ``endpoint_url`` from its extra).

    Example::

        output_destination("s3://aws_s3@bucket/out.parquet")   # ObjectStoragePath(conn_id='aws_s3')
        output_destination("/tmp/out.parquet")                  # '/tmp/out.parquet'
    """
    from airflow.sdk import ObjectStoragePath

    if isinstance(value, str):
        match = _CONN_RE.match(value.strip())
        if match and match.group(1).lower() not in ("http", "https"):
            value = ObjectStoragePath(value.strip())
    if isinstance(value, ObjectStoragePath) and getattr(value, "conn_id", None) and value.protocol not in (None, "", "file"):
        return value
    return output_uri_to_str(value, field)


def connection_of(value: Any) -> str | None:
    """The Airflow connection an output names (``ObjectStoragePath.conn_id`` or ``scheme://conn_id@...``).

    Example::

        connection_of("s3://aws_s3@bucket/out.parquet")   # 'aws_s3'
    """
    dest = output_destination(value) if value is not None else None
    return getattr(dest, "conn_id", None) if not isinstance(dest, str) else None
