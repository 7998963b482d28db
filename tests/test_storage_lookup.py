"""Loading only named series gives what a full load gives, for those series.

``SeriesSelection`` reads checkpoint and batch records without decoding
every entry. These tests draw records — sound ones, and ones damaged in
every way the whole decoders refuse, with a valid checksum around them —
and compare it with ``decode_checkpoint`` / ``decode_batch`` filtered to the
same series: the same blocks and points, or the same error. Then whole
directories (duplicates, retention, damage, points still in the log) are
queried through ``Storage.open_readonly`` with and without ``series``.
"""

from __future__ import annotations

import random
import struct
import tempfile
import zlib
from array import array
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from statsyard.datapoint import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS
from statsyard.exceptions import CorruptRecordError
from statsyard.storage import Storage
from statsyard.storage._batch import (
    BATCH_HEADER,
    TableCache,
    decode_batch,
    encode_batch,
    series_entry,
    value_column,
)
from statsyard.storage._index import (
    CHECKPOINT_HEADER,
    decode_checkpoint,
    encode_checkpoint,
)
from statsyard.storage._lookup import SeriesSelection, _plainly_in_range, listing_of

T0 = 1_700_000_000_000

# Names that overlap as bytes (one inside another, at the start or the end),
# non-ASCII ones, and an empty one: a match must be a whole name.
NAMES = ["a", "ab", "b", "ba", "a.b", "é", "ée", "x\u0301", ""]
names = st.sampled_from(NAMES)
selections = st.lists(
    st.tuples(names, st.one_of(st.none(), names)), min_size=1, max_size=3
)


# -- checkpoint records ------------------------------------------------------------


def _checkpoint_body(
    blocks: list[tuple[bytes, bytes, int, int, int, int]],
) -> bytes:
    """A checkpoint body from raw columns (names as bytes, any lengths)."""
    n = len(blocks)
    cols = list(zip(*blocks, strict=True)) if blocks else [()] * 6
    metrics, entities, lengths, counts, lows, highs = cols
    return b"".join(
        [
            struct.pack(f"<{n}H", *map(len, metrics)),
            struct.pack(f"<{n}H", *map(len, entities)),
            struct.pack(f"<{n}I", *lengths),
            struct.pack(f"<{n}I", *counts),
            struct.pack(f"<{n}q", *lows),
            struct.pack(f"<{n}q", *highs),
            *metrics,
            *entities,
        ]
    )


