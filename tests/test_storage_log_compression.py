"""The write-ahead log's zstd-compressed batch records (format 4)."""

from __future__ import annotations

import random
import struct
from array import array
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statsyard.exceptions import CorruptRecordError
from statsyard.forward.cursor import Cursor
from statsyard.forward.log_reader import LogReader, count_points
from statsyard.storage import (
    KIND_BATCH,
    KIND_BATCH_ZSTD,
    WAL_PATTERN,
    Storage,
    _writer,
    batch_payload,
    decode_batch_record,
    numbered,
    scan_records,
)
from statsyard.storage._batch import (
    TableCache,
    compress_batch,
    encode_batch,
    series_entry,
)
from statsyard.storage._files import MARKER_NAME, MARKER_TEXT, MARKER_TEXT_3
from statsyard.storage._framing import MAX_RECORD_PAYLOAD
from tests._storage_helpers import T0

Row = tuple[str, str, float, int]


def walk(series: int, seconds: int, seed: int = 5) -> list[list[Row]]:
    """One batch a second: a 2-decimal random walk per series, jittered stamps."""
    rng = random.Random(seed)
    values = [rng.uniform(0, 100) for _ in range(series)]
    batches = []
    for second in range(seconds):
        batch = []
        for i in range(series):
            values[i] = round(values[i] + rng.gauss(0, 0.3), 2)
            stamp = T0 + second * 1000 + rng.randrange(1000)
            batch.append((f"host.{i // 10}.load", f"server-{i:03d}", values[i], stamp))
        batches.append(batch)
    return batches


def log_records(directory: Path) -> list[tuple[int, bytes]]:
    """``(kind, payload)`` of every record in the directory's logs, in order."""
    found = []
    for _seq, path in numbered(directory, WAL_PATTERN):
        data = path.read_bytes()
        found += [
            (kind, payload) for _, kind, payload in scan_records(data, 16).records
        ]
    return found


def expected(
    batches: list[list[Row]], metric: str
) -> dict[str, list[tuple[int, float]]]:
    """What query(metric) gives for these rows (no rewrites among them)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for batch in batches:
        for m, entity, value, stamp in batch:
            if m == metric:
                out.setdefault(entity, []).append((stamp, value))
    return {entity: sorted(points) for entity, points in out.items()}


def test_batches_are_logged_compressed_and_recovered(tmp_path: Path) -> None:
    """A random walk's batches take under half their raw bytes in the log,
    and a reopened storage (recovering from the log alone) reads them back."""
    batches = walk(1000, 5)
    with Storage.open(tmp_path, checkpoint_points=None) as storage:
        for batch in batches:
            storage.append(batch)
        storage.sync()
        records = log_records(tmp_path)
        assert {kind for kind, _ in records} == {KIND_BATCH_ZSTD}
        raw = sum(len(batch_payload(kind, payload)) for kind, payload in records)
        stored = sum(len(payload) for _, payload in records)
        assert stored < raw / 2
    with Storage.open(tmp_path, checkpoint_points=None) as reopened:
        assert reopened.head_points == 1000 * 5
        for metric in ("host.0.load", "host.99.load"):
            assert reopened.query(metric) == expected(batches, metric)


def test_a_batch_that_would_not_shrink_is_logged_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record is never bigger than the raw batch: kind 1 then, read back."""
    monkeypatch.setattr(_writer, "compress_batch", lambda payload: payload + b"!")
    batches = walk(5, 3)
    with Storage.open(tmp_path, checkpoint_points=None) as storage:
        for batch in batches:
            storage.append(batch)
    assert {kind for kind, _ in log_records(tmp_path)} == {KIND_BATCH}
    with Storage.open_readonly(tmp_path) as reader:
        assert reader.query("host.0.load") == expected(batches, "host.0.load")


