"""ProgressiveParquet (core/sutro_core/progressive_parquet.py): row groups decoded as the file's bytes land.

The downloader's calls are made by hand here, a file written piece by piece, so what is decoded when is
certain; the HTTP side (Range requests, retries, fallbacks) is in tests/core/test_body_download.py and
tests/reliability/test_results_progressive.py.
"""

from __future__ import annotations

import io
import threading
import time

import polars as pl
import pytest
from sutro_core import ResultsFormatError, progressive_parquet
from sutro_core.progressive_parquet import ProgressiveParquet

ROWS = 6_000


def _file(rows: int = ROWS, row_group: int = 1_000) -> tuple[bytes, pl.DataFrame]:
    df = pl.DataFrame({"outputs": [f"answer {i} " + "x" * (i % 50) for i in range(rows)], "n": range(rows)})
    buf = io.BytesIO()
    df.write_parquet(buf, row_group_size=row_group, compression="zstd")
    return buf.getvalue(), df


def _decoders() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sutro-parquet-decode"]


def _wait_for(condition, seconds: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "the decoder did not get there in time"
        time.sleep(0.005)


@pytest.fixture(autouse=True)
def one_group_a_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progressive_parquet, "SLICE_BYTES", 1)


def _start(path, data: bytes, tail_len: int) -> tuple[ProgressiveParquet, int]:
    start = len(data) - tail_len
    with open(path, "wb") as fh:  # what body_download does: sparse, the tail at its place
        fh.truncate(len(data))
        fh.seek(start)
        fh.write(data[start:])
    reader = ProgressiveParquet(str(path))
    assert reader.begin(len(data), data[start:])
    return reader, start


def test_row_groups_are_decoded_before_the_last_byte_and_the_frame_is_the_file(tmp_path):
    data, df = _file()
    path = tmp_path / "r.parquet.part"
    reader, tail_start = _start(path, data, 4096)
    slices = reader._slices
    assert len(slices) == 6
    with open(path, "r+b") as fh:
        for lo, hi, _, _ in slices[:3]:  # the first three row groups land; the decoder takes them at once
            fh.seek(0)
            fh.write(data[:hi])
            reader.advance(hi)
        _wait_for(lambda: len(reader._parts) == 3)
        assert reader._parts[2]["n"][0] == 2_000  # in order, whole groups
        fh.seek(0)
        fh.write(data[:tail_start])
        reader.advance(tail_start)
    reader.finished()
    assert reader.frame().equals(df)
    assert not _decoders()


def test_without_a_footer_in_the_tail_the_finished_file_is_read(tmp_path):
    data, df = _file()
    path = tmp_path / "r.parquet.part"
    path.write_bytes(data)
    reader = ProgressiveParquet(str(path))
    assert not reader.begin(len(data), data[-16:])  # too short to hold the footer
    assert not reader.begin(len(data), b"not a parquet file at all")
    reader.finished()
    assert reader.frame().equals(df) and not _decoders()


def test_abandon_stops_a_waiting_decoder_and_forgets_its_slices(tmp_path):
    data, df = _file()
    path = tmp_path / "r.parquet.part"
    reader, _ = _start(path, data, 4096)
    with open(path, "r+b") as fh:
        fh.write(data[: reader._slices[0][1]])
    reader.advance(reader._slices[0][1])
    _wait_for(lambda: len(reader._parts) == 1)
    reader.abandon()  # a retry is coming: the decoder is gone before the file is touched again
    assert not _decoders() and reader._parts == []
    path.write_bytes(data)  # the retry's body, read as a finished file
    assert reader.frame().equals(df)


def test_a_corrupt_row_group_is_a_typed_error_and_no_thread_is_left(tmp_path):
    data, _ = _file()
    path = tmp_path / "r.parquet.part"
    reader, tail_start = _start(path, data, 4096)
    lo, hi, _, _ = reader._slices[1]
    garbled = data[:lo] + bytes(hi - lo) + data[hi:tail_start]
    with open(path, "r+b") as fh:
        fh.write(garbled)
    reader.advance(tail_start)
    reader.finished()
    with pytest.raises(ResultsFormatError, match="not valid parquet"):
        reader.frame()
    assert not _decoders()


def test_a_file_with_no_rows_keeps_its_schema(tmp_path):
    data, df = _file(rows=0)
    path = tmp_path / "r.parquet.part"
    reader, _ = _start(path, data, len(data) - 4)
    path.write_bytes(data)
    reader.finished()
    assert reader.frame().schema == df.schema


def test_bytes_between_the_row_groups_and_the_tail_mean_no_early_decode(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = pl.DataFrame({"outputs": [f"answer {i}" for i in range(ROWS)]})
    path = tmp_path / "r.parquet"
    pq.write_table(df.to_arrow(), path, row_group_size=1_000, write_page_index=True)  # indexes after the groups
    data = path.read_bytes()
    last = pq.read_metadata(pa.BufferReader(data)).row_group(5).column(0)
    last_group_end = (last.dictionary_page_offset if last.has_dictionary_page else last.data_page_offset) \
        + last.total_compressed_size
    footer = int.from_bytes(data[-8:-4], "little") + 8
    assert len(data) - footer > last_group_end  # the page indexes sit between them
    reader = ProgressiveParquet(str(path))
    assert not reader.begin(len(data), data[-footer:])  # the tail holds the footer only
    assert reader.begin(len(data), data[last_group_end - 10:])  # the tail reaches into the last row group
    reader.abandon()
    assert not _decoders()
