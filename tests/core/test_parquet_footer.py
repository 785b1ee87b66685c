"""Footer-only key-value metadata rewrite (sutro_core.results.parquet_footer).

Files are written by real writers (pyarrow, polars) and read back by real readers; no network
is involved, so no server fixture is needed here.
"""

from __future__ import annotations

import base64
import os
import struct
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sutro_core.results.parquet_footer import (
    _BINARY,
    _LIST,
    _parse_top_level,
    add_key_value_metadata,
    read_key_value_metadata,
)

JOB_META = {
    "sutro.job_id": "job-7f3a",
    "sutro.model": "qwen-3-4b",
    "sutro.row_count": "1000",
    "sutro.created_at": "2026-11-22T23:00:00Z",
}


def _footer(path: Path) -> bytes:
    data = path.read_bytes()
    n = int.from_bytes(data[-8:-4], "little")
    return data[-8 - n : -8]


def _kv_payload_len(meta: dict[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())


def _assert_rewrite_ok(path: Path, table: pa.Table, added: dict[str, str]) -> None:
    """What a user checks: same data, same arrow types, merged metadata, small size growth."""
    before_meta = read_key_value_metadata(path)
    before_size = path.stat().st_size
    before_rg = pq.ParquetFile(path).metadata.num_row_groups

    add_key_value_metadata(path, added)

    after = pq.read_table(path)
    assert after.schema.equals(table.schema), "ARROW:schema must survive so arrow types round-trip"
    assert after.equals(table)
    md = pq.read_metadata(path)
    assert md.num_rows == table.num_rows
    assert md.num_row_groups == before_rg
    kv = read_key_value_metadata(path)
    assert kv == {**before_meta, **added}
    # Each new KeyValue costs its bytes plus 2 field headers, 2 length varints and a STOP.
    new_keys = {k: v for k, v in added.items() if k not in before_meta}
    growth = path.stat().st_size - before_size
    assert growth <= _kv_payload_len(new_keys) + 7 * len(added) + 8
    assert pl.read_parquet(path).shape == (table.num_rows, table.num_columns)


def _sample_table(n: int = 1000) -> pa.Table:
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("text", pa.string()),
            ("score", pa.float64()),
            ("embedding", pa.list_(pa.float32())),
            ("tags", pa.list_(pa.string())),
            ("info", pa.struct([("ok", pa.bool_()), ("n", pa.int32())])),
        ]
    )
    return pa.table(
        {
            "id": list(range(n)),
            "text": [f"row {i} " * (i % 5) if i % 7 else None for i in range(n)],
            "score": [i / 3 for i in range(n)],
            "embedding": [[float(i), float(-i), 0.5] for i in range(n)],
            "tags": [["a", "b"][: i % 3] for i in range(n)],
            "info": [{"ok": i % 2 == 0, "n": i} for i in range(n)],
        },
        schema=schema,
    )


@pytest.mark.parametrize("compression", ["zstd", "snappy"])
@pytest.mark.parametrize("store_schema", [True, False])
def test_pyarrow_file_several_row_groups(tmp_path: Path, compression: str, store_schema: bool) -> None:
    table = _sample_table()
    path = tmp_path / "r.parquet"
    pq.write_table(
        table, path, compression=compression, row_group_size=128, write_statistics=True, store_schema=store_schema
    )
    assert pq.ParquetFile(path).metadata.num_row_groups == 8
    if store_schema:
        assert "ARROW:schema" in read_key_value_metadata(path)
        _assert_rewrite_ok(path, table, JOB_META)
    else:
        # No field 5 at all before: it is inserted between row_groups (4) and created_by (6).
        assert read_key_value_metadata(path) == {}
        add_key_value_metadata(path, JOB_META)
        assert read_key_value_metadata(path) == JOB_META
        assert pq.read_table(path).to_pylist() == table.to_pylist()
    # Statistics are untouched (they live in the copied row_groups field).
    stats = pq.ParquetFile(path).metadata.row_group(1).column(0).statistics
    assert (stats.min, stats.max) == (128, 255)


def test_existing_user_metadata_is_merged_and_replaced(tmp_path: Path) -> None:
    table = _sample_table(50).replace_schema_metadata({"owner": "data-team", "sutro.job_id": "old"})
    path = tmp_path / "r.parquet"
    pq.write_table(table, path)
    before = read_key_value_metadata(path)
    assert {"owner", "sutro.job_id", "ARROW:schema"} <= before.keys()

    add_key_value_metadata(path, JOB_META)

    kv = read_key_value_metadata(path)
    assert kv["owner"] == "data-team"
    assert kv["sutro.job_id"] == "job-7f3a"
    assert kv["ARROW:schema"] == before["ARROW:schema"]
    assert pq.read_table(path).to_pylist() == table.to_pylist()
    # Arrow restores schema metadata from ARROW:schema, and our keys become schema metadata too.
    assert pq.read_table(path).schema.metadata[b"owner"] == b"data-team"


