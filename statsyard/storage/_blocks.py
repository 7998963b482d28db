"""Compacted blocks: one series' points for a stretch of time, packed and checksummed.

Timestamps are delta-of-delta coded and values delta coded (as Gorilla does),
but with whole-column operations (``map(operator.sub, ...)``,
``itertools.accumulate``) and :mod:`zlib` instead of per-point bit twiddling,
which pure Python could not do fast. The layout is in ``docs/storage.md``.
"""

from __future__ import annotations

import math
import struct
import zlib
from array import array
from itertools import accumulate, chain, islice, repeat
from operator import add, le, mul, sub, truediv
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from statsyard.datapoint import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS
from statsyard.exceptions import CorruptRecordError
from statsyard.storage._batch import (
    MAX_TEXT_VALUE_BYTES,
    VALUES_MIXED,
    VALUES_TEXT,
    Value,
    decode_values,
    encode_values,
    floats_from_le,
    ints_from_le,
    le_bytes,
    out_of_range,
)
from statsyard.storage._codec import (
    decode_column,
    decode_column_np,
    encode_column,
    encode_column_np,
    read_varint,
    unzigzag,
    unzigzag_np,
    varint,
    zigzag,
)
from statsyard.storage._framing import inflate

if TYPE_CHECKING:
    from numpy.typing import NDArray

BLOCK_HEADER: Final = struct.Struct("<4sBBBBIHHqI")
"""Header of a version-2 block: marker, version, ts width, value encoding,
value parameter, count, metric length, entity length, first timestamp,
payload length (then a CRC)."""
BLOCK_MARKER: Final = b"SYBK"
BLOCK_VERSION: Final = 3
"""Version of the blocks written (format 3: varint header, no zlib table)."""
BLOCK_VERSION_2: Final = 2
"""Version of format 2's blocks (still read): :data:`BLOCK_HEADER`."""
BLOCK_HEADER_SIZE: Final = BLOCK_HEADER.size + 4  # 32 with the CRC
_VERSION_3: Final = bytes([BLOCK_VERSION])
_INT64: Final = 2**63
_HALF_INT64: Final = 2**62
NUMPY_ENCODE_POINTS: Final = 256
"""Blocks of at least this many points encode their value deltas with numpy
(the same bytes, fewer Python-level passes); smaller ones in plain Python."""
SMALL_BLOCK_POINTS: Final = 4096
"""Blocks of at most this many points decode in plain Python into lists
(a small read need not import numpy, some 60 ms); larger ones into numpy."""
_CRC = struct.Struct("<I")

VALUES_INT_DELTA: Final = 0
VALUES_DECIMAL_DELTA: Final = 1
VALUES_FLOAT_SHUFFLE: Final = 2
VALUES_GENERIC: Final = 3

WIDTHS: Final = ("b", "h", "i", "q")
"""Width codes 0..3 of value columns: signed integers of 1, 2, 4 and 8 bytes."""
GAP_WIDTHS: Final = ("B", "H", "I", "Q")
"""Width codes 0..3 of timestamp gaps: unsigned integers of 1, 2, 4 and 8 bytes."""
MAX_BLOCK_POINTS: Final = 2**21
"""Most points in one block: a checkpoint splits a longer series into several
blocks, so a block's header never declares more than 32 MiB uncompressed."""
MAX_DIGITS: Final = 6
"""Most decimal digits tried for the decimal encoding of floats."""
_SAMPLE: Final = 32
_SCALES: Final = tuple(10.0**d for d in range(16))
"""Powers of ten as floats (exact up to 10**22): the decimal encoding's divisors."""
_HALVES: Final = repeat(0.5)
ZLIB_LEVEL: Final = 1
"""Fastest zlib level: 6 only saves about 3% on typical series, at twice the cost."""


def _packed(
    column: list[int], widths: tuple[str, ...] = WIDTHS
) -> tuple[int, bytes] | None:
    """``(width code, little-endian bytes)`` of ``column`` in the narrowest
    of ``widths`` (array type codes) holding it, or None if none does.

    Tries the widths in turn (``array`` checks the range at C speed): usual
    columns fit the first or second, and a misfit mostly shows at once.
    """
    for code, typecode in enumerate(widths):
        try:
            return code, le_bytes(array(typecode, column))
        except OverflowError:
            continue
    return None


