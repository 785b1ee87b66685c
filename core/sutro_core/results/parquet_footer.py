"""Add key-value metadata to a parquet file by rewriting only its footer.

A parquet file is ``b"PAR1" <row groups> <FileMetaData> <4-byte LE footer length> b"PAR1"``.
``FileMetaData`` is a Thrift compact-protocol struct whose field 5 is
``key_value_metadata: list<KeyValue{1: required string key, 2: optional string value}>``.
Column-chunk offsets inside the footer are absolute, so as long as the data pages do not move
we can replace the footer alone: cost is O(footer), not O(file), which keeps
``download_results`` close to a raw byte copy.

Every top-level field other than 5 is copied byte-for-byte; only the field *headers* are
re-encoded, because the compact protocol stores field ids as deltas from the previous field.

Example:
    >>> import pyarrow as pa, pyarrow.parquet as pq, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.parquet")
    >>> pq.write_table(pa.table({"x": [1, 2]}), path)
    >>> add_key_value_metadata(path, {"sutro.job_id": "job-1"})
    >>> read_key_value_metadata(path)["sutro.job_id"]
    'job-1'
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

__all__ = ["add_key_value_metadata", "read_key_value_metadata"]

logger = logging.getLogger(__name__)

_MAGIC = b"PAR1"
_MAGIC_ENCRYPTED = b"PARE"
_TRAILER_LEN = 8  # 4-byte footer length + magic

# Thrift compact-protocol type ids.
_STOP = 0
_BOOL_TRUE = 1
_BOOL_FALSE = 2
_BYTE = 3
_I16 = 4
_I32 = 5
_I64 = 6
_DOUBLE = 7
_BINARY = 8
_LIST = 9
_SET = 10
_MAP = 11
_STRUCT = 12
_UUID = 13

_KV_FIELD_ID = 5  # FileMetaData.key_value_metadata
_ENCRYPTION_ALGORITHM_FIELD_ID = 8  # FileMetaData.encryption_algorithm (plaintext-footer mode)
_MAX_DEPTH = 64  # real parquet footers nest < 10 deep; a bound turns garbage into ValueError, not RecursionError


class _Reader:
    """Cursor over a compact-protocol byte buffer; every read is bounds-checked."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise ValueError("corrupt parquet footer: unexpected end of Thrift data")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def advance(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError("corrupt parquet footer: length runs past end of Thrift data")
        self.pos += n

    def varint(self) -> int:
        result = 0
        shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise ValueError("corrupt parquet footer: varint longer than 10 bytes")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def binary(self) -> bytes:
        n = self.varint()
        start = self.pos
        self.advance(n)
        return self.buf[start : self.pos]

    def field_header(self, last_id: int) -> tuple[int, int]:
        """Return ``(type, field_id)``; type ``_STOP`` ends the struct."""
        b = self.byte()
        ftype = b & 0x0F
        if ftype == _STOP:
            return _STOP, 0
        delta = b >> 4
        field_id = last_id + delta if delta else self.zigzag()
        return ftype, field_id

    def collection_header(self) -> tuple[int, int]:
        """List/set header: short form packs size (0-14) in the high nibble; 15 means a varint follows."""
        b = self.byte()
        size = b >> 4
        if size == 15:
            size = self.varint()
        return b & 0x0F, size

    def skip(self, ftype: int, depth: int = 0, in_field_header: bool = False) -> None:
        """Skip one value of compact type ``ftype`` (a bool in a field header carries no payload)."""
        if depth > _MAX_DEPTH:
            raise ValueError("corrupt parquet footer: Thrift nesting deeper than %d" % _MAX_DEPTH)
        if ftype in (_BOOL_TRUE, _BOOL_FALSE):
            if not in_field_header:
                self.advance(1)  # bools inside lists/maps are one byte each
        elif ftype == _BYTE:
            self.advance(1)
        elif ftype in (_I16, _I32, _I64):
            self.varint()
        elif ftype == _DOUBLE:
            self.advance(8)
        elif ftype == _BINARY:
            self.advance(self.varint())
        elif ftype == _UUID:
            self.advance(16)
        elif ftype in (_LIST, _SET):
            etype, size = self.collection_header()
            for _ in range(size):
                self.skip(etype, depth + 1)
        elif ftype == _MAP:
            size = self.varint()
            if size:
                kv = self.byte()
                ktype, vtype = kv >> 4, kv & 0x0F
                for _ in range(size):
                    self.skip(ktype, depth + 1)
                    self.skip(vtype, depth + 1)
        elif ftype == _STRUCT:
            last = 0
            while True:
                t, last = self.field_header(last)
                if t == _STOP:
                    break
                self.skip(t, depth + 1, in_field_header=True)
        else:
            raise ValueError(f"corrupt parquet footer: unknown Thrift compact type {ftype}")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