@st.composite
def checkpoint_records(draw: st.DrawFn) -> tuple[bytes, int]:
    """A checkpoint payload and its data file's size: sound, or damaged one way."""
    n = draw(st.integers(0, 12))
    blocks = []
    for _ in range(n):
        low = draw(st.integers(T0, T0 + 10**6))
        blocks.append(
            (
                draw(names).encode(),
                draw(names).encode(),
                draw(st.integers(32, 200)),
                draw(st.integers(1, 50)),
                low,
                low + draw(st.integers(0, 10**4)),
            )
        )
    first = draw(st.integers(16, 100))
    dat_end = first + sum(b[2] for b in blocks)
    dat_size = dat_end + draw(st.integers(0, 50))
    covered = draw(st.integers(0, 20))
    damage = draw(
        st.sampled_from(
            [
                None,
                "utf8",
                "split",
                "length",
                "name_len",
                "min_gt_max",
                "too_early",
                "too_late",
                "count0",
                "short_block",
                "dat_end",
                "beyond_file",
                "count",
                "stray",
                "short_body",
                "zlib",
                "short_header",
            ]
        )
    )
    i = draw(st.integers(0, max(0, n - 1)))
    if n and damage == "utf8":
        blocks[i] = (b"\xff" + blocks[i][0], *blocks[i][1:])
    elif n >= 2 and damage == "split":
        # Valid UTF-8 as a whole, but a character cut between two names.
        blocks[i - 1] = (blocks[i - 1][0] + b"\xc3", *blocks[i - 1][1:])
        blocks[i] = (b"\xa9" + blocks[i][0], *blocks[i][1:])
    elif n and damage == "min_gt_max":
        m, e, length, count, low, high = blocks[i]
        blocks[i] = (m, e, length, count, high + 1, high)
    elif n and damage == "too_early":
        m, e, length, count, _low, high = blocks[i]
        blocks[i] = (m, e, length, count, MIN_TIMESTAMP_MS - 1, high)
    elif n and damage == "too_late":
        m, e, length, count, low, _high = blocks[i]
        blocks[i] = (m, e, length, count, low, MAX_TIMESTAMP_MS)
    elif n and damage == "count0":
        blocks[i] = (*blocks[i][:3], 0, *blocks[i][4:])
    elif n and damage == "short_block":
        blocks[i] = (*blocks[i][:2], 31, *blocks[i][3:])
    body = _checkpoint_body(blocks)
    if n and damage == "length":  # a metric length running past the names
        body = body[: 2 * i] + struct.pack("<H", 60_000) + body[2 * i + 2 :]
    if n and damage == "name_len":  # lengths that no longer add up
        at = 2 * n + 2 * i
        (length,) = struct.unpack_from("<H", body, at)
        body = body[:at] + struct.pack("<H", length + 1) + body[at + 2 :]
    if damage == "stray":
        body += b"z"
    if n and damage == "short_body":
        body = body[: 28 * n - 1]
    header_n = n + 1 if damage == "count" else n
    if damage == "dat_end":
        dat_end += 1
    if damage == "beyond_file":
        dat_size = dat_end - 1
    compressed = zlib.compress(body)
    if damage == "zlib":
        compressed = compressed[:-2]
    header = CHECKPOINT_HEADER.pack(covered, first, dat_end, header_n)
    if damage == "short_header":
        return header[:20], dat_size
    return header + compressed, dat_size


def _judge(call: Any, *args: Any) -> Any:
    """What a decoder returns, or the message of the error it raises."""
    try:
        return call(*args)
    except CorruptRecordError as exc:
        return ("error", str(exc))


@given(record=checkpoint_records(), wanted=selections)
@settings(max_examples=400, deadline=None)
def test_a_checkpoint_record_lists_the_blocks_the_whole_decoder_lists(
    record: tuple[bytes, int], wanted: list[tuple[str, str | None]]
) -> None:
    """Same blocks of the selected series, extent, span and covered, or the
    same error, for sound and damaged records alike."""
    payload, dat_size = record
    selection = SeriesSelection(wanted)
    got = _judge(selection.checkpoint, 3, payload, dat_size)
    whole = _judge(decode_checkpoint, 3, payload, dat_size)
    if isinstance(whole, tuple) and whole[0] == "error":
        assert got == whole
        return
    listing = listing_of(whole)
    expected = listing._replace(
        blocks=[b for b in listing.blocks if selection.wants(b[0], b[1])]
    )
    assert got == expected


def test_a_series_is_found_among_many_blocks_by_its_whole_names() -> None:
    """Out of 10,000 blocks, only the asked series' ones, at the right offsets."""
    blocks = [
        (f"app.{i // 100}.latency", f"node-{i:05d}", 90 + i % 7, 3, T0 + i, T0 + 2 * i)
        for i in range(10_000)
    ]
    payload = encode_checkpoint(7, 16, blocks)
    dat_size = 16 + sum(b[2] for b in blocks)
    whole = decode_checkpoint(1, payload, dat_size)
    for wanted in (
        [("app.42.latency", "node-04217")],
        [("app.42.latency", None)],
        [("app.4.latency", None), ("app.99.latency", "node-09999")],
        [("app.4", None), ("node-00001", None), ("app.1.latency", "node-0001")],
    ):
        selection = SeriesSelection(wanted)
        listing = selection.checkpoint(1, payload, dat_size)
        assert listing.blocks == [
            b for b in whole.blocks if selection.wants(b[0], b[1])
        ]
        assert listing.extent == (16, dat_size)
        assert listing.span == (T0, T0 + 2 * 9_999)