def is_sorted(column: list[int]) -> bool:
    """Whether ``column`` is in non-decreasing order (C speed)."""
    return all(map(le, column, islice(column, 1, None)))


def _decimal_digits(values: list[float]) -> tuple[int, list[int]] | None:
    """Smallest ``d`` such that every value is ``float(s) / 10.0**d`` for an int ``s``.

    Returns ``d`` and the ints (the nearest to ``v * 10**d``). Equality, not
    identity: a ``-0.0`` (which rounding a small negative value produces)
    comes back as ``0.0``, the one difference this encoding allows.
    """
    sample = values[:_SAMPLE]
    for digits in range(MAX_DIGITS + 1):
        scale = _SCALES[digits]
        try:  # a value too big to scale (or not finite): no decimal form
            scaled = _nearest_ints(sample, scale)
            if list(map(truediv, scaled, repeat(scale))) != sample:
                continue
            scaled = _nearest_ints(values, scale)
        except (OverflowError, ValueError):
            return None
        if list(map(truediv, scaled, repeat(scale))) == values:
            return digits, scaled
    return None


def _nearest_ints(values: list[float], scale: float) -> list[int]:
    """``floor(v * scale + 0.5)`` for each value: faster than ``round()``, and
    any nearest-int rule will do, since the caller checks the result exactly."""
    return list(map(math.floor, map(add, map(mul, values, repeat(scale)), _HALVES)))


def _deltas(column: list[int]) -> list[int]:
    """``column[0], column[1] - column[0], ...``."""
    return list(map(sub, column, chain((0,), column)))


def _encode_value_column(
    values: list[Value], kind: type | None
) -> tuple[int, int, bytes]:
    """``(encoding, parameter, bytes)`` of a value column (all ``kind`` if given)."""
    kinds = {kind} if kind is not None else set(map(type, values))
    if kinds == {int}:
        packed = _packed(_deltas(values))  # type: ignore[arg-type]
        if packed is not None:
            return VALUES_INT_DELTA, packed[0], packed[1]
    elif kinds == {float}:
        found = _decimal_digits(values)
        if found is not None:
            digits, scaled = found
            packed = _packed(_deltas(scaled))
            if packed is not None:
                return VALUES_DECIMAL_DELTA, packed[0] | digits << 4, packed[1]
        raw = le_bytes(array("d", values))
        # Byte-shuffle: all first bytes, then all second bytes... zlib then
        # finds the runs that the slowly varying sign/exponent bytes make.
        return VALUES_FLOAT_SHUFFLE, 0, b"".join(raw[i::8] for i in range(8))
    value_kind, data = encode_values(values)
    return VALUES_GENERIC, value_kind, data


def encode_block_v2(
    metric: str,
    entity: str,
    timestamps: list[int],
    values: list[Value],
    kind: type | None = None,
) -> tuple[bytes, int, int]:
    """A block of version 2 (what StatsYard wrote before format 3): kept to
    write format-2 fixtures in tests. Arguments as :func:`encode_block`.

    Args:
        metric: the series' metric.
        entity: the series' entity.
        timestamps: milliseconds, in arrival order (at least one).
        values: the values, in the same order.
        kind: ``int`` or ``float`` when every value is known to be of that
            exact type (saves checking), else None.

    Returns:
        The block, and its first and last timestamps.
    """
    timestamps, values, gaps = _sorted(timestamps, values)
    packed = _packed(gaps, GAP_WIDTHS)
    if packed is None:  # pragma: no cover - timestamps are bounded far below
        raise ValueError("timestamps are too far apart to encode")
    count = len(timestamps)
    first = timestamps[0]
    ts_code, ts_bytes = packed
    encoding, parameter, value_bytes = _encode_value_column(values, kind)
    payload = zlib.compress(ts_bytes + value_bytes, ZLIB_LEVEL)
    m = metric.encode("utf-8", "surrogatepass")
    e = entity.encode("utf-8", "surrogatepass")
    header = BLOCK_HEADER.pack(
        BLOCK_MARKER,
        BLOCK_VERSION_2,
        ts_code,
        encoding,
        parameter,
        count,
        len(m),
        len(e),
        first,
        len(payload),
    )
    crc = zlib.crc32(payload, zlib.crc32(e, zlib.crc32(m, zlib.crc32(header))))
    return b"".join([header, _CRC.pack(crc), m, e, payload]), first, timestamps[-1]


