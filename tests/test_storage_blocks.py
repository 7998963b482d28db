"""Block format 3 and its integer column codings; format 2 still read.

Round trips go through both decoders (plain Python for small blocks, numpy
for large ones), which are written independently and must agree with each
other and with what was encoded. Format-2 data is written by the old
encoder (``encode_block_v2``) under a format-2 marker, as StatsYard did
before format 3.
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statsyard.datapoint import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, DataPoint
from statsyard.exceptions import CorruptRecordError
from statsyard.storage import Storage
from statsyard.storage import _blocks as blocks
from statsyard.storage import _compaction as compaction
from statsyard.storage._batch import Value
from statsyard.storage._codec import (
    COL_CONST,
    COL_PACKED,
    COL_RICE,
    COL_RUNS,
    decode_column,
    decode_column_np,
    encode_column,
    encode_column_np,
    varint,
)
from statsyard.storage._files import MARKER_NAME, MARKER_TEXT, MARKER_TEXT_2
from tests._storage_helpers import REPO, T0, expected, points

INT64 = 2**63


@contextlib.contextmanager
def numpy_from(count: int) -> Iterator[None]:
    """Decode blocks of more than ``count`` points with numpy (0: every block)."""
    before = blocks.SMALL_BLOCK_POINTS
    blocks.SMALL_BLOCK_POINTS = count  # type: ignore[misc]
    try:
        yield
    finally:
        blocks.SMALL_BLOCK_POINTS = before  # type: ignore[misc]


def decode_both(block: bytes) -> tuple[str, str, list[int], list[Value]]:
    """The block decoded in plain Python, after checking numpy agrees."""
    with numpy_from(0):
        vectorised = blocks.decode_block(block)
    with numpy_from(blocks.MAX_BLOCK_POINTS):
        plain = blocks.decode_block(block)
    assert plain[:3] == vectorised[:3]
    assert [repr(v) for v in plain[3]] == [repr(v) for v in vectorised[3]]
    return plain


# -- integer columns -----------------------------------------------------------------

unsigned = st.sampled_from([2, 2**8, 2**20, 2**40, 2**64]).flatmap(
    lambda bound: st.integers(0, bound - 1)
)
mostly_zero = st.integers(0, 9).flatmap(
    lambda roll: st.just(0) if roll else st.integers(0, 2**30)
)


@settings(max_examples=400, deadline=None)
@given(st.lists(unsigned | mostly_zero, min_size=1, max_size=700))
def test_integer_columns_round_trip_in_both_decoders(column: list[int]) -> None:
    """Any column of unsigned 64-bit ints comes back from the smallest coding,
    decoded in plain Python and with numpy, with the position after it."""
    coded = encode_column(column) + b"tail"
    values, end = decode_column(coded, 0, len(column))
    assert values == column
    assert coded[end:] == b"tail"
    array, end_np = decode_column_np(np, coded, 0, len(column))
    assert array.tolist() == column
    assert end_np == end


@settings(max_examples=300, deadline=None)
@given(st.lists(unsigned | mostly_zero, min_size=1, max_size=700))
def test_the_vectorised_encoder_writes_the_same_bytes(column: list[int]) -> None:
    """Large blocks encode with numpy: byte for byte what plain Python writes."""
    assert encode_column_np(np, np.array(column, np.uint64)) == encode_column(column)


def test_each_coding_is_chosen_where_it_is_smallest() -> None:
    """One value: constant; small noise: Rice; mostly repeats: runs; a long
    periodic column: zlib."""
    assert encode_column([7] * 100)[0] == COL_CONST
    assert encode_column([3, 0, 5, 1, 2, 7, 4, 0] * 10)[0] == COL_RICE
    repeats = [0] * 200
    for at in (3, 17, 40, 41, 90, 150, 199):
        repeats[at] = at % 7 + 1
    assert encode_column(repeats)[0] == COL_RUNS
    assert len(encode_column(repeats)) < 200 // 8  # below a bit a value
    assert encode_column([0, 900, 20_000, 5] * 500)[0] == COL_PACKED


# -- blocks --------------------------------------------------------------------------

stamps = st.integers(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS - 1)
ints = st.integers(-INT64, INT64 - 1) | st.integers(-3, 3)
finite = st.floats(allow_nan=False, allow_infinity=False)
decimals = st.builds(
    lambda s, d: s / 10.0**d, st.integers(-(10**9), 10**9), st.integers(0, 6)
)


@st.composite
def series_points(draw: st.DrawFn) -> tuple[list[int], list[Value]]:
    """1..300 points: equal, regular, jittered or unordered timestamps; ints
    (up to the int64 limits), floats (with -0.0), decimals, repeats or both."""
    size = draw(st.integers(1, 300))
    shape = draw(st.sampled_from(["equal", "regular", "jitter", "any"]))
    start = draw(st.integers(MIN_TIMESTAMP_MS, MIN_TIMESTAMP_MS + 2**40))
    if shape == "equal":
        timestamps = [start] * size
    elif shape == "regular":
        timestamps = [start + 1000 * i for i in range(size)]
    elif shape == "jitter":
        timestamps = [start + 1000 * i + draw(st.integers(0, 50)) for i in range(size)]
    else:
        timestamps = draw(st.lists(stamps, min_size=size, max_size=size))
    kind = draw(
        st.sampled_from([ints, finite, decimals, st.sampled_from([1.5, 1.5, 2.0])])
    )
    if draw(st.integers(0, 5)) == 0:
        kind = ints | finite
    values = draw(st.lists(kind, min_size=size, max_size=size))
    return timestamps, values


@settings(max_examples=400, deadline=None)
@given(series_points())
def test_format_3_blocks_round_trip(points_: tuple[list[int], list[Value]]) -> None:
    """Every series comes back sorted by time (ties in arrival order), each
    value equal and of its type, from both decoders (-0.0 may come back 0.0)."""
    timestamps, values = points_
    block, low, high = blocks.encode_block("cpu.load", "web-1", timestamps, values)
    assert block[4] == blocks.BLOCK_VERSION
    assert blocks.block_length(block[: blocks.BLOCK_PEEK]) == len(block)
    order = sorted(range(len(timestamps)), key=timestamps.__getitem__)
    want_ts = [timestamps[i] for i in order]
    want_values = [values[i] for i in order]
    metric, entity, got_ts, got_values = decode_both(block)
    assert (metric, entity, got_ts) == ("cpu.load", "web-1", want_ts)
    assert (low, high) == (want_ts[0], want_ts[-1])
    assert got_values == want_values
    assert list(map(type, got_values)) == list(map(type, want_values))


def test_a_slow_gauge_block_costs_a_fraction_of_format_2() -> None:
    """300 points a second apart of a gauge that moves by 1-2 one second in
    ten: under 90 bytes with the names (format 2 needed some 150)."""
    rng = random.Random(3)
    values: list[Value] = []
    value = 40
    for _ in range(300):
        if rng.random() < 0.1:
            value += rng.choice([-2, -1, 1, 2])
        values.append(value)
    stamps_ = [T0 + 1000 * i for i in range(300)]
    v3, _, _ = blocks.encode_block("host.1.mem", "server-00001", stamps_, values)
    v2, _, _ = blocks.encode_block_v2("host.1.mem", "server-00001", stamps_, values)
    assert len(v3) < 90 < 140 < len(v2)


def test_a_large_block_decodes_into_numpy_columns() -> None:
    """Beyond SMALL_BLOCK_POINTS, columns are int64/float64 arrays; below, lists."""
    n = blocks.SMALL_BLOCK_POINTS + 1
    block, _, _ = blocks.encode_block(
        "m", "e", [T0 + i for i in range(n)], [i * 0.5 for i in range(n)]
    )
    _, _, timestamps, values = blocks.decode_block_columns(block)
    assert (timestamps.dtype, values.dtype) == (np.int64, np.float64)
    small, _, _ = blocks.encode_block("m", "e", [T0], [1])
    assert blocks.decode_block_columns(small)[2:] == ([T0], [1])


@settings(max_examples=300, deadline=None)
@given(series_points(), st.data())
def test_damaged_format_3_blocks_are_refused_by_both_decoders(
    points_: tuple[list[int], list[Value]], data: st.DataObject
) -> None:
    """A sound block with a byte changed, cut or extended: CorruptRecordError
    (or, where the checksum still holds, a sound decoding), never another error."""
    block, _, _ = blocks.encode_block("m", "e", *points_)
    at = data.draw(st.integers(0, len(block) - 1))
    damaged = bytearray(block)
    damaged[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(block)))
    for raw in (bytes(damaged), block[:cut], block + b"\x00"):
        for count in (0, blocks.MAX_BLOCK_POINTS):
            with numpy_from(count), contextlib.suppress(CorruptRecordError):
                blocks.decode_block(raw)


@settings(max_examples=300, deadline=None)
@given(series_points(), st.data())
def test_both_decoders_agree_on_forged_content(
    points_: tuple[list[int], list[Value]], data: st.DataObject
) -> None:
    """A sound block with bytes changed and its checksum made right again
    (content no writer makes): both decoders give the same points, or both
    refuse it as damage."""
    block, _, _ = blocks.encode_block("m", "e", *points_)
    body = bytearray(block[:-4])
    for _ in range(data.draw(st.integers(1, 3))):
        body[data.draw(st.integers(5, len(body) - 1))] = data.draw(st.integers(0, 255))
    forged = bytes(body) + zlib.crc32(bytes(body)).to_bytes(4, "little")
    answers = []
    for count in (0, blocks.MAX_BLOCK_POINTS):
        with numpy_from(count):
            try:
                answers.append(repr(blocks.decode_block(forged)))
            except CorruptRecordError:
                answers.append("damage")
    assert answers[0] == answers[1]


def _forged(body: bytes, count: int) -> bytes:
    """A version-3 block with a sound checksum around ``body``."""
    head = b"SYBK\x03" + varint(count) + b"\x01\x01" + varint(len(body)) + b"me"
    block = head + body
    return block + zlib.crc32(block).to_bytes(4, "little")


@pytest.mark.parametrize(
    ("body", "count", "problem"),
    [
        # a delta of 2**63 - 1 after INT64 - 1: the running sum leaves int64
        (
            b"\x80\xd0\x95\xff\xbc1\x00\x00\x00\x00\xfc\xff\xff\xff\xff\xff\xff\xff\xff\x01"
            b"\x00\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01",
            2,
            "64 bits",
        ),
        # a unary plane far longer than 4 bits a value
        (
            b"\x80\xd0\x95\xff\xbc1\x00\x01\x00\xff\x7f" + bytes(16383) + b"\x01",
            2,
            "unary",
        ),
        # runs that add up to more than the column
        (b"\x80\xd0\x95\xff\xbc1\x00\x02\x00\x00\x05\x00\x02", 3, "runs"),
        # a gap of 2**62: a timestamp out of range
        (
            b"\x80\xd0\x95\xff\xbc1\x80\x80\x80\x80\x80\x80\x80\x80\x40\x00\x00\x00\x02",
            2,
            "out of range",
        ),
    ],
    ids=["int64-overflow", "unary-bomb", "runs-overflow", "gap-out-of-range"],
)
def test_forged_blocks_with_sound_checksums_are_damage(
    body: bytes, count: int, problem: str
) -> None:
    """Checksummed blocks whose content no writer makes: refused, naming why,
    in both decoders, without allocating beyond what the bytes describe."""
    block = _forged(body, count)
    for numpy_count in (0, blocks.MAX_BLOCK_POINTS):
        with numpy_from(numpy_count), pytest.raises(CorruptRecordError, match=problem):
            blocks.decode_block(block)


# -- format 2 directories ------------------------------------------------------------


def _format_2_directory(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> list[DataPoint]:
    """A data directory as StatsYard wrote it before format 3: format-2 blocks
    under a format-2 marker. Returns the points written."""
    written = [
        *points("cpu.load", "h1", [0.5, 1.25, 2.0]),
        *points("disk.used", "h1", [10, 20, 30, 2**62]),
        *points("mixed", "h2", [1, 2.5]),
    ]
    with monkeypatch.context() as patch:
        patch.setattr(compaction, "encode_block", blocks.encode_block_v2)
        with Storage.open(directory, checkpoint_points=None) as storage:
            storage.append(written)
            storage.checkpoint()
    (directory / MARKER_NAME).write_bytes(MARKER_TEXT_2)
    data = next(directory.glob("seg-*.dat")).read_bytes()
    assert data[16:21] == b"SYBK\x02"
    return written


def test_a_format_2_directory_is_read_then_upgraded_by_a_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Format-2 blocks read back; a reader leaves the marker alone; a writer
    marks the directory format 3, appends format-3 blocks to the same
    segment, and every point of both formats reads back."""
    old = _format_2_directory(tmp_path, monkeypatch)
    with Storage.open_readonly(tmp_path) as reader:
        for metric in ("cpu.load", "disk.used", "mixed"):
            assert reader.query(metric) == expected(old, metric)
    assert (tmp_path / MARKER_NAME).read_bytes() == MARKER_TEXT_2
    new = points("cpu.load", "h1", [7.5, 8.5], start=T0 + 60_000)
    with Storage.open(tmp_path, checkpoint_points=None) as storage:
        assert (tmp_path / MARKER_NAME).read_bytes() == MARKER_TEXT
        storage.append(new)
        storage.checkpoint()
        assert storage.query("cpu.load") == expected(old + new, "cpu.load")
    segments = list(tmp_path.glob("seg-*.dat"))
    assert len(segments) == 1
    assert b"SYBK\x03" in segments[0].read_bytes()
    with Storage.open_readonly(tmp_path) as reader:
        assert reader.query("cpu.load", step=60_000, agg="sum") == {
            "h1": [(T0 - T0 % 60_000, 3.75), (T0 - T0 % 60_000 + 60_000, 16.0)]
        }
        assert reader.query("disk.used") == expected(old, "disk.used")