# -- batch records -------------------------------------------------------------------


@st.composite
def batch_records(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str]]]:
    """A batch payload (sound, or damaged one way) and the series it names."""
    keys = draw(st.lists(st.tuples(names, names), min_size=1, max_size=5, unique=True))
    size = draw(st.integers(1, 30)) + len(keys)  # room for extra table entries
    numbers = array("I", [draw(st.integers(0, len(keys) - 1)) for _ in range(size)])
    # Around the edges of the range a writer accepts, and of the one checked
    # on byte planes ([2**40, 3 * 2**40)), and well inside both.
    base = draw(
        st.sampled_from(
            [T0, MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS - 101, 2**40 - 50, 3 * 2**40 - 50]
        )
    )
    timestamps = array("q", [base + draw(st.integers(0, 100)) for _ in range(size)])
    kind = draw(st.sampled_from(["float", "int", "mixed", "big"]))
    values: list[int | float] = []
    for _ in range(size):
        if kind == "float" or (kind in ("mixed", "big") and draw(st.booleans())):
            values.append(draw(st.floats(-1e6, 1e6)))
        else:
            values.append(draw(st.integers(-(2**63), 2**63 - 1)))
    if kind == "big":
        values[0] = 2**70
    entries = [series_entry(n, *key) for n, key in enumerate(keys)]
    payload = encode_batch(
        numbers, timestamps, value_column(values), entries, TableCache()
    )
    damage = draw(
        st.sampled_from(
            [
                None,
                None,
                "nan",
                "timestamp",
                "number",
                "table_utf8",
                "table_short",
                "table_stray",
                "truncated",
                "longer",
                "series_count",
                "duplicate",
                "split",
                "kind",
            ]
        )
    )
    n_series, n_points, value_kind, table_len = BATCH_HEADER.unpack_from(payload)
    table = zlib.decompress(payload[16 : 16 + table_len])
    columns = payload[16 + table_len :]
    if damage == "nan" and value_kind == 1:
        columns = columns[: 12 * n_points] + struct.pack("<d", float("nan"))
        columns += payload[16 + table_len + 12 * n_points + 8 :]
    elif damage == "timestamp":
        at = 4 * n_points
        columns = columns[:at] + struct.pack("<q", MAX_TIMESTAMP_MS) + columns[at + 8 :]
    elif damage == "number":
        columns = struct.pack("<I", len(keys) + 3) + columns[4:]
    elif damage == "table_utf8":
        table = table[:8] + b"\xff" + table[9:] if len(table) > 8 else table
    elif damage == "table_short":
        table = table[:-1]
    elif damage == "table_stray":
        table += b"\x00"
    elif damage == "truncated":
        columns = columns[:-1]
    elif damage == "longer":
        columns += b"\x00" * 8
    elif damage == "series_count":
        n_series += 1
    elif damage == "duplicate":
        # The first entry's number again, naming another series: it wins.
        table += series_entry(0, "ba", "é")
        n_series += 1
    elif damage == "split":
        # Valid UTF-8 as a whole, but a character cut between metric and entity.
        table += struct.pack("<IHH", len(keys), 2, 2) + b"a\xc3\xa9b"
        n_series += 1
    elif damage == "kind":
        value_kind = 7
    if damage in ("table_utf8", "table_short", "table_stray", "duplicate", "split"):
        compressed = zlib.compress(table, 1)
        table_len = len(compressed)
    else:
        compressed = payload[16 : 16 + table_len]
    head = BATCH_HEADER.pack(n_series, n_points, value_kind, table_len)
    return head + compressed + columns, keys