def test_a_format_3_directory_is_read_then_upgraded_by_a_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain records of format 3 read back (storage, one-series open and the
    forwarder's reader); a reader leaves the marker alone; a writer marks
    the directory format 4 and appends compressed records to the same log
    directory, and every point of both kinds reads back, in log order."""
    old = walk(10, 4, seed=1)
    with monkeypatch.context() as patch:
        patch.setattr(_writer, "compress_batch", lambda payload: payload + b"!")
        with Storage.open(tmp_path, checkpoint_points=None) as storage:
            for batch in old:
                storage.append(batch)
    (tmp_path / MARKER_NAME).write_bytes(MARKER_TEXT_3)
    with Storage.open_readonly(tmp_path) as reader:
        assert reader.query("host.0.load") == expected(old, "host.0.load")
    with Storage.open_readonly(tmp_path, series=[("host.0.load", "server-003")]) as one:
        assert one.query("host.0.load") == {
            "server-003": expected(old, "host.0.load")["server-003"]
        }
    assert (tmp_path / MARKER_NAME).read_bytes() == MARKER_TEXT_3
    new = walk(10, 4, seed=2)
    new = [[(m, e, v, t + 10_000) for m, e, v, t in batch] for batch in new]
    with Storage.open(tmp_path, checkpoint_points=None) as storage:
        assert (tmp_path / MARKER_NAME).read_bytes() == MARKER_TEXT
        for batch in new:
            storage.append(batch)
        assert storage.query("host.0.load") == expected(old + new, "host.0.load")
        end = storage.log_end
    with Storage.open_readonly(tmp_path, series=[("host.0.load", "server-003")]) as one:
        assert one.query("host.0.load") == {
            "server-003": expected(old + new, "host.0.load")["server-003"]
        }
    kinds = [kind for kind, _ in log_records(tmp_path)]
    assert kinds == [KIND_BATCH] * 4 + [KIND_BATCH_ZSTD] * 4
    (first, _path), *_ = numbered(tmp_path, WAL_PATTERN)
    log_reader = LogReader(tmp_path, cost=lambda m, e: (1, 0))
    rows = []
    cursor = Cursor(first, 16)
    for _ in range(100):
        chunk, cursor = log_reader.read(cursor, end, max_samples=7, max_bytes=10**9)
        if chunk is None:
            break
        for piece in chunk.pieces:
            rows += [
                (*piece.keys[n], v, t)
                for n, t, v in zip(
                    piece.numbers, piece.timestamps, piece.values, strict=True
                )
            ]
    assert rows == [row for batch in old + new for row in batch]
    total = sum(count_points(p) for _seq, p in numbered(tmp_path, WAL_PATTERN))
    assert total == 80


def _sound_payload() -> bytes:
    """A compressed batch record's payload of 50 points of one series."""
    raw = encode_batch(
        array("I", [0] * 50),
        array("q", range(T0, T0 + 50)),
        array("d", [i / 4 for i in range(50)]),
        [series_entry(0, "cpu.load", "web-1")],
        TableCache(),
    )
    return compress_batch(raw)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damaged_compressed_batches_are_refused_as_damage(data: st.DataObject) -> None:
    """Bytes flipped, cut or appended: a batch of the stated length (the
    record's CRC, checked before, is what catches a flip that zstd cannot),
    or CorruptRecordError, from the payload and from the batch decoder."""
    sound = _sound_payload()
    damaged = bytearray(sound)
    position = data.draw(st.integers(0, len(damaged) - 1))
    damaged[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    for raw in (bytes(damaged), bytes(damaged[:cut]), bytes(damaged) + b"\x00"):
        try:
            got = batch_payload(KIND_BATCH_ZSTD, raw)
        except CorruptRecordError:
            continue
        assert len(got) == struct.unpack_from("<I", raw)[0]
        try:
            decode_batch_record(KIND_BATCH_ZSTD, raw)
        except CorruptRecordError:
            pass


def test_a_stated_length_is_never_trusted_past_the_frame_or_the_limit() -> None:
    """A length the frame does not fill, or beyond any record, is damage."""
    sound = _sound_payload()
    (length,) = struct.unpack_from("<I", sound)
    frame = sound[4:]
    for stated in (length - 1, length + 1, MAX_RECORD_PAYLOAD + 1, 2**32 - 1):
        with pytest.raises(CorruptRecordError):
            batch_payload(KIND_BATCH_ZSTD, struct.pack("<I", stated) + frame)
    with pytest.raises(CorruptRecordError, match="shorter than its length"):
        batch_payload(KIND_BATCH_ZSTD, b"\x01")
    with pytest.raises(CorruptRecordError, match="unknown record kind"):
        batch_payload(7, sound)
