"""Decode a results parquet file's row groups while its body is still arriving.

A parquet file's footer (where the row groups are) comes last, so a plain reader waits for the last
byte and then decodes everything: the download and the decode add up (issue 17: 1.4-2.4x the time of
``pl.read_parquet`` of the file). ``body_download`` asks for the file's tail first (HTTP Range) and hands
it to ``begin``; then the rest streams in from byte 0 and ``advance`` reports each chunk on disk. A thread
decodes each run of row groups (``pl.scan_parquet().slice()``, which reads only those groups) as soon as
its bytes are on disk, so the frame is ready soon after the last byte. Without a tail (the server ignored
Range, the async client, httpx's path) ``frame()`` reads the finished file as before.

Example:
    >>> reader = ProgressiveParquet("/tmp/r.parquet.part")                   # doctest: +SKIP
    >>> body_download.get_to_file(request, reader.path, ..., listener=reader)  # doctest: +SKIP
    >>> reader.frame().height                                                # doctest: +SKIP
    1000000
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import polars as pl

from .errors import ResultsFormatError
from .results import read_parquet_file, row_group_runs

#: Compressed bytes of row groups decoded per slice. Each slice is one polars scan with its own start-up: at
#: 1M rows (2.4 MB row groups) one group a slice took 1.49-1.81x `pl.read_parquet` of the file, four groups
#: 1.20-1.43x (3 interleaved runs, benchmarks/results_download.py), with the same peak RSS.
SLICE_BYTES = 8 << 20


class ProgressiveParquet:
    """Row groups of the parquet file at ``path`` decoded as its bytes arrive; ``frame()`` joins them.

    The downloader calls ``begin`` (the tail with the footer is on disk), ``advance`` (bytes ``[0, n)``
    are on disk), ``finished`` (the body is complete) and ``abandon`` (that attempt is void: a retry or a
    different body follows; the decoder stops before the file is touched again). Thread-safe.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        #: perf_counter() when the last byte was on disk (None until then); benchmarks read it.
        self.body_done_at: float | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._slices: list[tuple[int, int, int, int]] = []  # (first byte, end byte, first row, rows)
        self._parts: list[pl.DataFrame] = []
        self._error: BaseException | None = None
        self._written = 0
        self._tail_start = 0
        self._size = 0
        self._complete = False
        self._stop = False

    # ---- the downloader's side -------------------------------------------------------------------

    def begin(self, size: int, tail: bytes) -> bool:
        """Bytes ``[size - len(tail), size)`` are on disk; start decoding. False: no footer in them."""
        self.abandon()
        slices = _slices_of(tail)
        if slices is None or (slices and slices[-1][1] < size - len(tail)):
            # no footer here, or bytes between the last row group and the tail (page indexes, bloom filters)
            # a reader might want: decode the finished file instead
            return False
        with self._cond:
            self._slices, self._parts, self._error = slices, [], None
            self._size, self._tail_start, self._written = size, size - len(tail), 0
            self._complete = self._stop = False
            self.body_done_at = None
        self._thread = threading.Thread(target=self._decode_all, name="sutro-parquet-decode", daemon=True)
        self._thread.start()
        return True

    def advance(self, written: int) -> None:
        """Bytes ``[0, written)`` are on disk."""
        with self._cond:
            self._written = written
            self._cond.notify()

    def finished(self) -> None:
        """The whole body is on disk."""
        with self._cond:
            self.body_done_at = time.perf_counter()
            self._complete = True
            self._written = self._size
            self._cond.notify()

    def abandon(self) -> None:
        """Forget this attempt: stop the decoder (waits for a slice in progress) and drop what it decoded."""
        thread = self._thread
        if thread is not None:
            with self._cond:
                self._stop = True
                self._cond.notify()
            thread.join()
        self._thread = None
        self._parts = []
        self._complete = False

    # ---- the reader's side -----------------------------------------------------------------------

    def frame(self) -> pl.DataFrame:
        """The whole file as one DataFrame (``ResultsFormatError`` when it is not valid parquet)."""
        if self._thread is None or not self._complete:  # no early decode happened: read the file
            self.abandon()
            if self.body_done_at is None:
                self.body_done_at = time.perf_counter()
            return read_parquet_file(self.path)
        self._thread.join()
        self._thread = None
        if self._error is not None:
            raise ResultsFormatError(f"the results body is not valid parquet: {type(self._error).__name__}: "
                                     f"{self._error}") from self._error
        from .artifacts import validate_results_file

        validate_results_file(Path(self.path), "parquet")  # magic at both ends, footer parses
        parts, self._parts = self._parts, []
        if not parts:
            return pl.read_parquet(self.path)  # no row groups: the schema alone
        return parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical", rechunk=False)

    def close(self) -> None:
        """Stop the decoder if it still runs (the download failed or the frame was never asked for)."""
        self.abandon()

    # ---- the decoder thread ----------------------------------------------------------------------

    def _on_disk(self, lo: int, hi: int) -> bool:
        covered = self._size if self._written >= self._tail_start else self._written
        return hi <= covered or lo >= self._tail_start

    def _decode_all(self) -> None:
        scan = pl.scan_parquet(self.path)
        for lo, hi, first, rows in self._slices:
            with self._cond:
                while not (self._stop or self._on_disk(lo, hi)):
                    self._cond.wait()
                if self._stop:
                    return
            try:
                part = scan.slice(first, rows).collect()
            except BaseException as exc:  # noqa: BLE001 - corrupt pages: frame() raises it, typed
                self._error = exc
                return
            self._parts.append(part)


def _slices_of(tail: bytes) -> list[tuple[int, int, int, int]] | None:
    """Runs of whole row groups of about ``SLICE_BYTES`` from the footer in ``tail``; None if it is not there."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(tail) < 12 or tail[-4:] != b"PAR1" or int.from_bytes(tail[-8:-4], "little") + 8 > len(tail):
        return None
    try:
        meta: Any = pq.read_metadata(pa.BufferReader(tail))  # offsets in it are absolute: a tail is enough
    except Exception:  # noqa: BLE001 - not parquet: the finished file's check names the problem
        return None
    return row_group_runs(meta, SLICE_BYTES)
