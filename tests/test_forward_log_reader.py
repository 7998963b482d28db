"""Reading the write-ahead log from a cursor: order, bounds, damage, gone files."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from statsyard.forward.cursor import Cursor
from statsyard.forward.log_reader import LogReader, count_points
from statsyard.storage import WAL_PATTERN, LogEnd, Storage, numbered

TS = 1_700_000_000_000
Row = tuple[str, str, float, int]


def batches(count: int, size: int) -> list[list[Row]]:
    return [
        [
            ("m", f"e{i % 3}", float(b * size + i), TS + b * size + i)
            for i in range(size)
        ]
        for b in range(count)
    ]


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    """A writer whose logs rotate every few batches; no checkpoints."""
    store = Storage.open(tmp_path / "data", segment_bytes=1024, checkpoint_points=None)
    yield store
    store.close()


def read_all(
    reader: LogReader, cursor: Cursor, end: LogEnd, **bounds: int
) -> tuple[list[Row], list[int], Cursor]:
    """Every point from ``cursor`` to ``end``, the chunk sizes, the final cursor."""
    rows: list[Row] = []
    sizes: list[int] = []
    for _ in range(10_000):
        chunk, cursor = reader.read(cursor, end, **bounds)
        if chunk is None:
            return rows, sizes, cursor
        sizes.append(chunk.samples)
        for piece in chunk.pieces:
            rows.extend(
                (*piece.keys[n], v, t)
                for n, t, v in zip(
                    piece.numbers, piece.timestamps, piece.values, strict=True
                )
            )
    raise AssertionError("reader never ran out")


def first_cursor(storage: Storage) -> Cursor:
    (seq, _path), *_ = numbered(storage.directory, WAL_PATTERN)
    return Cursor(seq, 16)


def test_every_point_comes_back_in_log_order_in_bounded_chunks(
    storage: Storage,
) -> None:
    """Across rotated logs and split records; the end cursor is the log end."""
    written = batches(20, 50)
    for batch in written:
        storage.append(batch)
    assert len(numbered(storage.directory, WAL_PATTERN)) > 3  # rotated
    reader = LogReader(storage.directory, cost=lambda m, e: (1, 0))
    end = storage.log_end
    rows, sizes, cursor = read_all(
        reader, first_cursor(storage), end, max_samples=70, max_bytes=10**9
    )
    assert rows == [row for batch in written for row in batch]
    assert max(sizes) == 70
    assert cursor == Cursor(end.seq, end.size)
    assert reader.pending_bytes(cursor, end) == 0


def test_chunks_are_bounded_in_request_bytes(storage: Storage) -> None:
    """A per-point cost of 100 bytes and max_bytes 1000: at most 10 points."""
    storage.append(batches(1, 95)[0])
    reader = LogReader(storage.directory, cost=lambda m, e: (100, 0))
    rows, sizes, _ = read_all(
        reader, first_cursor(storage), storage.log_end, max_samples=1000, max_bytes=1000
    )
    assert len(rows) == 95
    assert max(sizes) <= 10


def test_nothing_past_the_published_end_is_read(storage: Storage) -> None:
    """Records appended after the LogEnd a reader holds wait for the next one."""
    written = batches(3, 10)
    storage.append(written[0])
    early = storage.log_end
    storage.append(written[1])
    storage.append(written[2])
    reader = LogReader(storage.directory, cost=lambda m, e: (1, 0))
    rows, _, cursor = read_all(
        reader, first_cursor(storage), early, max_samples=100, max_bytes=10**9
    )
    assert rows == written[0]
    assert reader.pending_bytes(cursor, storage.log_end) > 0
    rest, _, _ = read_all(
        reader, cursor, storage.log_end, max_samples=100, max_bytes=10**9
    )
    assert rest == written[1] + written[2]


def test_a_damaged_record_is_skipped_counted_and_logged(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """A flipped byte in a sealed log loses that record only."""
    written = batches(3, 10)
    for batch in written:
        storage.append(batch)
    path = numbered(storage.directory, WAL_PATTERN)[0][1]
    data = bytearray(path.read_bytes())
    size = (len(data) - 16) // 3
    data[16 + size + size // 2] ^= 0xFF  # inside the second record
    path.write_bytes(bytes(data))
    reader = LogReader(storage.directory, cost=lambda m, e: (1, 0))
    with caplog.at_level(logging.WARNING):
        rows, _, _ = read_all(
            reader,
            first_cursor(storage),
            storage.log_end,
            max_samples=100,
            max_bytes=10**9,
        )
    assert rows == written[0] + written[2]
    assert reader.skipped_records == 1
    assert "Skipped 1 damaged records" in caplog.text


def test_a_log_deleted_before_it_was_read_is_stepped_over(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """The retention counted it as dropped; reading goes on with the next log."""
    for batch in batches(20, 50):
        storage.append(batch)
    logs = numbered(storage.directory, WAL_PATTERN)
    logs[1][1].unlink()
    reader = LogReader(storage.directory, cost=lambda m, e: (1, 0))
    with caplog.at_level(logging.WARNING):
        rows, _, _ = read_all(
            reader,
            first_cursor(storage),
            storage.log_end,
            max_samples=500,
            max_bytes=10**9,
        )
    assert "are gone before being sent" in caplog.text
    total = sum(count_points(path) for _seq, path in logs if path.exists())
    assert len(rows) == total
    assert (
        count_points(logs[0][1], Cursor(logs[0][0], 16, 7))
        == count_points(logs[0][1]) - 7
    )


def test_a_fifo_named_like_a_log_never_blocks_the_reader(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """A FIFO in place of a log: counted as empty, not read (an error names it);
    reading goes on with the next log instead of blocking for ever."""
    for batch in batches(20, 50):
        storage.append(batch)
    logs = numbered(storage.directory, WAL_PATTERN)
    fifo = logs[1][1]
    fifo.unlink()
    os.mkfifo(fifo)
    reader = LogReader(storage.directory, cost=lambda m, e: (1, 0))
    previous = signal.signal(signal.SIGALRM, signal.default_int_handler)
    signal.alarm(10)  # a hang fails the test instead of the suite
    try:
        assert count_points(fifo) == 0
        with caplog.at_level(logging.WARNING):
            rows, _, _ = read_all(
                reader,
                first_cursor(storage),
                storage.log_end,
                max_samples=500,
                max_bytes=10**9,
            )
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert f"Not reading {fifo}: is a FIFO, not a file" in caplog.text
    total = sum(count_points(path) for _seq, path in logs if path != fifo)
    assert len(rows) == total
