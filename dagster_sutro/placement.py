"""Where an asset's results artifact is staged, and how it is moved into the IO manager's storage unchanged.

Example:
    >>> staging_path("/data/sutro", ["ticket_labels", "2026-01-01", "5c1f.parquet"])
    '/data/sutro/ticket_labels/2026-01-01/5c1f.parquet'
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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
    a streamed copy across; returns the target as a string.

    Example:
        >>> move_file("/tmp/stage/x.parquet", "/data/x.parquet")  # doctest: +SKIP
        '/data/x.parquet'
    """
    text = str(target)
    if "://" not in source and "://" not in text.replace("file://", ""):
        Path(text).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, text)
        return text
    import fsspec

    # A UPath opens with its own credentials; a string URI through fsspec.
    dst_cm = target.open("wb") if hasattr(target, "open") else fsspec.open(text, "wb")
    with fsspec.open(source, "rb") as src, dst_cm as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return text