def test_a_marker_of_another_format_is_refused(tmp_path: Path) -> None:
    """A directory marked with a format this version does not know is refused."""
    (tmp_path / MARKER_NAME).write_bytes(b"StatsYard data directory\nformat 6\n")
    with pytest.raises(Exception, match="this version can read"):
        Storage.open_readonly(tmp_path)


def test_querying_one_small_compacted_series_does_not_import_numpy(
    tmp_path: Path,
) -> None:
    """``statsyard query`` of a compacted 300-point series, raw and with a
    step, decodes in plain Python: numpy (some 60 ms to import) stays out."""
    with Storage.open(tmp_path, checkpoint_points=None) as storage:
        storage.append(points("cpu.load", "web-1", [i * 0.25 for i in range(300)]))
        storage.append(points("cpu.idle", "web-1", list(range(300))))
        storage.checkpoint()
    script = (
        "import json, sys\n"
        "from statsyard.cli.main import main\n"
        f"args = ['query', 'cpu.load', '--data-dir', {str(tmp_path)!r}]\n"
        "assert main(args) == 0\n"
        "assert main([*args, '--from', '20200101', '--step', '60s']) == 0\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=REPO,
    )
    assert "2023-11-14" in done.stdout or "1700000" in done.stdout
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert "statsyard.storage._blocks" in loaded
    assert "numpy" not in loaded
