"""Integer columns packed without per-block tables: varints, zigzag, Rice planes, runs.

A block of format 3 stores its timestamp gaps and value deltas as columns of
unsigned integers, each in the smallest of four codings (``docs/storage.md``
has the layout): one repeated value, Golomb-Rice codes in two bit planes
(remainders of ``k`` bits; quotients in unary), runs of zeros between the
non-zero entries (each list Rice coded), or fixed-width integers in a zlib
stream. None needs a table, so a 60-point column costs bytes, not the tens
of bytes of a zlib stream's Huffman table.

Every decoder comes twice: in plain Python (lists, for small blocks, so that
a small read does not import numpy) and over numpy arrays (large blocks).
Both bound what they allocate by the bytes they are given and the count
the caller declares, and raise ``ValueError`` on anything malformed.
"""

from __future__ import annotations

import zlib
from array import array
from functools import cache
from itertools import chain, compress, repeat
from operator import add, and_, lshift, neg, or_, rshift, sub, xor
from types import ModuleType
from typing import Any, Final

from statsyard.storage._batch import le_bytes
from statsyard.storage._framing import inflate

COL_CONST: Final = 0
COL_RICE: Final = 1
COL_RUNS: Final = 2
COL_PACKED: Final = 3

MAX_RICE_K: Final = 32
"""Largest Rice parameter: remainders of at most 32 bits."""
MAX_UNARY_BITS_PER_VALUE: Final = 4
"""A Rice column's unary plane holds at most 4 bits a value (plus 64): the
encoder picks ``k`` so that quotients stay small, and a decoder of hostile
bytes never expands more than that."""
PACKED_WIDTHS: Final = ("B", "H", "I", "Q")
PACKED_MIN_VALUES: Final = 256
"""Columns shorter than this never try zlib (its table costs more there)."""
ZLIB_LEVEL: Final = 1
_U64: Final = 2**64


# -- varints and zigzag ---------------------------------------------------------------


def varint(value: int) -> bytes:
    """LEB128: 7 bits a byte, low bits first, high bit set on all but the last."""
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_ONE_BYTE: Final = tuple(bytes([value]) for value in range(0x80))


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """``(value, position after it)`` of the varint at ``pos`` (at most 10 bytes).

    Raises:
        ValueError: truncated or longer than 10 bytes.
    """
    value = shift = 0
    for at in range(pos, min(pos + 10, len(data))):
        byte = data[at]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at + 1
        shift += 7
    raise ValueError(f"malformed varint at {pos}")


def zigzag(column: list[int]) -> list[int]:
    """Signed int64 values as unsigned: 0, -1, 1, -2... -> 0, 1, 2, 3..."""
    return list(map(xor, map(lshift, column, _ONES), map(rshift, column, _63)))


def unzigzag(column: list[int]) -> list[int]:
    """Inverse of :func:`zigzag`."""
    return list(
        map(xor, map(rshift, column, _ONES), map(neg, map(and_, column, _ONES)))
    )


_ONES: Final = repeat(1)
_63: Final = repeat(63)


# -- encoding -------------------------------------------------------------------------


def _bits_to_bytes(bits: str) -> bytes:
    """A string of '0'/'1' as bytes, most significant bit first, zero padded."""
    if not bits:
        return b""
    size = (len(bits) + 7) // 8
    return (
        int(bits, 2).to_bytes(size, "big")
        if len(bits) % 8 == 0
        else ((int(bits, 2) << (8 * size - len(bits))).to_bytes(size, "big"))
    )


def _rice_choice(column: list[int], total: int) -> tuple[int, list[int]] | None:
    """``(k, quotients)`` of the Rice coding of ``column``, or None when its
    unary plane would pass the bound (values too spread for any ``k``).

    ``k`` comes from the mean (about log2 of 0.69 times it: the best for a
    geometric distribution, which zigzag deltas of a gauge resemble), one
    pass instead of trying several.
    """
    count = len(column)
    k = max(0, int(total / count * 0.69).bit_length() - 1)
    bound = MAX_UNARY_BITS_PER_VALUE * count + 64
    while k <= MAX_RICE_K:
        quotients = list(map(rshift, column, repeat(k))) if k else column
        if sum(quotients) + count <= bound:
            return k, quotients
        k += 1
    return None


_TABLE_BITS: Final = 12
_UNARY: Final = tuple("0" * q + "1" for q in range(64))
"""Unary codes of small quotients (a lookup beats building each string)."""


@cache
def _bit_strings(k: int) -> tuple[str, ...]:
    """Every ``k``-bit number as a string of '0'/'1' (a lookup beats format())."""
    return tuple(format(value, f"0{k}b") for value in range(1 << k))