def test_rewrite_twice_replaces_without_growing(tmp_path: Path) -> None:
    table = _sample_table(10)
    path = tmp_path / "r.parquet"
    pq.write_table(table, path)
    add_key_value_metadata(path, JOB_META)
    size = path.stat().st_size
    add_key_value_metadata(path, JOB_META)
    assert path.stat().st_size == size
    add_key_value_metadata(path, {"sutro.job_id": "job-7f3b"})  # same length value
    assert path.stat().st_size == size
    assert read_key_value_metadata(path)["sutro.job_id"] == "job-7f3b"
    assert pq.read_table(path).equals(table)
    add_key_value_metadata(path, {"sutro.model": "m"})  # shorter value: footer shrinks, file is truncated
    assert path.stat().st_size == size - (len(JOB_META["sutro.model"]) - 1)
    assert read_key_value_metadata(path)["sutro.model"] == "m"
    assert pq.read_table(path).equals(table)


def test_zero_rows(tmp_path: Path) -> None:
    table = _sample_table(0)
    path = tmp_path / "empty.parquet"
    pq.write_table(table, path)
    _assert_rewrite_ok(path, table, JOB_META)
    assert pl.read_parquet(path).height == 0


def test_many_keys_use_long_list_header(tmp_path: Path) -> None:
    # >= 15 elements forces the long-form list header (size nibble 0xF + varint).
    table = pa.table({"x": [1, 2, 3]})
    path = tmp_path / "r.parquet"
    pq.write_table(table, path)
    many = {f"k{i:03d}": "v" * i for i in range(40)}
    _assert_rewrite_ok(path, table, many)
    assert len(read_key_value_metadata(path)) == 41


def test_unicode_and_large_values(tmp_path: Path) -> None:
    table = pa.table({"x": [1]})
    path = tmp_path / "r.parquet"
    pq.write_table(table, path)
    meta = {"sutro.modèle": "Qwen 🚀", "big": "x" * 300_000}  # > 1 varint byte of length
    _assert_rewrite_ok(path, table, meta)


def test_polars_written_file(tmp_path: Path) -> None:
    df = pl.DataFrame(
        {
            "id": list(range(5000)),
            "text": [f"t{i}" for i in range(5000)],
            "emb": [[float(i), 1.0] for i in range(5000)],
        },
        schema={"id": pl.Int64, "text": pl.String, "emb": pl.List(pl.Float32)},
    )
    path = tmp_path / "pl.parquet"
    df.write_parquet(path, compression="zstd", statistics=True, row_group_size=1000)
    before = pl.read_parquet_metadata(path)

    add_key_value_metadata(path, JOB_META)

    assert pl.read_parquet(path).equals(df)
    assert pl.read_parquet_metadata(path) == {**before, **JOB_META}
    assert pq.read_table(path).num_rows == 5000


# --- unknown fields: the generic skipper must walk every compact type and copy values verbatim ---