def _sorted(
    timestamps: list[int], values: list[Value]
) -> tuple[list[int], list[Value], list[int]]:
    """The points sorted by time, stably (ties keep arrival), and the gaps."""
    gaps = list(map(sub, islice(timestamps, 1, None), timestamps))
    if gaps and min(gaps) < 0:  # not sorted (a checkpoint's series mostly are)
        order = sorted(range(len(timestamps)), key=timestamps.__getitem__)
        timestamps = list(map(timestamps.__getitem__, order))
        values = list(map(values.__getitem__, order))
        gaps = list(map(sub, islice(timestamps, 1, None), timestamps))
    return timestamps, values, gaps


def _encode_ints_v3(column: list[int]) -> bytes | None:
    """The first int as a zigzag varint, then the column of zigzag deltas;
    None when a value or a delta leaves int64."""
    low, high = min(column), max(column)
    if low < -_INT64 or high >= _INT64:
        return None
    first = column[0]
    head = varint((first << 1) ^ (first >> 63))  # zigzag
    if len(column) == 1:
        return head
    if low >= -_HALF_INT64 and high < _HALF_INT64:  # no delta can leave int64
        if len(column) >= NUMPY_ENCODE_POINTS:
            import numpy as np  # lazily: the writer's large blocks only

            ints = np.array(column, np.int64)
            deltas = np.diff(ints)
            coded = (deltas << 1) ^ (deltas >> 63)
            return head + encode_column_np(np, coded.view(np.uint64))
        deltas_list = list(map(sub, islice(column, 1, None), column))
    else:
        deltas_list = list(map(sub, islice(column, 1, None), column))
        if min(deltas_list) < -_INT64 or max(deltas_list) >= _INT64:
            return None
    return head + encode_column(zigzag(deltas_list))


def _encode_values_v3(values: list[Value], kind: type | None) -> bytes:
    """The value encoding byte, its parameters and the value column."""
    kinds = {kind} if kind is not None else set(map(type, values))
    if kinds == {int}:
        coded = _encode_ints_v3(values)  # type: ignore[arg-type]
        if coded is not None:
            return bytes([VALUES_INT_DELTA]) + coded
    elif kinds == {float}:
        found = _decimal_digits(values)
        if found is not None:
            digits, scaled = found
            coded = _encode_ints_v3(scaled)
            if coded is not None:
                return bytes([VALUES_DECIMAL_DELTA, digits]) + coded
        raw = le_bytes(array("d", values))
        shuffled = b"".join(raw[i::8] for i in range(8))
        return bytes([VALUES_FLOAT_SHUFFLE]) + zlib.compress(shuffled, ZLIB_LEVEL)
    value_kind, data = encode_values(values)
    return bytes([VALUES_GENERIC, value_kind]) + zlib.compress(data, ZLIB_LEVEL)


def encode_block(
    metric: str,
    entity: str,
    timestamps: list[int],
    values: list[Value],
    kind: type | None = None,
) -> tuple[bytes, int, int]:
    """One block (version 3) holding the points of a series, sorted by time.

    Args:
        metric: the series' metric.
        entity: the series' entity.
        timestamps: milliseconds, in arrival order (at least one).
        values: the values, in the same order.
        kind: ``int`` or ``float`` when every value is known to be of that
            exact type (saves checking), else None.

    Returns:
        The block, and its first and last timestamps.
    """
    timestamps, values, gaps = _sorted(timestamps, values)
    count = len(timestamps)
    first = timestamps[0]
    body = [varint(first)]
    if gaps:
        smallest = min(gaps)  # a second pass, at C speed; the first may sort
        body.append(varint(smallest))
        body.append(encode_column(list(map(sub, gaps, repeat(smallest)))))
    body.append(_encode_values_v3(values, kind))
    payload = b"".join(body)
    m = metric.encode("utf-8", "surrogatepass")
    e = entity.encode("utf-8", "surrogatepass")
    block = b"".join(
        [
            BLOCK_MARKER,
            _VERSION_3,
            varint(count),
            varint(len(m)),
            varint(len(e)),
            varint(len(payload)),
            m,
            e,
            payload,
        ]
    )
    return block + _CRC.pack(zlib.crc32(block)), first, timestamps[-1]