def _field_header(ftype: int, field_id: int, last_id: int) -> bytes:
    delta = field_id - last_id
    if 0 < delta <= 15:
        return bytes([(delta << 4) | ftype])
    return bytes([ftype]) + _zigzag(field_id)


def _list_header(etype: int, size: int) -> bytes:
    if size < 15:
        return bytes([(size << 4) | etype])
    return bytes([0xF0 | etype]) + _varint(size)


def _encode_binary(data: bytes) -> bytes:
    return _varint(len(data)) + data


def _encode_key_value(key: str, value: str) -> bytes:
    # KeyValue{1: key, 2: value}: deltas 1 and 1, then STOP.
    return (
        bytes([(1 << 4) | _BINARY])
        + _encode_binary(key.encode("utf-8"))
        + bytes([(1 << 4) | _BINARY])
        + _encode_binary(value.encode("utf-8"))
        + bytes([_STOP])
    )


def _parse_key_values(raw: bytes) -> list[tuple[bytes | None, bytes]]:
    """Split a raw field-5 value into ``(key, raw element bytes)`` so unreplaced entries copy verbatim."""
    r = _Reader(raw)
    etype, size = r.collection_header()
    if etype != _STRUCT:
        raise ValueError(f"corrupt parquet footer: key_value_metadata holds type {etype}, expected struct")
    entries: list[tuple[bytes | None, bytes]] = []
    for _ in range(size):
        start = r.pos
        key: bytes | None = None
        last = 0
        while True:
            t, last = r.field_header(last)
            if t == _STOP:
                break
            if last == 1 and t == _BINARY:
                key = r.binary()
            else:
                r.skip(t, 1, in_field_header=True)
        entries.append((key, raw[start : r.pos]))
    return entries


def _parse_top_level(footer: bytes) -> tuple[list[tuple[int, int, bytes]], int]:
    """Split FileMetaData into ``(field_id, type, raw value)`` in file order; returns the end offset."""
    r = _Reader(footer)
    fields: list[tuple[int, int, bytes]] = []
    last = 0
    while True:
        t, last = r.field_header(last)
        if t == _STOP:
            return fields, r.pos
        start = r.pos
        r.skip(t, 1, in_field_header=True)
        fields.append((last, t, footer[start : r.pos]))


def _validate_metadata(metadata: Mapping[str, str]) -> None:
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping of str to str, got {type(metadata).__name__}")
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(
                f"metadata[{k!r}] must map str to str, got {type(k).__name__} -> {type(v).__name__}; "
                "convert values with str() or json.dumps() first"
            )


def _merge(
    existing: list[tuple[bytes | None, bytes]], metadata: Mapping[str, str]
) -> list[bytes]:
    new = {k.encode("utf-8"): v for k, v in metadata.items()}
    out: list[bytes] = []
    written: set[bytes] = set()
    for key, raw in existing:
        if key is not None and key in new:
            if key not in written:  # replace in place, dropping later duplicates of the same key
                out.append(_encode_key_value(key.decode("utf-8"), new[key]))
                written.add(key)
        else:
            out.append(raw)
    for key, value in new.items():
        if key not in written:
            out.append(_encode_key_value(key.decode("utf-8"), value))
    return out


def _build_footer(footer: bytes, metadata: Mapping[str, str]) -> bytes:
    fields, end = _parse_top_level(footer)
    if any(fid == _ENCRYPTION_ALGORITHM_FIELD_ID for fid, _, _ in fields):
        raise ValueError(
            "parquet file uses encryption (plaintext footer with signature); rewriting its footer "
            "would break the signature — write metadata with the encrypting writer instead"
        )
    if end != len(footer):
        raise ValueError(
            f"corrupt parquet footer: {len(footer) - end} unexpected bytes after FileMetaData"
        )

    existing: list[tuple[bytes | None, bytes]] = []
    others: list[tuple[int, int, bytes]] = []
    for fid, t, raw in fields:
        if fid == _KV_FIELD_ID:
            if t != _LIST:
                raise ValueError(f"corrupt parquet footer: key_value_metadata has type {t}, expected list")
            existing.extend(_parse_key_values(raw))
        else:
            others.append((fid, t, raw))

    elements = _merge(existing, metadata)
    kv_value = _list_header(_STRUCT, len(elements)) + b"".join(elements)

    # Insert field 5 after the fields with smaller ids, keeping every other field in file order.
    insert_at = next((i for i, (fid, _, _) in enumerate(others) if fid > _KV_FIELD_ID), len(others))
    ordered = others[:insert_at] + [(_KV_FIELD_ID, _LIST, kv_value)] + others[insert_at:]

    parts: list[bytes] = []
    last = 0
    for fid, t, raw in ordered:
        parts.append(_field_header(t, fid, last))
        parts.append(raw)  # empty for bools: their value lives in the header type
        last = fid
    parts.append(bytes([_STOP]))
    return b"".join(parts)