def _rice(column: list[int], k: int, quotients: list[int]) -> bytes:
    if k:
        masked = map(and_, column, repeat((1 << k) - 1))
        if k <= _TABLE_BITS:
            bits = "".join(map(_bit_strings(k).__getitem__, masked))
        else:
            bits = "".join(map(format, masked, repeat(f"0{k}b")))
        remainders = _bits_to_bytes(bits)
    else:
        remainders = b""
    try:
        unary_bits = "".join(map(_UNARY.__getitem__, quotients))
    except IndexError:  # a quotient of 64 or more: rare, and allowed
        unary_bits = "1".join(map("0".__mul__, quotients)) + "1"
    unary = _bits_to_bytes(unary_bits)
    return bytes([COL_RICE, k]) + varint(len(unary)) + remainders + unary


def _small_column(column: list[int]) -> bytes | None:
    """The smaller of the constant and Rice codings, or None if neither applies."""
    first = column[0]
    if column.count(first) == len(column):
        return bytes([COL_CONST]) + varint(first)
    choice = _rice_choice(column, sum(column))
    return None if choice is None else _rice(column, *choice)


def _packed(column: list[int]) -> bytes | None:
    for code, typecode in enumerate(PACKED_WIDTHS):
        try:
            raw = le_bytes(array(typecode, column))
        except OverflowError:
            continue
        stream = zlib.compress(raw, ZLIB_LEVEL)
        return bytes([COL_PACKED, code]) + varint(len(stream)) + stream
    return None


def encode_column(column: list[int]) -> bytes:
    """A small coding of a non-empty column of unsigned ints below 2**64.

    Constant if all are equal; else the smallest of runs (when at least half
    are zero), Rice (unless three quarters are zero: runs then win), and
    zlib (256 values or more, when the others take above 2 bits a value).
    """
    first = column[0]
    count = len(column)
    if column.count(first) == count:
        return bytes([COL_CONST]) + varint(first)
    candidates: list[bytes] = []
    zeros = column.count(0)
    if zeros * 2 >= count:
        candidates.extend(_runs(column, count - zeros))
    if zeros * 4 < count * 3 or not candidates:
        choice = _rice_choice(column, sum(column))
        if choice is not None:
            candidates.append(_rice(column, *choice))
    best = min(candidates, key=len) if candidates else None
    if best is None or (count >= PACKED_MIN_VALUES and len(best) * 4 > count):
        packed = _packed(column)
        if packed is not None and (best is None or len(packed) < len(best)):
            best = packed
    if best is None:
        raise ValueError("column holds a value of 2**64 or more")
    return best


def _runs(column: list[int], nonzero: int) -> list[bytes]:
    """The runs coding (one candidate at most): zeros before each non-zero
    value (and after the last), then the non-zero values less one."""
    at = list(compress(range(len(column)), column))
    runs = list(map(sub, at, map(add, chain((-1,), at), repeat(1))))
    runs.append(len(column) - (at[-1] + 1) if at else len(column))
    changes = list(map(sub, map(column.__getitem__, at), repeat(1)))
    coded_runs = _small_column(runs)
    if coded_runs is None:
        return []
    if not changes:
        return [bytes([COL_RUNS]) + varint(0) + coded_runs]
    coded_changes = _small_column(changes)
    if coded_changes is None:
        return []
    return [bytes([COL_RUNS]) + varint(nonzero) + coded_runs + coded_changes]


# -- encoding with numpy (large columns; the same bytes as above) ---------------------


def encode_column_np(np: ModuleType, column: Any) -> bytes:
    """:func:`encode_column` of a uint64 array, vectorised: the same bytes.

    For large columns (the writer's big checkpoints), where one numpy call
    per step beats a Python-level pass per step.
    """
    count = len(column)
    first = int(column[0])
    if not (column != column[0]).any():
        return bytes([COL_CONST]) + varint(first)
    if int(column.max()) >= _U64 // count:  # sums could wrap: exact ints
        return encode_column(column.tolist())
    candidates: list[bytes] = []
    nonzero = int(np.count_nonzero(column))
    zeros = count - nonzero
    if zeros * 2 >= count:
        at = np.flatnonzero(column)
        runs = np.diff(at, prepend=-1) - 1
        runs_list = [*runs.tolist(), count - (int(at[-1]) + 1)]
        changes = (column[at] - np.uint64(1)).tolist()
        coded_runs = _small_column(runs_list)
        coded_changes = _small_column(changes)
        if coded_runs is not None and coded_changes is not None:
            candidates.append(
                bytes([COL_RUNS]) + varint(nonzero) + coded_runs + coded_changes
            )
    if zeros * 4 < count * 3 or not candidates:
        rice = _rice_np(np, column, int(column.sum()))
        if rice is not None:
            candidates.append(rice)
    best = min(candidates, key=len) if candidates else None
    if best is None or (count >= PACKED_MIN_VALUES and len(best) * 4 > count):
        packed = _packed_np(np, column)
        if best is None or len(packed) < len(best):
            best = packed
    return best