def block_length(head: bytes) -> int | None:
    """The length of the block (version 2 or 3) whose first bytes are
    ``head`` (at least :data:`BLOCK_PEEK` of them, or all the file has left),
    or None if they do not start a block."""
    if head[:4] != BLOCK_MARKER or len(head) < 5:
        return None
    if head[4] == BLOCK_VERSION_2:
        if len(head) < BLOCK_HEADER.size:
            return None
        fields = BLOCK_HEADER.unpack_from(head)
        length: int = BLOCK_HEADER_SIZE + fields[6] + fields[7] + fields[9]
        return length
    if head[4] != BLOCK_VERSION:
        return None
    try:
        _count, m_len, e_len, payload_len, start = _v3_header(head)
    except ValueError:
        return None
    return start + m_len + e_len + payload_len + 4


BLOCK_PEEK: Final = 45
"""Bytes of a block that always hold its length fields (a version-3 block's
four varints take at most 40 bytes after the marker and version)."""


def _v3_header(data: bytes) -> tuple[int, int, int, int, int]:
    """``(count, metric length, entity length, payload length, names start)``."""
    count, pos = read_varint(data, 5)
    m_len, pos = read_varint(data, pos)
    e_len, pos = read_varint(data, pos)
    payload_len, pos = read_varint(data, pos)
    return count, m_len, e_len, payload_len, pos


def decode_block(data: bytes) -> tuple[str, str, list[int], list[Value]]:
    """Inverse of :func:`encode_block` (and of :func:`encode_block_v2`):
    ``(metric, entity, timestamps, values)``.

    Raises:
        CorruptRecordError: the block fails its checksum or is malformed.
    """
    metric, entity, timestamps, values = decode_block_columns(data)
    return (
        metric,
        entity,
        timestamps if isinstance(timestamps, list) else timestamps.tolist(),
        values if isinstance(values, list) else values.tolist(),
    )


def decode_block_columns(data: bytes) -> tuple[str, str, Any, Any]:
    """:func:`decode_block`, but the columns of a large block stay numpy arrays.

    A block of at most :data:`SMALL_BLOCK_POINTS` points decodes in plain
    Python into lists (numpy is not imported); a larger one into an int64
    timestamp array and an int64 or float64 value array (a list for the
    generic encoding: mixed kinds, text). numpy is imported on the first
    large block decoded, so that start-up and small reads do not pay for it.

    Raises:
        CorruptRecordError: the block fails its checksum or is malformed.
    """
    if len(data) < 5 or data[:4] != BLOCK_MARKER:
        raise CorruptRecordError(f"not a block: {bytes(data[:5])!r}")
    if data[4] == BLOCK_VERSION:
        return _decode_v3(data)
    if data[4] == BLOCK_VERSION_2:
        return _decode_v2(data)
    raise CorruptRecordError(f"not a version 2 or 3 block: version {data[4]}")


def _decode_v3(data: bytes) -> tuple[str, str, Any, Any]:
    try:
        count, m_len, e_len, payload_len, start = _v3_header(data)
    except ValueError as exc:
        raise CorruptRecordError(f"malformed block header: {exc}") from exc
    names_end = start + m_len + e_len
    end = names_end + payload_len
    if end + 4 != len(data):
        raise CorruptRecordError("block length does not match its header")
    if zlib.crc32(data[:end]) != _CRC.unpack_from(data, end)[0]:
        raise CorruptRecordError("block fails its checksum")
    try:
        metric = data[start : start + m_len].decode("utf-8", "surrogatepass")
        entity = data[start + m_len : names_end].decode("utf-8", "surrogatepass")
        if not 1 <= count <= MAX_BLOCK_POINTS:
            raise ValueError(f"header declares {count} points")
        body = bytes(data[names_end:end])
        if count <= SMALL_BLOCK_POINTS:
            timestamps, values = _decode_body(None, body, count)
        else:
            import numpy as np  # lazily: only large blocks need it

            timestamps, values = _decode_body(np, body, count)
    except CorruptRecordError:
        raise
    except Exception as exc:  # deliberate: any failure to decode bytes is damage
        raise CorruptRecordError(f"malformed block: {exc!r}") from exc
    return metric, entity, *_checked(timestamps, values, count)