def add_key_value_metadata(path: str | os.PathLike[str], metadata: Mapping[str, str]) -> None:
    """Merge ``metadata`` into the parquet file's key-value metadata, rewriting only the footer.

    Existing keys (e.g. ``ARROW:schema``) are kept in order; keys given here replace equal keys
    and new keys are appended. The data pages are never read or moved. The file is modified in
    place, so call this on a temp file *before* its atomic rename: a crash mid-rewrite then
    leaves only an unpublished temp file behind.

    Raises ``ValueError`` if the file is not parquet, has an encrypted footer, or is corrupt,
    and ``TypeError`` if ``metadata`` is not a ``str -> str`` mapping. The file is untouched
    when an error is raised.

    Example:
        >>> add_key_value_metadata("results.parquet.tmp", {"sutro.job_id": "job-123"})  # doctest: +SKIP
    """
    _validate_metadata(metadata)
    with open(path, "r+b") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size < len(_MAGIC) + _TRAILER_LEN:
            raise ValueError(f"{os.fspath(path)!r} is not a parquet file: only {size} bytes")
        f.seek(0)
        head = f.read(4)
        f.seek(size - _TRAILER_LEN)
        trailer = f.read(_TRAILER_LEN)
        tail_magic = trailer[4:]
        if tail_magic == _MAGIC_ENCRYPTED:
            raise ValueError(
                f"{os.fspath(path)!r} has an encrypted parquet footer (PARE); cannot add metadata "
                "without the decryption key"
            )
        if head != _MAGIC or tail_magic != _MAGIC:
            raise ValueError(
                f"{os.fspath(path)!r} is not a parquet file: expected magic b'PAR1' at both ends, "
                f"got {head!r} and {tail_magic!r}"
            )
        footer_len = int.from_bytes(trailer[:4], "little")
        footer_start = size - _TRAILER_LEN - footer_len
        if footer_len == 0 or footer_start < len(_MAGIC):
            raise ValueError(
                f"{os.fspath(path)!r} is a corrupt parquet file: footer length {footer_len} "
                f"does not fit in a {size}-byte file"
            )
        f.seek(footer_start)
        footer = f.read(footer_len)

        # Build everything in memory first so a parse error leaves the file untouched.
        new_footer = _build_footer(footer, metadata)
        tail = new_footer + len(new_footer).to_bytes(4, "little") + _MAGIC

        f.seek(footer_start)
        f.write(tail)
        if len(tail) < _TRAILER_LEN + footer_len:
            # Only when replaced values got shorter; truncating can wait on writeback of the last pages.
            f.truncate(footer_start + len(tail))
    logger.debug(
        "rewrote parquet footer of %s: %d -> %d bytes (%d keys merged)",
        os.fspath(path), footer_len, len(new_footer), len(metadata),
    )


def read_key_value_metadata(path: str | os.PathLike[str], storage_options: Mapping[str, object] | None = None
                            ) -> dict[str, str]:
    """Return the parquet file's key-value metadata as ``str -> str`` (empty if none).

    Values that are absent in the file read back as ``""``. ``path`` may be a remote URI (``s3://`` ...):
    then only the footer's bytes are read (range requests), with ``storage_options`` for fsspec.

    Example:
        >>> read_key_value_metadata("results.parquet")["sutro.job_id"]  # doctest: +SKIP
        'job-123'
    """
    import pyarrow.parquet as pq  # imported lazily: pyarrow is heavy and only needed for reading

    from .. import storage

    text = os.fspath(path)
    if storage.is_remote(text):
        with storage.open_remote(text, storage_options, field="path", block_size=1 << 16) as fh:
            raw = pq.read_metadata(fh).metadata or {}
    else:
        raw = pq.read_metadata(text.removeprefix("file://")).metadata or {}
    return {k.decode("utf-8", "replace"): (v or b"").decode("utf-8", "replace") for k, v in raw.items()}