def _uv(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _zz(n: int) -> bytes:
    return _uv((n << 1) ^ (n >> 63))


def _long_header(ftype: int, fid: int) -> bytes:
    return bytes([ftype]) + _zz(fid)


def _unknown_fields(last_id: int) -> bytes:
    """Hand-encoded fields with ids the parquet reader does not know, covering every compact type."""
    nested_struct = (
        bytes([0x15]) + _zz(-7)  # i32 field 1
        + bytes([0x19, 0x2C])  # list<struct> field 2, 2 elements
        + bytes([0x18]) + _uv(2) + b"hi" + b"\x00"  # {1: binary}
        + bytes([0x11]) + b"\x00"  # {1: bool true (in header)}
        + bytes([0x1B]) + b"\x00"  # empty map field 3 (size 0, no type byte)
        + b"\x00"
    )
    fields = [
        (20, bytes([0x01])),  # bool true, value in the header
        (21, bytes([0x07]) + struct.pack("<d", 1.5)),  # double: 8 bytes little-endian
        (22, bytes([0x0B]) + _uv(2) + bytes([0x85]) + _uv(1) + b"a" + _zz(-1) + _uv(1) + b"b" + _zz(300)),
        (23, bytes([0x0A]) + bytes([0x36]) + _zz(1) + _zz(-(2**40)) + _zz(2**62)),  # set<i64>, 3
        (24, bytes([0x09]) + bytes([0xF1]) + _uv(20) + bytes([1, 2] * 10)),  # list<bool> long form
        (25, bytes([0x04]) + _zz(-300)),  # i16
        (26, bytes([0x03]) + b"\xfe"),  # byte
        (100, bytes([0x0C]) + nested_struct),  # struct, id delta > 15 -> long header below
        (3000, bytes([0x08]) + _uv(3) + b"xyz"),  # binary
        (3001, bytes([0x02])),  # bool false, value in the header
    ]
    out = bytearray()
    last = last_id
    for fid, body in fields:
        ftype, value = body[0], body[1:]
        delta = fid - last
        out += bytes([(delta << 4) | ftype]) if 0 < delta <= 15 else _long_header(ftype, fid)
        out += value
        last = fid
    return bytes(out)


def _inject_unknown_fields(path: Path) -> None:
    data = path.read_bytes()
    n = int.from_bytes(data[-8:-4], "little")
    footer = data[-8 - n : -8]
    fields, end = _parse_top_level(footer)
    assert footer[end - 1] == 0  # STOP
    new_footer = footer[: end - 1] + _unknown_fields(fields[-1][0]) + b"\x00"
    path.write_bytes(data[: -8 - n] + new_footer + len(new_footer).to_bytes(4, "little") + b"PAR1")


def test_unknown_fields_of_every_type_are_copied_verbatim(tmp_path: Path) -> None:
    table = _sample_table(100)
    path = tmp_path / "r.parquet"
    pq.write_table(table, path, row_group_size=30)
    _inject_unknown_fields(path)
    assert pq.read_table(path).equals(table)  # the real reader skips them too: our encoding is valid
    before = [f for f in _parse_top_level(_footer(path))[0] if f[0] != 5]
    assert [f[0] for f in before][-10:] == [20, 21, 22, 23, 24, 25, 26, 100, 3000, 3001]

    add_key_value_metadata(path, JOB_META)

    after_fields = _parse_top_level(_footer(path))[0]
    assert [f for f in after_fields if f[0] != 5] == before
    kv_fields = [f for f in after_fields if f[0] == 5]
    assert len(kv_fields) == 1 and kv_fields[0][1] == _LIST
    assert pq.read_table(path).equals(table)
    assert read_key_value_metadata(path) == {
        **{"ARROW:schema": read_key_value_metadata(path)["ARROW:schema"]},
        **JOB_META,
    }


def test_key_value_without_value_is_preserved(tmp_path: Path) -> None:
    # KeyValue.value is optional; such an entry (key only) must survive verbatim.
    table = pa.table({"x": [1, 2]})
    path = tmp_path / "r.parquet"
    pq.write_table(table, path, store_schema=False)
    data = path.read_bytes()
    n = int.from_bytes(data[-8:-4], "little")
    footer = data[-8 - n : -8]
    fields, _ = _parse_top_level(footer)
    # Rebuild the footer with field 5 = [KeyValue{1: "flag"}], placed after field 4.
    kv = bytes([0x1C]) + bytes([0x10 | _BINARY]) + _uv(4) + b"flag" + b"\x00"
    out, last = bytearray(), 0
    for fid, t, raw in sorted(fields + [(5, _LIST, kv)], key=lambda f: f[0]):
        out += bytes([((fid - last) << 4) | t]) + raw
        last = fid
    out += b"\x00"
    path.write_bytes(data[: -8 - n] + bytes(out) + len(out).to_bytes(4, "little") + b"PAR1")
    assert pq.read_metadata(path).metadata == {b"flag": b""}

    add_key_value_metadata(path, {"a": "1"})

    assert read_key_value_metadata(path) == {"flag": "", "a": "1"}
    assert b"\x18\x04flag\x00" in _footer(path)  # copied verbatim: still no value field
    assert pq.read_table(path).equals(table)


# --- errors: clear messages, file untouched ---


def test_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    path.write_bytes(b"id,text\n1,hello\n2,world\n")
    with pytest.raises(ValueError, match="not a parquet file"):
        add_key_value_metadata(path, JOB_META)
    path.write_bytes(b"PAR")
    with pytest.raises(ValueError, match="not a parquet file: only 3 bytes"):
        add_key_value_metadata(path, JOB_META)


def test_corrupt_footer_leaves_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"x": [1]}), path)
    data = path.read_bytes()
    # Footer length larger than the file.
    bad_len = data[:-8] + (len(data) + 10).to_bytes(4, "little") + b"PAR1"
    path.write_bytes(bad_len)
    with pytest.raises(ValueError, match="footer length"):
        add_key_value_metadata(path, JOB_META)
    assert path.read_bytes() == bad_len
    # A truncated Thrift struct inside a well-framed footer.
    n = int.from_bytes(data[-8:-4], "little")
    cut = data[: -8 - n] + data[-8 - n : -8 - n // 2]
    truncated = cut + (n - n // 2).to_bytes(4, "little") + b"PAR1"
    path.write_bytes(truncated)
    with pytest.raises(ValueError, match="corrupt parquet footer"):
        add_key_value_metadata(path, JOB_META)
    assert path.read_bytes() == truncated
    # An unknown compact type id.
    garbage = b"PAR1" + b"\x1f\x00" + (2).to_bytes(4, "little") + b"PAR1"
    path.write_bytes(garbage)
    with pytest.raises(ValueError, match="unknown Thrift compact type 15"):
        add_key_value_metadata(path, JOB_META)
    assert path.read_bytes() == garbage


def test_bad_metadata_types_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"x": [1]}), path)
    with pytest.raises(TypeError, match=r"metadata\['sutro.row_count'\].*str\(\)"):
        add_key_value_metadata(path, {"sutro.row_count": 3})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="mapping"):
        add_key_value_metadata(path, [("a", "b")])  # type: ignore[arg-type]