@given(record=batch_records(), others=selections, data=st.data())
@settings(max_examples=400, deadline=None)
def test_a_batch_record_gives_the_points_the_whole_decoder_gives(
    record: tuple[bytes, list[tuple[str, str]]],
    others: list[tuple[str, str | None]],
    data: st.DataObject,
) -> None:
    """The selected series' points (numbers, timestamps, values and their
    types) in arrival order, or the same error."""
    payload, keys = record
    named = data.draw(st.lists(st.sampled_from(keys), max_size=2))
    selection = SeriesSelection([*named, *others])
    got = _judge(selection.batch, payload)
    whole = _judge(decode_batch, payload)
    if isinstance(whole, tuple) and whole[0] == "error":
        assert got == whole
        return
    kept = {n: key for n, key in whole.keys.items() if selection.wants(*key)}
    at = [i for i, n in enumerate(whole.series_numbers) if n in kept]
    assert got.keys == kept
    assert got.series_numbers == [whole.series_numbers[i] for i in at]
    assert list(got.timestamps) == [whole.timestamps[i] for i in at]
    values = [whole.values[i] for i in at]
    assert [(type(v), v) for v in got.values] == [(type(v), v) for v in values]


@given(st.lists(st.integers(-(2**63), 2**63 - 1)))
def test_timestamps_pass_the_byte_plane_check_only_when_in_range(
    stamps: list[int],
) -> None:
    """The quick check never passes a timestamp a writer would refuse."""
    raw = struct.pack(f"<{len(stamps)}q", *stamps)
    if _plainly_in_range(raw):
        assert all(MIN_TIMESTAMP_MS <= t < MAX_TIMESTAMP_MS for t in stamps)
    inside = [2**40 + abs(t) % (2 * 2**40) for t in stamps]
    assert _plainly_in_range(struct.pack(f"<{len(inside)}q", *inside))


def test_a_series_points_are_picked_among_many_and_tables_are_parsed_once() -> None:
    """One series' points out of a 10,000-series batch, sparse or dense."""
    keys = [(f"m{i % 100}", f"e{i}") for i in range(10_000)]
    entries = [series_entry(n, *key) for n, key in enumerate(keys)]
    rng = random.Random(3)
    numbers = array("I", [rng.randrange(10_000) for _ in range(20_000)])
    numbers.extend([17] * 5_000)  # dense: the compress path
    timestamps = array("q", range(T0, T0 + len(numbers)))
    values = array("d", (i / 3 for i in range(len(numbers))))
    payload = encode_batch(numbers, timestamps, values, entries, TableCache())
    selection = SeriesSelection([("m17", "e17"), ("m5", None)])
    for _ in range(2):  # the second time from the parsed table
        got = selection.batch(payload)
        want = [i for i, n in enumerate(numbers) if selection.wants(*keys[n])]
        assert got.series_numbers == [numbers[i] for i in want]
        assert list(got.timestamps) == [timestamps[i] for i in want]
        assert list(got.values) == [values[i] for i in want]


def test_a_selection_refuses_what_is_not_a_pair() -> None:
    """A series must be a (metric, entity or None) pair of str."""
    for bad in (["cpu"], [("cpu",)], [("cpu", 3)], [(b"cpu", None)]):
        with pytest.raises(TypeError, match="pairs of str"):
            SeriesSelection(bad)  # type: ignore[arg-type]


# -- whole directories ---------------------------------------------------------------

METRICS = ["a", "ab", "a.b", "b.a", "é.x"]
ENTITIES = ["x", "xy", "é"]
rows = st.lists(
    st.tuples(
        st.sampled_from(METRICS),
        st.sampled_from(ENTITIES),
        st.one_of(st.floats(-1e3, 1e3), st.integers(-(10**6), 10**6)),
        st.integers(T0, T0 + 40),  # few timestamps: many written twice
    ),
    min_size=1,
    max_size=25,
)
steps = st.lists(st.one_of(rows, st.just("checkpoint")), min_size=3, max_size=16)
damages = st.one_of(
    st.just(None),
    st.tuples(
        st.sampled_from([".idx", ".dat", ".log"]),
        st.floats(0.1, 0.7),  # past the file header, before the last record
        st.sampled_from(["flip", "flip", "cut"]),
    ),
)