def _decode_body(np: ModuleType | None, body: bytes, count: int) -> tuple[Any, Any]:
    """Timestamps and values of a version-3 block's payload: lists when
    ``np`` is None, else numpy arrays (values: a list for generic ones)."""
    first, pos = read_varint(body, 0)
    if first >= _INT64:
        raise ValueError(f"first timestamp {first}")
    timestamps: Any = [first]
    if count > 1:
        smallest, pos = read_varint(body, pos)
        if np is None:
            gaps, pos = decode_column(body, pos, count - 1)
            if smallest + max(gaps) > _MAX_GAP:
                raise ValueError("a gap puts a timestamp out of range")
            timestamps = list(
                accumulate(map(add, gaps, repeat(smallest)), initial=first)
            )
        else:
            column, pos = decode_column_np(np, body, pos, count - 1)
            if smallest + int(column.max()) > _MAX_GAP:
                raise ValueError("a gap puts a timestamp out of range")
            timestamps = np.empty(count, np.int64)
            timestamps[0] = first
            np.cumsum(column.astype(np.int64) + np.int64(smallest), out=timestamps[1:])
            timestamps[1:] += np.int64(first)
    if pos >= len(body):
        raise ValueError("no value column")
    encoding = body[pos]
    pos += 1
    if encoding in (VALUES_INT_DELTA, VALUES_DECIMAL_DELTA):
        scale = 1.0
        if encoding == VALUES_DECIMAL_DELTA:
            if pos >= len(body) or body[pos] > MAX_DIGITS:
                raise ValueError("bad decimal digits")
            scale = _SCALES[body[pos]]
            pos += 1
        head, pos = read_varint(body, pos)
        start = unzigzag([head])[0]
        if not -_INT64 <= start < _INT64:
            raise ValueError(f"first value {start}")
        ints: Any = [start]
        if count > 1:
            if np is None:
                deltas, pos = decode_column(body, pos, count - 1)
                ints = list(accumulate(unzigzag(deltas), initial=start))
            else:
                column, pos = decode_column_np(np, body, pos, count - 1)
                full = np.empty(count, np.int64)
                full[0] = start
                full[1:] = unzigzag_np(np, column)
                ints = _running_sums(np, full)
        if pos != len(body):
            raise ValueError("stray bytes after the value column")
        if encoding == VALUES_INT_DELTA:
            return timestamps, ints
        if isinstance(ints, list):
            problem = out_of_range([], ints)
            if problem is not None:
                raise CorruptRecordError(f"block holds a {problem}")
            return timestamps, list(map(truediv, ints, repeat(scale)))
        return timestamps, ints.astype(np.float64) / scale  # type: ignore[union-attr]
    if encoding == VALUES_FLOAT_SHUFFLE:
        raw = inflate(body[pos:], 8 * count, "block values")
        return timestamps, _unshuffle(np, raw, count)
    if encoding == VALUES_GENERIC:
        if pos >= len(body):
            raise ValueError("no value kind")
        kind = body[pos]
        _ts, size = _declared_sizes(0, VALUES_GENERIC, kind, count)
        raw = inflate(body[pos + 1 :], size, "block values")
        if kind != VALUES_TEXT and len(raw) != size:
            raise ValueError("value column has the wrong length")
        return timestamps, decode_values(kind, raw, count)
    raise ValueError(f"unknown value encoding {encoding}")


def _unshuffle(np: ModuleType | None, raw: bytes, count: int) -> Any:
    """Floats from their 8 byte planes (a list when ``np`` is None)."""
    if len(raw) != 8 * count:
        raise ValueError("float column has the wrong length")
    if np is not None:
        planes = np.frombuffer(raw, np.uint8).reshape(8, count)
        return np.ascontiguousarray(planes.T).view("<f8").reshape(count)
    planes = [raw[i * count : (i + 1) * count] for i in range(8)]
    return list(floats_from_le(bytes(chain.from_iterable(zip(*planes, strict=True)))))


