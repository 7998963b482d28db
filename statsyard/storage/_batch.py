"""The payload of a write-ahead log record: one batch of points, as columns.

Encoding is the ingest hot path, so it does as little per-point Python work as
possible: one loop files each point into its series in the head (which also
yields the point's series number) and everything else is packed as whole
columns with :mod:`array` (C speed). The layout is in ``docs/storage.md``.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from itertools import compress
from operator import not_
from typing import Final, TypeAlias

import attrs
import cramjam

from statsyard.datapoint import (
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
)
from statsyard.exceptions import CorruptRecordError
from statsyard.storage._framing import MAX_RECORD_PAYLOAD, Cursor, inflate

Value = int | float
ValueColumn: TypeAlias = "array[float] | array[int] | list[Value]"
"""A batch's values: an ``array("d")`` if all are floats, an ``array("q")``
if all are ints within int64, else a list."""

MAX_NAME_BYTES: Final = 65_535
"""Longest metric or entity name the format holds (validation allows far less)."""

MAX_TABLE_BYTES: Final = 64 * 2**20
"""Largest series table (uncompressed) of one batch; ``append`` refuses more."""
MAX_TEXT_VALUE_BYTES: Final = 32
"""Longest text form of one value (``repr`` of a float64 or an int64) plus comma."""

KIND_BATCH: Final = 1
"""Record kind of a batch of points in the write-ahead log (formats 2 and 3
write it; still read)."""
KIND_BATCH_ZSTD: Final = 3
"""Record kind of a batch compressed with zstd (format 4 writes it): the
batch payload's length (u32), then one zstd frame of it."""
BATCH_KINDS: Final = frozenset({KIND_BATCH, KIND_BATCH_ZSTD})
"""Every record kind that holds a batch."""
ZSTD_LEVEL: Final = 1
"""zstd's fastest standard level: a third of the raw batch at about 0.04 µs a
point, with the interpreter lock released while it runs."""

VALUES_INT64: Final = 0
VALUES_FLOAT64: Final = 1
VALUES_MIXED: Final = 2
VALUES_TEXT: Final = 3

BATCH_HEADER: Final = struct.Struct("<IIB3xI")
"""Series count, point count, value kind, compressed series table length."""
_ENTRY = struct.Struct("<IHH")  # series number, metric length, entity length
_U32 = struct.Struct("<I")
_LITTLE: Final = sys.byteorder == "little"
_FLOAT_FLAG: Final = {float: 1, int: 0}


def le_bytes(column: array[int] | array[float]) -> bytes:
    """The little-endian bytes of an array."""
    if not _LITTLE:
        column = array(column.typecode, column)
        column.byteswap()
    return column.tobytes()


def ints_from_le(typecode: str, data: bytes | memoryview) -> list[int]:
    """The ints of an integer array of ``typecode`` stored little-endian."""
    column = array(typecode)
    column.frombytes(data)
    if not _LITTLE:
        column.byteswap()
    return column.tolist()


def floats_from_le(data: bytes | memoryview) -> list[float]:
    """The floats of a float64 array stored little-endian."""
    column = array("d")
    column.frombytes(data)
    if not _LITTLE:
        column.byteswap()
    return column.tolist()


def out_of_range(timestamps: Sequence[int], values: Sequence[Value]) -> str | None:
    """Why these points could not have been written, or None if they could.

    The ranges are :func:`statsyard.datapoint.validate`'s: timestamps in
    ``[MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS)``, finite floats, 64-bit ints. A
    few passes at C speed; values read back are checked as values written.
    """
    if timestamps:
        low, high = min(timestamps), max(timestamps)
        if low < MIN_TIMESTAMP_MS or high >= MAX_TIMESTAMP_MS:
            bad = low if low < MIN_TIMESTAMP_MS else high
            return f"timestamp {bad} outside [{MIN_TIMESTAMP_MS}, {MAX_TIMESTAMP_MS})"
    if type(values) is array:
        if values.typecode == "q":
            return None
        if math.isfinite(sum(values)):  # C speed; inf or nan make it not finite
            return None
    try:
        if not all(map(math.isfinite, values)):
            return "a value is not a finite number"
        if type(values) is not array:  # mixed kinds: the ints must fit int64
            array("q", [v for v in values if type(v) is int])
    except OverflowError:
        return "an int value does not fit in 64 bits"
    return None


def value_text(values: Sequence[Value]) -> bytes:
    """Type-preserving text form of values: ints without a dot, floats by repr."""
    return ",".join(
        [repr(int(v)) if isinstance(v, int) else repr(float(v)) for v in values]
    ).encode("ascii")