def _damage(directory: Path, damage: tuple[str, float, str] | None) -> None:
    """Flip a byte of, or cut the tail off, one of the directory's files."""
    if damage is None:
        return
    suffix, where, how = damage
    files = sorted(p for p in directory.iterdir() if p.suffix == suffix)
    if not files:
        return
    path = files[int(where * len(files)) % len(files)]
    data = bytearray(path.read_bytes())
    at = int(where * len(data)) % max(1, len(data))
    if how == "cut":
        del data[at:]
    elif data:
        data[at] ^= 0x5A
    path.write_bytes(bytes(data))


def _everything(storage: Storage, metric: str, entity: str | None) -> Any:
    """Raw points, and two step aggregates, of a metric (or one entity)."""
    return [
        storage.query(metric, entity=entity),
        storage.query(metric, entity=entity, step=7, agg="sum"),
        storage.query(metric, entity=entity, start=T0 + 5, end=T0 + 30, step=10),
    ]


@given(
    plan=steps,
    damage=damages,
    wanted=st.lists(
        st.tuples(
            st.sampled_from(METRICS), st.one_of(st.none(), st.sampled_from(ENTITIES))
        ),
        min_size=1,
        max_size=3,
    ),
)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_a_directory_read_for_some_series_answers_as_a_full_read(
    plan: list[Any],
    damage: tuple[str, float, str] | None,
    wanted: list[tuple[str, str | None]],
) -> None:
    """Blocks, duplicates (last write wins), points still in the log, segments
    retention removed, damaged records skipped and counted: an open for some
    series answers for them exactly as a full open does."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "data"
        writer = Storage.open(
            directory,
            segment_bytes=400,
            retention_max_bytes=1_500,
            checkpoint_points=None,
        )
        for step in plan:
            if step == "checkpoint":
                writer.checkpoint()
            else:
                writer.append(step)
        writer.close()
        _damage(directory, damage)
        full = Storage.open_readonly(directory)
        some = Storage.open_readonly(directory, series=wanted)
        event(f"damaged records skipped: {full.skipped_records > 0}")
        event(f"points in the log: {full.head_points > 0}")
        segments = sorted(directory.glob("seg-*.idx"))
        removed = bool(segments) and not segments[0].stem.endswith("1")
        event(f"retention removed a segment: {removed}")
        assert some.skipped_records == full.skipped_records
        selection = SeriesSelection(wanted)
        assert some.series() == [s for s in full.series() if selection.wants(*s)]
        for metric, entity in wanted:
            assert _everything(some, metric, entity) == _everything(
                full, metric, entity
            )
        assert some.skipped_records == full.skipped_records  # damaged blocks too
        full.close()
        some.close()


def test_an_open_for_one_series_skips_the_rest_and_sees_the_log(
    tmp_path: Path,
) -> None:
    """Among many series, with some points compacted and some still in the
    log, a one-series open holds that series alone, all of its points."""
    writer = Storage.open(tmp_path, checkpoint_points=None)
    series = [(f"m.{i % 7}", f"e{i}") for i in range(300)]
    for n in range(6):
        writer.append([(m, e, n * 1.5, T0 + n * 1000) for m, e in series])
        if n == 3:
            writer.checkpoint()
    writer.close()
    some = Storage.open_readonly(tmp_path, series=[("m.3", "e10")])
    assert some.series() == [("m.3", "e10")]
    assert some.query("m.3") == {"e10": [(T0 + n * 1000, n * 1.5) for n in range(6)]}
    assert some.query("m.4") == {}
    some.refresh()  # loads the same selection again
    assert some.metrics() == ["m.3"]
    full = Storage.open_readonly(tmp_path)
    assert some.query("m.3") == full.query("m.3", entity="e10")
    assert len(full.series()) == 300
    with pytest.raises(TypeError, match="pairs of str"):
        Storage.open_readonly(tmp_path, series=["m.3"])  # type: ignore[list-item]
