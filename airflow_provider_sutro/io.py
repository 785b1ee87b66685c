"""Translate Airflow's ways of naming data into what ``sutro_core`` accepts.

* Inputs: a list, a DataFrame, a local .csv/.parquet/.txt path and an http(s) URL go to the core as they
  are. An object-storage URI (``s3://``, ``gs://``, ``file://``, ``memory://``...) or an ``ObjectStoragePath``
  is read here through Airflow's object storage (so Airflow connections supply credentials). An upstream
  Sutro task's manifest (the dict it returned to XCom) means "the parquet file at its ``uri``".
* Outputs: a templated string or an ``ObjectStoragePath`` becomes the URI string the core writes to.

Example::

    resolve_inputs(["a", "b"])                              # ['a', 'b']
    resolve_inputs({"uri": "/data/run1/embeddings.parquet"}) # '/data/run1/embeddings.parquet'
    output_uri_to_str(ObjectStoragePath("file:///tmp/out.parquet"))
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

import polars as pl
from sutro_core import InputValidationError

log = logging.getLogger(__name__)

_READABLE = (".parquet", ".csv")

_URI_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


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
    name = str(path).split("?", 1)[0].lower()
    if not name.endswith(_READABLE):
        raise InputValidationError(field, f"object-storage inputs must be .parquet or .csv: {str(path)!r}")
    if not path.exists():
        raise InputValidationError(field, f"{str(path)!r} does not exist; check the upstream output URI")
    with path.open("rb") as fh:
        return pl.read_parquet(fh) if name.endswith(".parquet") else pl.read_csv(fh)


def resolve_inputs(value: Any, field: str = "inputs") -> Any:
    """Turn an Airflow-side input reference into data ``BatchJobRequest`` accepts.

    Example::

        resolve_inputs("s3://bucket/tickets.parquet")   # polars DataFrame read via ObjectStoragePath
    """
    from airflow.sdk import ObjectStoragePath

    if isinstance(value, Mapping) and "uri" in value and "rows" in value:
        # An upstream Sutro task's manifest: chain on its results file.
        value = value["uri"]
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
        if getattr(value, "conn_id", None):
            # fsspec does not understand Airflow's "scheme://conn_id@bucket" form; credentials then come
            # from the environment of the worker, not from the Airflow connection.
            log.warning("output_uri %s names Airflow connection %r; the results are written with the "
                        "worker's default credentials for %s://", value, value.conn_id, value.protocol)
            return f"{value.protocol}://{value.path}"
        return str(value) if value.protocol else os.fspath(value.path)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if not isinstance(value, str):
        raise InputValidationError(field, f"must be a path or URI string, got {type(value).__name__}")
    return value.strip()