def parse_value_text(data: bytes) -> list[Value]:
    """Inverse of :func:`value_text`.

    Raises:
        ValueError: a token is neither an int nor a float.
    """
    out: list[Value] = []
    for token in data.decode("ascii").split(","):
        if len(token) > MAX_TEXT_VALUE_BYTES:
            raise ValueError("a value's text is longer than any value's")
        try:
            out.append(int(token))
        except ValueError:
            out.append(float(token))
    return out


def encode_values(values: Sequence[Value]) -> tuple[int, bytes]:
    """Pack a value column, keeping ints ints and floats floats: ``(kind, bytes)``."""
    kinds = set(map(type, values))
    try:
        if kinds == {float}:
            return VALUES_FLOAT64, le_bytes(array("d", values))
        if kinds == {int}:
            return VALUES_INT64, le_bytes(array("q", values))
        if kinds == {int, float}:
            flags = bytes(map(_FLOAT_FLAG.__getitem__, map(type, values)))
            floats = array("d", compress(values, flags))
            ints = array("q", compress(values, map(not_, flags)))
            return VALUES_MIXED, flags + le_bytes(floats) + le_bytes(ints)
    except OverflowError:
        pass  # an int beyond 64 bits: the text form keeps it exact
    text = value_text(values)
    return VALUES_TEXT, _U32.pack(len(text)) + text


def value_column(values: Sequence[Value]) -> ValueColumn:
    """The values as the tightest :data:`ValueColumn` that keeps their types."""
    kinds = set(map(type, values))
    if kinds == {float}:
        return array("d", values)
    if kinds == {int}:
        try:
            return array("q", values)
        except OverflowError:
            pass  # beyond int64: kept as objects
    return list(values)


def encode_column(column: ValueColumn) -> tuple[int, bytes]:
    """:func:`encode_values` of a :data:`ValueColumn`."""
    if type(column) is array:
        kind = VALUES_FLOAT64 if column.typecode == "d" else VALUES_INT64
        return kind, le_bytes(column)
    return encode_values(column)


def decode_values(kind: int, data: bytes, count: int) -> list[Value]:
    """Inverse of :func:`encode_values`; ``data`` must be exactly the column."""
    if kind in (VALUES_FLOAT64, VALUES_INT64):
        if len(data) != 8 * count:
            raise ValueError("value column has the wrong length")
        if kind == VALUES_FLOAT64:
            return list(floats_from_le(data))
        return list(ints_from_le("q", data))
    if kind == VALUES_MIXED:
        if len(data) != 9 * count:
            raise ValueError("mixed value column has the wrong length")
        flags = data[:count]
        if flags.translate(None, b"\x00\x01"):
            raise ValueError("a mixed value flag is neither 0 nor 1")
        n_floats = flags.count(1)
        floats = iter(floats_from_le(data[count : count + 8 * n_floats]))
        ints = iter(ints_from_le("q", data[count + 8 * n_floats :]))
        return [next(floats) if flag else next(ints) for flag in flags]
    if kind == VALUES_TEXT:
        (length,) = _U32.unpack_from(data, 0)
        if length != len(data) - 4 or length > MAX_TEXT_VALUE_BYTES * count:
            raise ValueError("text value column has the wrong length")
        values = parse_value_text(data[4:])
        if len(values) != count:
            raise ValueError("value count does not match")
        return values
    raise ValueError(f"unknown value kind {kind}")


@attrs.frozen
class Batch:
    """A decoded batch record: its series table and its columns."""

    keys: dict[int, tuple[str, str]]
    """Series number (within the record) -> ``(metric, entity)``."""
    series_numbers: list[int]
    timestamps: array[int]
    values: ValueColumn


@attrs.define
class TableCache:
    """The last series table a storage compressed, and for which series numbers."""

    numbers: list[int] = attrs.Factory(list)
    table: bytes = b""


def series_entry(number: int, metric: str, entity: str) -> bytes:
    """A series' entry in a batch's series table (computed once per series)."""
    m = metric.encode("utf-8", "surrogatepass")
    e = entity.encode("utf-8", "surrogatepass")
    if len(m) > MAX_NAME_BYTES or len(e) > MAX_NAME_BYTES:
        raise ValueError(
            f"metric and entity names must be at most {MAX_NAME_BYTES} bytes in "
            f"UTF-8, got {len(m)} and {len(e)}"
        )
    return _ENTRY.pack(number, len(m), len(e)) + m + e


