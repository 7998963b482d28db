"""The vectorised block decoder and step aggregation agree with plain Python.

Each test draws random blocks or series and compares the numpy path with a
plain-Python reference: the format as ``docs/storage.md`` describes it for
decoding, and :func:`statsyard.storage._query.downsample` (the aggregation
queries used before) for step aggregates.
"""

from __future__ import annotations

import contextlib
import math
import struct
import zlib
from collections.abc import Iterator
from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statsyard.datapoint import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS
from statsyard.exceptions import CorruptRecordError
from statsyard.storage import _blocks as blocks
from statsyard.storage._batch import Value, decode_values
from statsyard.storage._blocks import (
    BLOCK_HEADER,
    BLOCK_HEADER_SIZE,
    VALUES_DECIMAL_DELTA,
    VALUES_FLOAT_SHUFFLE,
    VALUES_GENERIC,
    VALUES_INT_DELTA,
    decode_block,
    decode_block_columns,
    encode_block_v2,
)
from statsyard.storage._columns import (
    as_columns,
    downsample_columns,
    merge_columns,
    select_columns,
)
from statsyard.storage._query import AGGREGATES, downsample, merge, select

INT64 = 2**63


@contextlib.contextmanager
def decoding_with_numpy_from(points: int) -> Iterator[None]:
    """Decode blocks of more than ``points`` points with numpy (0: all)."""
    before = blocks.SMALL_BLOCK_POINTS
    blocks.SMALL_BLOCK_POINTS = points  # type: ignore[misc]
    try:
        yield
    finally:
        blocks.SMALL_BLOCK_POINTS = before  # type: ignore[misc]


_WIDTH = {0: "b", 1: "h", 2: "i", 3: "q"}
_GAP = {0: "B", 1: "H", 2: "I", 3: "Q"}