def _rice_np(np: ModuleType, column: Any, total: int) -> bytes | None:
    """:func:`_rice_choice` and :func:`_rice` over a uint64 array."""
    count = len(column)
    k = max(0, int(total / count * 0.69).bit_length() - 1)
    bound = MAX_UNARY_BITS_PER_VALUE * count + 64
    while k <= MAX_RICE_K:
        quotients = column >> np.uint64(k)
        if int(quotients.sum()) + count <= bound:
            break
        k += 1
    else:
        return None
    ones = np.cumsum(quotients + np.uint64(1)) - np.uint64(1)
    bits = np.zeros(int(ones[-1]) + 1, np.uint8)
    bits[ones.astype(np.int64)] = 1
    unary: bytes = np.packbits(bits).tobytes()
    remainders = b""
    if k:
        shifts = np.arange(k - 1, -1, -1, dtype=np.uint64)
        plane = (column[:, None] >> shifts) & np.uint64(1)
        remainders = np.packbits(plane.astype(np.uint8).ravel()).tobytes()
    return bytes([COL_RICE, k]) + varint(len(unary)) + remainders + unary


def _packed_np(np: ModuleType, column: Any) -> bytes:
    biggest = int(column.max())
    code = next(c for c, bits in enumerate((8, 16, 32, 64)) if biggest < 1 << bits)
    raw = column.astype(f"<u{1 << code}").tobytes()
    stream = zlib.compress(raw, ZLIB_LEVEL)
    return bytes([COL_PACKED, code]) + varint(len(stream)) + stream


# -- decoding: plain Python -----------------------------------------------------------


def _rice_layout(data: bytes, pos: int, count: int) -> tuple[int, int, int, int]:
    """``(k, remainder plane start, unary plane start, end)`` of a Rice column."""
    if pos >= len(data):
        raise ValueError("truncated Rice column")
    k = data[pos]
    if k > MAX_RICE_K:
        raise ValueError(f"Rice parameter {k}")
    unary_len, start = read_varint(data, pos + 1)
    if unary_len * 8 > MAX_UNARY_BITS_PER_VALUE * count + 64 + 7:
        raise ValueError(f"unary plane of {unary_len} bytes for {count} values")
    unary_start = start + (count * k + 7) // 8
    end = unary_start + unary_len
    if end > len(data):
        raise ValueError("Rice column runs past the block")
    return k, start, unary_start, end


def _plane_bits(plane: bytes) -> str:
    """The bits of ``plane``, most significant first, as a '0'/'1' string."""
    return bin(int.from_bytes(plane, "big") | 1 << 8 * len(plane))[3:]


def decode_column(data: bytes, pos: int, count: int) -> tuple[list[int], int]:
    """``(values, position after the column)``: plain-Python decoding.

    Raises:
        ValueError: the column is malformed.
    """
    tag = data[pos] if pos < len(data) else -1
    if tag == COL_CONST:
        value, end = read_varint(data, pos + 1)
        return [value] * count, end
    if tag == COL_RICE:
        k, start, unary_start, end = _rice_layout(data, pos + 1, count)
        parts = _plane_bits(data[unary_start:end]).split("1")
        if len(parts) != count + 1 or len(parts[-1]) >= 8:
            raise ValueError("unary plane does not hold the declared count")
        quotients = list(map(len, parts[:count]))
        if not k:
            return quotients, end
        bits = _plane_bits(data[start:unary_start])
        cuts = range(0, count * k, k)
        remainders = map(
            int,
            map(bits.__getitem__, map(slice, cuts, range(k, count * k + 1, k))),
            repeat(2),
        )
        return list(map(or_, map(lshift, quotients, repeat(k)), remainders)), end
    if tag == COL_RUNS:
        nonzero, at = read_varint(data, pos + 1)
        if nonzero > count:
            raise ValueError("more changes than values")
        runs, at = _decode_small(data, at, nonzero + 1)
        if sum(runs) + nonzero != count:
            raise ValueError("runs do not add up to the column")
        changes: list[int] = []
        if nonzero:
            changes, at = _decode_small(data, at, nonzero)
        out: list[int] = []
        for run, change in zip(runs, changes, strict=False):
            out += repeat(0, run)
            out.append(change + 1)
        out += repeat(0, runs[-1])
        return out, at
    if tag == COL_PACKED:
        return _decode_packed(data, pos, count, None)
    raise ValueError(f"unknown column coding {tag}")