def _checked(timestamps: Any, values: Any, count: int) -> tuple[Any, Any]:
    """The columns, once they hold ``count`` points within the written ranges.

    Raises:
        CorruptRecordError: they do not.
    """
    if len(timestamps) != count or len(values) != count:
        raise CorruptRecordError("block holds the wrong number of points")
    if isinstance(timestamps, list):
        problem = out_of_range(timestamps, [])
    else:  # sorted: the ends are the extremes
        problem = out_of_range([int(timestamps[0]), int(timestamps[-1])], [])
    if problem is None:
        if isinstance(values, list):
            problem = out_of_range([], values)
        elif values.dtype.kind == "f":
            import numpy as np

            if not np.isfinite(values).all():
                problem = "a value is not a finite number"
    if problem is not None:
        raise CorruptRecordError(f"block holds a {problem}")
    return timestamps, values


def _decode_v2(data: bytes) -> tuple[str, str, Any, Any]:
    """A format-2 block: lists when small, else numpy arrays."""
    if len(data) < BLOCK_HEADER_SIZE:
        raise CorruptRecordError(f"block is truncated: {len(data)} bytes")
    (
        _marker,
        _version,
        ts_code,
        encoding,
        parameter,
        count,
        m_len,
        e_len,
        first,
        payload_len,
    ) = BLOCK_HEADER.unpack_from(data)
    names_end = BLOCK_HEADER_SIZE + m_len + e_len
    if names_end + payload_len != len(data):
        raise CorruptRecordError("block length does not match its header")
    (crc,) = _CRC.unpack_from(data, BLOCK_HEADER.size)
    header = data[: BLOCK_HEADER.size]
    if zlib.crc32(data[BLOCK_HEADER_SIZE:], zlib.crc32(header)) != crc:
        raise CorruptRecordError("block fails its checksum")
    try:
        metric = data[BLOCK_HEADER_SIZE : BLOCK_HEADER_SIZE + m_len].decode(
            "utf-8", "surrogatepass"
        )
        entity = data[BLOCK_HEADER_SIZE + m_len : names_end].decode(
            "utf-8", "surrogatepass"
        )
        ts_bytes, value_bytes = _declared_sizes(ts_code, encoding, parameter, count)
        raw = inflate(data[names_end:], ts_bytes + value_bytes, "block payload")
        exact = encoding != VALUES_GENERIC or parameter != VALUES_TEXT
        if exact and len(raw) != ts_bytes + value_bytes:
            raise ValueError("payload does not match the header's sizes")
        if count <= SMALL_BLOCK_POINTS:
            timestamps: Any = list(
                accumulate(
                    ints_from_le(GAP_WIDTHS[ts_code], raw[:ts_bytes]), initial=first
                )
            )
            values = _decode_value_column_py(encoding, parameter, raw[ts_bytes:], count)
        else:
            import numpy as np  # lazily: only large blocks need it

            gaps = np.frombuffer(raw, _GAP_DTYPES[ts_code], count - 1)
            timestamps = _timestamps(np, first, gaps)
            values = _decode_value_column(
                np, encoding, parameter, raw[ts_bytes:], count
            )
    except CorruptRecordError:
        raise
    except Exception as exc:  # deliberate: any failure to decode bytes is damage
        raise CorruptRecordError(f"malformed block: {exc!r}") from exc
    return metric, entity, *_checked(timestamps, values, count)


def _decode_value_column_py(
    encoding: int, parameter: int, data: bytes, count: int
) -> list[Value]:
    """A format-2 value column in plain Python."""
    if encoding == VALUES_INT_DELTA:
        width = WIDTHS[parameter]
        return list(accumulate(ints_from_le(width, data[: count * _SIZES[width]])))
    if encoding == VALUES_DECIMAL_DELTA:
        width = WIDTHS[parameter & 0x0F]
        sums = list(accumulate(ints_from_le(width, data[: count * _SIZES[width]])))
        problem = out_of_range([], sums)
        if problem is not None:
            raise CorruptRecordError(f"block holds a {problem}")
        return list(map(truediv, sums, repeat(_SCALES[parameter >> 4])))
    if encoding == VALUES_FLOAT_SHUFFLE:
        return _unshuffle(None, data, count)  # type: ignore[no-any-return]
    if encoding == VALUES_GENERIC:
        return decode_values(parameter, data, count)
    raise ValueError(f"unknown value encoding {encoding}")


_SIZES: Final = {code: struct.calcsize(code) for code in WIDTHS + GAP_WIDTHS}