def reference_decode(block: bytes) -> tuple[int, int, list[int], list[Value]]:
    """(gap width code, value encoding, timestamps, values), decoded as the
    format's description reads, one Python object at a time."""
    fields = BLOCK_HEADER.unpack_from(block)
    _, _, ts_code, encoding, parameter, count, m_len, e_len, first, _ = fields
    raw = zlib.decompress(block[BLOCK_HEADER_SIZE + m_len + e_len :])
    gap_size = struct.calcsize(_GAP[ts_code])
    ts_end = (count - 1) * gap_size
    gaps = struct.unpack(f"<{count - 1}{_GAP[ts_code]}", raw[:ts_end])
    timestamps = list(accumulate(gaps, initial=first))
    data = raw[ts_end:]
    values: list[Value]
    if encoding == VALUES_INT_DELTA:
        values = list(accumulate(struct.unpack(f"<{count}{_WIDTH[parameter]}", data)))
    elif encoding == VALUES_DECIMAL_DELTA:
        ints = struct.unpack(f"<{count}{_WIDTH[parameter & 15]}", data)
        values = [s / 10.0 ** (parameter >> 4) for s in accumulate(ints)]
    elif encoding == VALUES_FLOAT_SHUFFLE:
        unshuffled = bytes(data[(i % 8) * count + i // 8] for i in range(8 * count))
        values = list(struct.unpack(f"<{count}d", unshuffled))
    else:
        assert encoding == VALUES_GENERIC
        values = decode_values(parameter, data, count)
    return ts_code, encoding, timestamps, values


timestamps_of = st.integers(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS - 1)
ints_of_width = st.sampled_from([2**7, 2**15, 2**31, INT64]).flatmap(
    lambda bound: st.integers(-bound, bound - 1)
)
near_limits = st.integers(-INT64, -INT64 + 3) | st.integers(INT64 - 4, INT64 - 1)
decimals = st.builds(
    lambda s, d: s / 10.0**d, st.integers(-(2**40), 2**40), st.integers(0, 6)
)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
cancelling = st.sampled_from([1e16, -1e16, 1.0, 0.1, 0.0, -0.0, 3e-8, 2.5e300])
"""Floats whose sum depends on the order of the additions (and signed zeros)."""


@st.composite
def series(draw: st.DrawFn, max_size: int = 60) -> tuple[list[int], list[Value]]:
    """Timestamps (with repeats, gaps of every width, any order) and values
    of one kind: small ints, ints near the int64 limits, decimals, any
    floats, or both ints and floats."""
    size = draw(st.integers(1, max_size))
    gap = draw(st.sampled_from([2**8, 2**16, 2**32, 2**42]))
    start = draw(st.integers(MIN_TIMESTAMP_MS, MIN_TIMESTAMP_MS + 2**42))
    steps = draw(st.lists(st.integers(0, gap - 1), min_size=size, max_size=size))
    timestamps = [
        min(t, MAX_TIMESTAMP_MS - 1) for t in accumulate(steps, initial=start)
    ]
    timestamps = timestamps[:size]
    if draw(st.booleans()):
        timestamps = draw(st.permutations(timestamps))
    kind = draw(
        st.sampled_from(
            [
                ints_of_width,
                ints_of_width | near_limits,
                decimals,
                finite_floats,
                cancelling,
            ]
        )
    )
    if draw(st.integers(0, 4)) == 0:
        kind = ints_of_width | finite_floats
    values = draw(st.lists(kind, min_size=size, max_size=size))
    return timestamps, values


@settings(max_examples=300, deadline=None)
@given(series())
def test_vectorised_decoding_matches_a_plain_python_reader(
    points: tuple[list[int], list[Value]],
) -> None:
    """Every width code and value encoding of a format-2 block decodes to the
    same Python objects, through numpy (large blocks) and plain Python."""
    timestamps, values = points
    block, _, _ = encode_block_v2("m", "e", timestamps, values)
    _, _, expected_ts, expected_values = reference_decode(block)
    for numpy_from in (0, blocks.SMALL_BLOCK_POINTS):
        with decoding_with_numpy_from(numpy_from):
            metric, entity, got_ts, got_values = decode_block(block)
        assert (metric, entity) == ("m", "e")
        assert got_ts == expected_ts
        assert list(map(type, got_ts)) == [int] * len(got_ts)
        assert list(map(type, got_values)) == list(map(type, expected_values))
        assert [repr(v) for v in got_values] == [repr(v) for v in expected_values]


def test_the_decoder_sees_every_width_code_and_encoding() -> None:
    """The strategies above reach every gap width and value encoding."""
    seen = set()
    t0 = MIN_TIMESTAMP_MS
    for gap in (1, 300, 70_000, 2**33):
        for values in ([1, 2], [1, -(2**62)], [0.5, 0.25], [0.1 + 0.2, 1.0], [1, 0.5]):
            block, _, _ = encode_block_v2("m", "e", [t0, t0 + gap], list(values))
            ts_code, encoding, _, _ = reference_decode(block)
            seen.add(("ts", ts_code))
            seen.add(("values", encoding))
            assert decode_block(block)[2:] == ([t0, t0 + gap], values)
    assert seen == {("ts", code) for code in range(4)} | {
        ("values", encoding) for encoding in range(4)
    }


def test_an_int_column_that_leaves_int64_is_damage() -> None:
    """Deltas whose running sum overflows int64 are refused, not wrapped."""
    block, _, _ = encode_block_v2("m", "e", [MIN_TIMESTAMP_MS] * 2, [1, 2])
    fields = list(BLOCK_HEADER.unpack_from(block))
    fields[2:5] = [0, VALUES_INT_DELTA, 3]  # uint8 gaps, int64 value deltas
    payload = struct.pack("<B2q", 0, INT64 - 1, 5)
    compressed = zlib.compress(payload)
    fields[-1] = len(compressed)
    header = BLOCK_HEADER.pack(*fields)
    body = block[BLOCK_HEADER_SIZE : BLOCK_HEADER_SIZE + 2] + compressed
    crc = zlib.crc32(body, zlib.crc32(header))
    forged = header + struct.pack("<I", crc) + body
    for numpy_from in (0, blocks.SMALL_BLOCK_POINTS):
        with (
            decoding_with_numpy_from(numpy_from),
            pytest.raises(CorruptRecordError, match="does not fit in 64 bits"),
        ):
            decode_block_columns(forged)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(series(max_size=40), min_size=1, max_size=3),
    st.sampled_from([1, 7, 1000, 60_000, 2**40]),
    st.sampled_from(sorted(AGGREGATES)),
    st.none() | timestamps_of,
    st.none() | timestamps_of,
)
def test_vectorised_aggregation_matches_the_plain_python_one(
    pieces: list[tuple[list[int], list[Value]]],
    step: int,
    agg: str,
    start: int | None,
    end: int | None,
) -> None:
    """Merging (ties, last write wins), range selection and every aggregate
    give the same Python objects as the list-based query path."""
    expected = downsample(select(merge(pieces), start, end), step, AGGREGATES[agg])
    columns = as_columns(pieces)
    if columns is None:  # ints and floats together: the list path answers
        kinds = {type(v) for _, values in pieces for v in values}
        assert kinds == {int, float}
        return
    piece = select_columns(merge_columns(columns), start, end)
    got = downsample_columns(piece, step, agg)
    assert [(type(b), type(v)) for b, v in got] == [
        (type(b), type(v)) for b, v in expected
    ]
    assert repr(got) == repr(expected)


def test_float_sums_add_in_order_even_in_long_buckets() -> None:
    """Buckets short (added across buckets) or long (beyond the vectorised
    window) sum as ``sum()`` does, in order."""
    values = [(1e16, 1.0 + 0.1 * (i % 7), -1e16)[i % 3] for i in range(1000)]
    timestamps = [MIN_TIMESTAMP_MS + i for i in range(1000)]
    import numpy as np

    piece = (np.array(timestamps), np.array(values))
    for agg in ("sum", "avg"):
        for step in (3, 500):
            got = downsample_columns(piece, step, agg)
            expected = downsample((timestamps, values), step, AGGREGATES[agg])
            assert got == expected
    assert got[0][1] != math.fsum(values[:500]) / 500  # the order matters here