def encode_batch(
    series_numbers: array[int],
    timestamps: array[int],
    values: ValueColumn,
    entries: Sequence[bytes],
    cache: TableCache,
) -> bytes:
    """Pack a batch as columns.

    Args:
        series_numbers: for each point, the number of its series
            (an ``array("I")``).
        timestamps: for each point, its timestamp (an ``array("q")``).
        values: for each point, its value (see :func:`value_column`).
        entries: :func:`series_entry` of every number in ``series_numbers``.
        cache: the storage's :class:`TableCache` (saves compressing the same
            series table batch after batch).
    """
    numbers = sorted(set(series_numbers))
    if numbers == cache.numbers:
        table = cache.table  # collectors send the same series every time
    else:
        raw = b"".join(map(entries.__getitem__, numbers))
        if len(raw) > MAX_TABLE_BYTES:
            raise ValueError(
                f"a batch names at most {MAX_TABLE_BYTES} bytes of series, got "
                f"{len(raw)}: split it"
            )
        table = zlib.compress(raw, 1)
        cache.numbers, cache.table = numbers, table
    kind, value_bytes = encode_column(values)
    return b"".join(
        [
            BATCH_HEADER.pack(len(numbers), len(series_numbers), kind, len(table)),
            table,
            le_bytes(series_numbers),
            le_bytes(timestamps),
            value_bytes,
        ]
    )


def compress_batch(payload: bytes) -> bytes:
    """A :data:`KIND_BATCH_ZSTD` record's payload for a batch payload."""
    return _U32.pack(len(payload)) + bytes(
        cramjam.zstd.compress(payload, level=ZSTD_LEVEL)
    )


def batch_payload(kind: int, payload: bytes) -> bytes:
    """The batch payload a log record of ``kind`` holds (decompressed if it is).

    Allocates at most the length the record states, itself at most the
    largest record payload a writer makes: a frame that inflates to more or
    less is damage, not an allocation.

    Raises:
        CorruptRecordError: not a batch kind, or a malformed frame.
    """
    if kind == KIND_BATCH:
        return payload
    if kind != KIND_BATCH_ZSTD:
        raise CorruptRecordError(f"unknown record kind {kind}")
    if len(payload) < _U32.size:
        raise CorruptRecordError("compressed batch is shorter than its length field")
    (length,) = _U32.unpack_from(payload)
    if length > MAX_RECORD_PAYLOAD:
        raise CorruptRecordError(
            f"compressed batch states {length} bytes, more than a record holds"
        )
    out = bytearray(length)
    try:
        written = cramjam.zstd.decompress_into(memoryview(payload)[_U32.size :], out)
    except cramjam.DecompressionError as exc:
        raise CorruptRecordError(f"malformed zstd frame: {exc}") from exc
    if written != length:
        raise CorruptRecordError(
            f"zstd frame inflates to {written} bytes, its record states {length}"
        )
    return bytes(out)


def decode_batch_record(kind: int, payload: bytes) -> Batch:
    """:func:`decode_batch` of a log record of any batch kind.

    Raises:
        CorruptRecordError: as :func:`batch_payload` and :func:`decode_batch`.
    """
    return decode_batch(batch_payload(kind, payload))


def decode_batch(payload: bytes) -> Batch:
    """Unpack a batch payload into its series table and columns.

    Raises:
        CorruptRecordError: the payload is malformed.
    """
    try:
        batch = _decode_batch(payload)
    except CorruptRecordError:
        raise
    except Exception as exc:  # deliberate: any failure to decode bytes is damage
        raise CorruptRecordError(f"malformed batch record: {exc!r}") from exc
    problem = out_of_range(batch.timestamps, batch.values)
    if problem is not None:
        raise CorruptRecordError(f"batch record holds a {problem}")
    return batch


def _decode_batch(payload: bytes) -> Batch:
    n_series, n_points, kind, table_len = BATCH_HEADER.unpack_from(payload, 0)
    if n_series > n_points or 12 * n_points > len(payload):
        raise ValueError(f"header declares {n_series} series, {n_points} points")
    cursor = Cursor(payload, BATCH_HEADER.size)
    limit = min(n_series * (_ENTRY.size + 2 * MAX_NAME_BYTES), MAX_TABLE_BYTES)
    table = inflate(cursor.take(table_len), limit, "series table")
    keys: dict[int, tuple[str, str]] = {}
    at = 0
    for _ in range(n_series):
        number, m_len, e_len = _ENTRY.unpack_from(table, at)
        at += _ENTRY.size
        metric = table[at : at + m_len].decode("utf-8", "surrogatepass")
        entity = table[at + m_len : at + m_len + e_len].decode("utf-8", "surrogatepass")
        at += m_len + e_len
        keys[number] = (metric, entity)
    if at != len(table):
        raise ValueError("series table has stray bytes")
    series_numbers = ints_from_le("I", cursor.take(4 * n_points))
    timestamps = array("q")
    timestamps.frombytes(cursor.take(8 * n_points))
    if not _LITTLE:
        timestamps.byteswap()
    values = value_column(decode_values(kind, cursor.rest(), n_points))
    if not keys.keys() >= set(series_numbers):
        raise ValueError("a point's series is not in the series table")
    return Batch(keys, series_numbers, timestamps, values)