_GAP_DTYPES: Final = ("<u1", "<u2", "<u4", "<u8")
"""numpy forms of :data:`GAP_WIDTHS` (little-endian on any machine)."""
_VALUE_DTYPES: Final = ("<i1", "<i2", "<i4", "<i8")
"""numpy forms of :data:`WIDTHS`."""
_MAX_GAP: Final = MAX_TIMESTAMP_MS - MIN_TIMESTAMP_MS
"""A larger gap puts some timestamp out of range (and a sum of 2**21 gaps
this small cannot overflow int64)."""


def _timestamps(np: ModuleType, first: int, gaps: NDArray[Any]) -> Any:
    """``first`` and the running sums of ``gaps``: an int64 array, or a list of
    Python ints when a gap is too big to be sound (then out of range, exactly)."""
    if len(gaps) and int(gaps.max()) > _MAX_GAP:
        return list(accumulate(gaps.tolist(), initial=first))
    timestamps = np.empty(len(gaps) + 1, np.int64)
    timestamps[0] = first
    np.cumsum(gaps, dtype=np.int64, out=timestamps[1:])
    timestamps[1:] += np.int64(first)
    return timestamps


def _running_sums(np: ModuleType, deltas: NDArray[Any]) -> Any:
    """Running sums of int ``deltas`` as int64, or as exact Python ints when
    they leave int64 (damage: the caller's range check then names it)."""
    sums = np.cumsum(deltas, dtype=np.int64)
    if deltas.dtype.itemsize == 8 and len(sums) > 1:
        # Two's complement: s = p + d overflowed iff p and d share a sign
        # that s does not.
        before = sums[:-1]
        after = sums[1:]
        if ((before ^ after) & (deltas[1:] ^ after)).min() < 0:
            return list(accumulate(deltas.tolist()))
    return sums


def _decode_value_column(
    np: ModuleType, encoding: int, parameter: int, data: bytes, count: int
) -> Any:
    if encoding == VALUES_INT_DELTA:
        return _running_sums(np, np.frombuffer(data, _VALUE_DTYPES[parameter], count))
    if encoding == VALUES_DECIMAL_DELTA:
        scale = _SCALES[parameter >> 4]
        deltas = np.frombuffer(data, _VALUE_DTYPES[parameter & 0x0F], count)
        sums = _running_sums(np, deltas)
        if isinstance(sums, list):  # beyond int64: as the writer never does
            return list(map(truediv, sums, repeat(scale)))
        # int64 -> float64 rounds to nearest, as Python's int / float does.
        return sums.astype(np.float64) / scale
    if encoding == VALUES_FLOAT_SHUFFLE:
        if len(data) != 8 * count:
            raise ValueError("float column has the wrong length")
        planes = np.frombuffer(data, np.uint8).reshape(8, count)
        return np.ascontiguousarray(planes.T).view("<f8").reshape(count)
    if encoding == VALUES_GENERIC:
        return decode_values(parameter, data, count)
    raise ValueError(f"unknown value encoding {encoding}")


def _declared_sizes(
    ts_code: int, encoding: int, parameter: int, count: int
) -> tuple[int, int]:
    """Bytes of the timestamp column and (at most) of the value column.

    Raises:
        ValueError: the header declares something no writer produces.
    """
    if not 1 <= count <= MAX_BLOCK_POINTS:
        raise ValueError(f"header declares {count} points")
    ts_bytes = (count - 1) * struct.calcsize(GAP_WIDTHS[ts_code])
    if encoding == VALUES_INT_DELTA:
        width = struct.calcsize(WIDTHS[parameter])
    elif encoding == VALUES_DECIMAL_DELTA:
        if parameter >> 4 > MAX_DIGITS:
            raise ValueError(f"header declares {parameter >> 4} decimal digits")
        width = struct.calcsize(WIDTHS[parameter & 0x0F])
    elif encoding == VALUES_FLOAT_SHUFFLE or (
        encoding == VALUES_GENERIC and parameter < VALUES_MIXED
    ):
        width = 8
    elif encoding == VALUES_GENERIC and parameter == VALUES_MIXED:
        width = 9
    elif encoding == VALUES_GENERIC and parameter == VALUES_TEXT:
        return ts_bytes, 4 + MAX_TEXT_VALUE_BYTES * count
    else:
        raise ValueError(f"unknown value encoding {encoding}/{parameter}")
    return ts_bytes, width * count