class _ToyKms:
    """Reversible key wrapping for tests only (a real KMS would call out to Vault/AWS)."""

    @staticmethod
    def factory(_config: object) -> object:
        import pyarrow.parquet.encryption as pe

        class Client(pe.KmsClient):
            def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> bytes:
                return base64.b64encode(key_bytes)

            def unwrap_key(self, wrapped_key: bytes, master_key_identifier: str) -> bytes:
                return base64.b64decode(wrapped_key)

        return Client()


@pytest.mark.parametrize("plaintext_footer", [False, True])
def test_encrypted_files_are_refused(tmp_path: Path, plaintext_footer: bool) -> None:
    import pyarrow.parquet.encryption as pe

    factory = pe.CryptoFactory(_ToyKms.factory)
    props = factory.file_encryption_properties(
        pe.KmsConnectionConfig(),
        pe.EncryptionConfiguration(
            footer_key="fk", column_keys={"ck": ["x"]}, plaintext_footer=plaintext_footer, double_wrapping=False
        ),
    )
    path = tmp_path / "enc.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), path, encryption_properties=props)
    data = path.read_bytes()
    assert data[-4:] == (b"PAR1" if plaintext_footer else b"PARE")
    with pytest.raises(ValueError, match="encrypt"):
        add_key_value_metadata(path, JOB_META)
    assert path.read_bytes() == data


# --- property test over random small tables ---

_scalar = st.sampled_from(
    [
        (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
        (pa.int32(), st.integers(-(2**31), 2**31 - 1)),
        (pa.float64(), st.floats(allow_nan=False)),
        (pa.string(), st.text(max_size=20)),
        (pa.bool_(), st.booleans()),
        (pa.list_(pa.float32()), st.lists(st.floats(width=32, allow_nan=False), max_size=4)),
    ]
)


@st.composite
def _tables(draw: st.DrawFn) -> pa.Table:
    n_rows = draw(st.integers(0, 40))
    cols = draw(st.lists(_scalar, min_size=1, max_size=4))
    arrays, fields = [], []
    for i, (typ, values) in enumerate(cols):
        data = draw(st.lists(st.one_of(st.none(), values), min_size=n_rows, max_size=n_rows))
        arrays.append(pa.array(data, type=typ))
        fields.append(pa.field(f"c{i}", typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    table=_tables(),
    meta=st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=40), max_size=20),
    row_group_size=st.integers(1, 50),
    compression=st.sampled_from(["zstd", "snappy", "none"]),
    store_schema=st.booleans(),
)
def test_property_rewrite_preserves_data_and_merges(
    tmp_path: Path,
    table: pa.Table,
    meta: dict[str, str],
    row_group_size: int,
    compression: str,
    store_schema: bool,
) -> None:
    path = tmp_path / "prop.parquet"
    pq.write_table(table, path, row_group_size=row_group_size, compression=compression, store_schema=store_schema)
    before = read_key_value_metadata(path)
    before_size = os.path.getsize(path)

    add_key_value_metadata(path, meta)

    assert pq.read_table(path).to_pylist() == table.to_pylist()
    if store_schema:
        assert pq.read_table(path).schema.remove_metadata().equals(table.schema)
    assert read_key_value_metadata(path) == {**before, **meta}
    new = {k: v for k, v in meta.items() if k not in before}
    assert os.path.getsize(path) - before_size <= _kv_payload_len(new) + 7 * len(meta) + 8