def _decode_small(data: bytes, pos: int, count: int) -> tuple[list[int], int]:
    if pos >= len(data) or data[pos] not in (COL_CONST, COL_RICE):
        raise ValueError("a run list is neither constant nor Rice coded")
    return decode_column(data, pos, count)


def _decode_packed(
    data: bytes, pos: int, count: int, np: ModuleType | None
) -> tuple[Any, int]:
    if pos + 1 >= len(data) or data[pos + 1] >= len(PACKED_WIDTHS):
        raise ValueError("malformed packed column")
    typecode = PACKED_WIDTHS[data[pos + 1]]
    length, start = read_varint(data, pos + 2)
    end = start + length
    if end > len(data):
        raise ValueError("packed column runs past the block")
    width = array(typecode).itemsize
    raw = inflate(data[start:end], width * count, "packed column")
    if len(raw) != width * count:
        raise ValueError("packed column holds the wrong number of values")
    if np is not None:
        return np.frombuffer(raw, f"<u{width}", count).astype(np.uint64), end
    column = array(typecode)
    column.frombytes(raw)
    if column.itemsize > 1 and not _LITTLE:
        column.byteswap()
    return column.tolist(), end


_LITTLE: Final = array("H", [1]).tobytes() == b"\x01\x00"


# -- decoding: numpy -------------------------------------------------------------------


def decode_column_np(
    np: ModuleType, data: bytes, pos: int, count: int
) -> tuple[Any, int]:
    """:func:`decode_column` into a uint64 numpy array (large columns).

    Raises:
        ValueError: the column is malformed.
    """
    tag = data[pos] if pos < len(data) else -1
    if tag == COL_CONST:
        value, end = read_varint(data, pos + 1)
        if value >= _U64:
            raise ValueError("constant beyond 64 bits")
        return np.full(count, value, np.uint64), end
    if tag == COL_RICE:
        k, start, unary_start, end = _rice_layout(data, pos + 1, count)
        bits = np.unpackbits(
            np.frombuffer(data, np.uint8, end - unary_start, unary_start)
        )
        ones = np.flatnonzero(bits.view(np.bool_))  # far faster on booleans
        if len(ones) != count or len(bits) - int(ones[-1]) > 8:
            raise ValueError("unary plane does not hold the declared count")
        values = np.diff(ones, prepend=-1).astype(np.uint64) - np.uint64(1)
        if k:
            plane = np.unpackbits(
                np.frombuffer(data, np.uint8, unary_start - start, start)
            )[: count * k].reshape(count, k)
            # Each row's bits times their weights: small unsigned products
            # (at most 2**k - 1) that cannot wrap in the narrowest type.
            weight_type = np.uint8 if k <= 8 else np.uint16 if k <= 16 else np.uint32
            weights = (1 << np.arange(k - 1, -1, -1, dtype=np.uint64)).astype(
                weight_type
            )
            values <<= np.uint64(k)
            values |= (plane @ weights).astype(np.uint64)
        return values, end
    if tag == COL_RUNS:
        nonzero, at = read_varint(data, pos + 1)
        if nonzero > count:
            raise ValueError("more changes than values")
        if at >= len(data) or data[at] not in (COL_CONST, COL_RICE):
            raise ValueError("a run list is neither constant nor Rice coded")
        runs, at = decode_column_np(np, data, at, nonzero + 1)
        if int(runs.max()) > count or int(runs.sum()) + nonzero != count:
            raise ValueError("runs do not add up to the column")
        out = np.zeros(count, np.uint64)
        if nonzero:
            if at >= len(data) or data[at] not in (COL_CONST, COL_RICE):
                raise ValueError("a change list is neither constant nor Rice coded")
            changes, at = decode_column_np(np, data, at, nonzero)
            if int(changes.max()) >= _U64 - 1:  # plus one would wrap
                raise ValueError("a change beyond 64 bits")
            where = np.cumsum(runs[:-1] + np.uint64(1)) - np.uint64(1)
            out[where.astype(np.int64)] = changes + np.uint64(1)
        return out, at
    if tag == COL_PACKED:
        return _decode_packed(data, pos, count, np)
    raise ValueError(f"unknown column coding {tag}")


def unzigzag_np(np: ModuleType, column: Any) -> Any:
    """:func:`unzigzag` of a uint64 array, as int64."""
    signs = (column & np.uint64(1)).astype(np.int64)
    return (column >> np.uint64(1)).astype(np.int64) ^ -signs
