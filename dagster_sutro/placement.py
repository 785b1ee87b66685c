"""Where an asset's results artifact is staged, and how it is moved into the IO manager's storage unchanged.

Example:
    >>> staging_path("/data/sutro", ["ticket_labels", "2026-01-01", "5c1f.parquet"])
    '/data/sutro/ticket_labels/2026-01-01/5c1f.parquet'
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def staging_path(base: str | None, parts: Sequence[str]) -> str:
    """``base`` (a folder or fsspec URI) joined with ``parts``; without a base, ``$DAGSTER_HOME/storage/sutro``
    (a temporary folder when that is unset). Slashes inside a part are replaced, so each part is one level.

    Example:
        >>> staging_path("s3://b/sutro", ["a/b", "x.parquet"])
        's3://b/sutro/a_b/x.parquet'
    """
    base = base or os.path.join(os.environ.get("DAGSTER_HOME") or tempfile.gettempdir(), "storage", "sutro")
    parts = [p.replace("/", "_") for p in parts]
    return str(Path(base).joinpath(*parts)) if "://" not in base else "/".join([base.rstrip("/"), *parts])


def move_file(source: str, target: Any) -> str:
    """Move ``source`` to ``target`` (a path, UPath or fsspec URI) byte for byte: a rename on one filesystem,
    else one upload that appears at the target only complete (``sutro_core.storage.upload_file``: on S3 a
    streamed PUT, flat memory, stale multipart uploads of the key aborted), then the source removed.
    Returns the target as a string (without credentials).

    Example:
        >>> move_file("/tmp/stage/x.parquet", "/data/x.parquet")  # doctest: +SKIP
        '/data/x.parquet'
    """
    from sutro_core import storage

    text = str(target)
    local_target = not storage.is_remote(text)
    if not storage.is_remote(source) and local_target:
        text = text.removeprefix("file://")
        Path(text).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, text)
        return text
    with storage.local_copy(source, field="source") as local:
        if local_target:
            text = text.removeprefix("file://")
            Path(text).parent.mkdir(parents=True, exist_ok=True)
            part = Path(f"{text}.{os.getpid()}.part")
            try:  # a copy, then one rename: the target is never half written
                shutil.copyfile(local, part)
                os.replace(part, text)
            finally:
                part.unlink(missing_ok=True)
        else:
            # A UPath brings its filesystem (the IO manager's storage_options); a string URI is resolved
            # through fsspec with the environment's credentials.
            fs, path = (target.fs, target.path) if hasattr(target, "fs") else storage.filesystem(text)
            storage.upload_file(local, fs, path)
    _remove(source)
    return text if local_target else storage.safe_uri(text)


def _remove(source: str) -> None:
    """The staged file is gone once stored (a move), so staging does not grow with every materialization."""
    from sutro_core import storage

    try:
        if storage.is_remote(source):
            fs, path = storage.filesystem(source, field="source")
            fs.rm(path)
        else:
            Path(source.removeprefix("file://")).unlink(missing_ok=True)
    except OSError as exc:  # stored already: a leftover staged file is only disk space
        logger.warning("could not remove the staged results file %s: %s", storage.safe_uri(source), exc)
