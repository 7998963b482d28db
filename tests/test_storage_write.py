"""Storage's write path: append, sync, close, value types, write errors."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from statsyard.datapoint import DataPoint
from statsyard.exceptions import DataDirectoryInUseError, WriteError
from statsyard.storage import Storage
from tests._storage_helpers import T0, expected, points


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    """A writable storage in a fresh directory, closed after the test."""
    s = Storage.open(tmp_path / "data")
    yield s
    s.close()


def test_open_creates_the_directory_and_marker(tmp_path: Path) -> None:
    """A missing directory is created, with its marker file."""
    with Storage.open(tmp_path / "new" / "data"):
        pass
    assert (tmp_path / "new" / "data" / "STATSYARD").is_file()


def test_append_returns_the_bytes_written_and_counts_them(storage: Storage) -> None:
    """append() reports its record size; the counters add up."""
    first = storage.append(points("cpu.load", "h1", [1.5, 2.5]))
    second = storage.append(points("cpu.load", "h2", [3, 4, 5]))
    assert first > 0 and second > 0
    assert storage.points_written == 5
    assert storage.bytes_written == first + second
    assert storage.append([]) == 0


def test_points_survive_close_and_reopen(tmp_path: Path) -> None:
    """What was appended, synced and closed is all there after reopening."""
    batch = points("cpu.load", "h1", [1.0, 2.25, 3.5]) + points(
        "cpu.load", "h2", [7, 8]
    )
    with Storage.open(tmp_path) as s:
        s.append(batch)
        s.sync()
    with Storage.open(tmp_path) as s:
        assert s.query("cpu.load") == expected(batch, "cpu.load")


@pytest.mark.parametrize("checkpoint", [False, True])
def test_values_keep_their_type_exactly(tmp_path: Path, checkpoint: bool) -> None:
    """Ints stay ints (beyond 2**53 too), floats stay floats, mixed too."""
    values: list[int | float] = [
        2**53 + 1,
        2**63 - 1,
        -(2**63),
        0,
        1.0,
        0.1,
        1e300,
        5e-324,
        123456.789,
        3,
    ]
    batch = [
        *points("mixed", "e", values),
        *points("ints", "e", [2**53 + 1, 2**63 - 1, -(2**63), 7]),
        *points("floats", "e", [0.1, 2.0, -3.75, 1 / 3]),
        # Decimal-looking at first, then a value that overflows when scaled.
        *points("floats", "late", [*(i / 4 for i in range(40)), 1.7e308, 0.5]),
    ]
    with Storage.open(tmp_path, checkpoint_points=None) as s:
        s.append(batch)
        if checkpoint:
            s.checkpoint()
    with Storage.open(tmp_path) as s:
        for metric in ("mixed", "ints", "floats", "bigints"):
            for entity, want in expected(batch, metric).items():
                got = s.query(metric)[entity]
                assert got == want
                assert [type(v) for _, v in got] == [type(v) for _, v in want]


def test_full_disk_raises_write_error_and_leaves_the_log_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC mid-write: WriteError with the cause, file truncated back, retry works."""
    s = Storage.open(tmp_path)
    s.append(points("m", "e", [1, 2]))
    log = next(tmp_path.glob("wal-*.log"))
    size_before = log.stat().st_size
    real_write = os.write
    calls = {"n": 0}

    def half_then_full(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    batch = points("m", "e", [3, 4], start=T0 + 10_000)
    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(WriteError) as caught:
        s.append(batch)
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC
    assert "No space left" in str(caught.value)
    assert log.stat().st_size == size_before
    assert s.query("m")["e"] == [(T0, 1), (T0 + 1000, 2)]
    s.append(batch)  # the retry
    s.close()
    with Storage.open(tmp_path) as again:
        assert [v for _, v in again.query("m")["e"]] == [1, 2, 3, 4]
        assert again.skipped_records == 0


def test_a_failing_checkpoint_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A disk full during an automatic checkpoint is logged; append still succeeds."""
    s = Storage.open(tmp_path, checkpoint_points=4)
    s.append(points("m", "e", [1, 2, 3]))
    real_write = os.write

    def full_for_segments(fd: int, data: bytes) -> int:
        if "seg-" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_for_segments)
    with caplog.at_level(logging.ERROR, logger="statsyard.storage"):
        s.append(points("m", "e", [4, 5], start=T0 + 3000))
    monkeypatch.undo()
    assert "Checkpoint of" in caplog.text
    assert [v for _, v in s.query("m")["e"]] == [1, 2, 3, 4, 5]
    s.checkpoint()
    s.close()
    with Storage.open(tmp_path) as again:
        assert [v for _, v in again.query("m")["e"]] == [1, 2, 3, 4, 5]


def _fail_open_of_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def open_(path: Any, *args: Any, **kwargs: Any) -> int:
        if "seg-" in os.fspath(path):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)


def _fail_unlink(monkeypatch: pytest.MonkeyPatch) -> None:
    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "unlink", unlink)


def _fail_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize(
    ("inject", "retention"),
    [(_fail_open_of_segments, None), (_fail_unlink, 1), (_fail_fsync, None)],
    ids=["EMFILE-opening-a-segment", "EIO-unlinking-in-retention", "EIO-fsyncing"],
)
def test_nothing_after_the_batch_is_in_the_log_escapes_append(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    inject: Callable[[pytest.MonkeyPatch], None],
    retention: int | None,
) -> None:
    """A failing automatic checkpoint (or retention) never makes append raise.

    Once the batch is in the log, raising would make the caller write it
    again. The failure is logged and the checkpoint retried later; every
    point is stored exactly once.
    """
    s = Storage.open(
        tmp_path, checkpoint_points=4, segment_bytes=32, retention_max_bytes=retention
    )
    s.append(points("m", "e", [1, 2, 3, 4]))  # a first checkpoint: one segment
    s.append(points("m", "e", [5, 6, 7], start=T0 + 4000))
    inject(monkeypatch)
    with caplog.at_level(logging.ERROR, logger="statsyard.storage"):
        assert s.append(points("m", "e", [8], start=T0 + 7000)) > 0
    monkeypatch.undo()
    assert "will retry" in caplog.text or "Could not remove" in caplog.text
    s.append(points("m", "e", [9], start=T0 + 8000))
    s.checkpoint()
    s.close()
    with Storage.open(tmp_path) as again:
        got = [v for _, v in again.query("m")["e"]]
    if retention is None:
        assert got == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    else:  # retention drops whole old segments, never duplicates a point
        assert got == sorted(set(got))
        assert got[-1] == 9


def test_append_after_close_raises(tmp_path: Path) -> None:
    """A closed storage refuses writes with a clear error; close is idempotent."""
    s = Storage.open(tmp_path)
    s.close()
    s.close()
    with pytest.raises(WriteError, match="closed"):
        s.append(points("m", "e", [1]))


def test_readonly_storage_refuses_writes(tmp_path: Path) -> None:
    """open_readonly() gives a storage that cannot append or checkpoint."""
    Storage.open(tmp_path).close()
    reader = Storage.open_readonly(tmp_path)
    with pytest.raises(WriteError, match="read-only"):
        reader.append(points("m", "e", [1]))
    with pytest.raises(WriteError, match="read-only"):
        reader.checkpoint()


def test_bad_settings_are_rejected(tmp_path: Path) -> None:
    """Settings out of range fail at open with the name and the value."""
    with pytest.raises(ValueError, match="segment_bytes must be a positive int, got 0"):
        Storage.open(tmp_path, segment_bytes=0)


def test_checkpoint_compacts_and_removes_covered_logs(tmp_path: Path) -> None:
    """After a checkpoint the points live in a segment and old logs are gone."""
    batch = [DataPoint("cpu.load", f"h{i % 10}", i * 0.5, T0 + i) for i in range(1000)]
    with Storage.open(tmp_path, checkpoint_points=None) as s:
        s.append(batch)
        logs_before = sorted(tmp_path.glob("wal-*.log"))
        s.checkpoint()
        assert s.head_points == 0
        assert not any(p.exists() for p in logs_before)
        assert s.query("cpu.load") == expected(batch, "cpu.load")
    assert list(tmp_path.glob("seg-*.dat")) and list(tmp_path.glob("seg-*.idx"))
    with Storage.open(tmp_path) as s:
        assert s.head_points == 0
        assert s.query("cpu.load") == expected(batch, "cpu.load")


def test_segments_rotate_by_size(tmp_path: Path) -> None:
    """With a small segment_bytes, checkpoints go into successive segments."""
    with Storage.open(tmp_path, segment_bytes=2_000, checkpoint_points=500) as s:
        for n in range(6):
            s.append(
                [
                    DataPoint("m", f"e{i % 5}", i * 1.01, T0 + n * 1000 + i)
                    for i in range(500)
                ]
            )
        total = sum(len(v) for v in s.query("m").values())
    assert total == 3000
    assert len(list(tmp_path.glob("seg-*.dat"))) >= 3


def test_any_str_name_round_trips(tmp_path: Path) -> None:
    """Non-ASCII names, even lone surrogates, are stored and read back exactly."""
    odd = [("température.°C", "hôte-1"), ("m\ud800", "e\udfff")]
    with Storage.open(tmp_path, checkpoint_points=None) as s:
        for metric, entity in odd:
            s.append(points(metric, entity, [1, 2]))
        s.checkpoint()
        s.append(points(odd[1][0], odd[1][1], [3], start=T0 + 5000))
    reader = Storage.open_readonly(tmp_path)
    assert reader.series() == sorted(odd)
    assert [v for _, v in reader.query("m\ud800")["e\udfff"]] == [1, 2, 3]


def test_a_name_too_long_for_the_format_is_refused_cleanly(storage: Storage) -> None:
    """ValueError for a 70,000-byte name; the rest of the batch is not half-added."""
    storage.append(points("m", "e", [1]))
    bad = [*points("m", "e", [2], start=T0 + 1000), DataPoint("x" * 70_000, "e", 3, T0)]
    with pytest.raises(ValueError, match="at most 65535 bytes"):
        storage.append(bad)
    assert storage.query("m") == {"e": [(T0, 1)]}
    assert storage.series() == [("m", "e")]


def test_a_second_writer_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    """One writer per directory (an flock); readers are always welcome."""
    first = Storage.open(tmp_path)
    with pytest.raises(DataDirectoryInUseError, match="already open for writing"):
        Storage.open(tmp_path)
    Storage.open_readonly(tmp_path).close()
    first.close()
    Storage.open(tmp_path).close()


@pytest.mark.parametrize("checkpoint", [False, True])
def test_rows_and_datapoints_store_the_same(tmp_path: Path, checkpoint: bool) -> None:
    """append() takes (metric, entity, value, timestamp) rows as well as DataPoints."""
    batch = points("cpu.load", "h1", [1.5, 2, 3.25]) + points("cpu.load", "h2", [7])
    rows = [(p.metric, p.entity, p.value, p.timestamp) for p in batch]
    with Storage.open(tmp_path / "rows", checkpoint_points=None) as s:
        assert s.append(rows) > 0
        assert s.points_written == 4
        if checkpoint:
            s.checkpoint()
        assert s.query("cpu.load") == expected(batch, "cpu.load")
    with Storage.open(tmp_path / "rows") as s:
        assert s.query("cpu.load") == expected(batch, "cpu.load")
        assert s.series() == [("cpu.load", "h1"), ("cpu.load", "h2")]


def test_a_malformed_row_is_refused_and_writes_nothing(storage: Storage) -> None:
    """A row that is not a 4-tuple: ValueError, and the log gets nothing."""
    with pytest.raises(ValueError, match="metric, entity, value, timestamp"):
        storage.append([("m", "e", 1.0)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="metric, entity, value, timestamp"):
        storage.append([("m", "e", 1.0, T0), ("m", "e", 2.0)])  # type: ignore[arg-type]
    assert storage.bytes_written == 0
    assert storage.query("m") == {}


@pytest.mark.parametrize(
    ("value", "stamp", "problem"),
    [
        (2**63, T0, "int value does not fit in 64 bits"),
        (-(2**70), T0, "int value does not fit in 64 bits"),
        (float("nan"), T0, "not a finite number"),
        (float("-inf"), T0, "not a finite number"),
        (1, 2**62, "timestamp 4611686018427387904 outside"),
        (1, 5, "timestamp 5 outside"),
    ],
)
def test_append_refuses_what_could_not_be_read_back(
    storage: Storage, value: float, stamp: int, problem: str
) -> None:
    """Values and timestamps beyond what validate() accepts: ValueError, nothing
    written (a reader would take them for damage)."""
    storage.append(points("m", "e", [1]))
    with pytest.raises(ValueError, match=problem):
        storage.append([DataPoint("m", "e", value, stamp), *points("n", "e", [2])])
    assert storage.series() == [("m", "e")]
    assert storage.query("m") == {"e": [(T0, 1)]}


@pytest.mark.parametrize("checkpoint", [False, True])
def test_value_types_may_change_from_batch_to_batch(
    tmp_path: Path, checkpoint: bool
) -> None:
    """Float, int and mixed batches in one head all keep their types."""
    batches = [
        points("m", "e", [0.5, 1.5]),
        points("m", "e", [2, 3], start=T0 + 10_000),
        points("m", "f", [4.0, 5], start=T0 + 20_000),
        points("m", "e", [2**63 - 1], start=T0 + 30_000),
        points("m", "f", [0.25], start=T0 + 40_000),
    ]
    every = [p for batch in batches for p in batch]
    with Storage.open(tmp_path, checkpoint_points=None) as s:
        for batch in batches:
            s.append(batch)
        got = s.query("m")
        if checkpoint:
            s.checkpoint()
            assert s.query("m") == got
    assert got == expected(every, "m")
    for entity, rows in got.items():
        want = expected(every, "m")[entity]
        assert [type(v) for _, v in rows] == [type(v) for _, v in want]
    with Storage.open(tmp_path) as s:
        assert s.query("m") == expected(every, "m")


def test_out_of_order_points_come_back_sorted_ties_to_the_last_written(
    tmp_path: Path,
) -> None:
    """Late points are sorted into place; of equal timestamps the last written wins."""
    rows = [
        ("m", "e", 1.0, T0 + 3000),
        ("m", "e", 2.0, T0 + 1000),
        ("m", "e", 3.0, T0 + 3000),
        ("m", "e", 4.0, T0 + 2000),
        ("m", "e", 5.0, T0 + 1000),
    ]
    want = {"e": [(T0 + 1000, 5.0), (T0 + 2000, 4.0), (T0 + 3000, 3.0)]}
    with Storage.open(tmp_path, checkpoint_points=None) as s:
        s.append(rows[:3])
        s.append(rows[3:])
        assert s.query("m") == want
        s.checkpoint()
        assert s.query("m") == want


def test_an_open_failing_midway_releases_the_lock_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage.open failing after taking the lock lets the next open succeed."""
    with Storage.open(tmp_path) as s:
        s.append(points("m", "e", [1]))
    real_open = os.open
    before = len(os.listdir("/proc/self/fd"))

    def no_more_files(path: Any, *args: Any, **kwargs: Any) -> int:
        if "wal-" in os.fspath(path):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_more_files)
    with pytest.raises(OSError, match="Too many open files"):
        Storage.open(tmp_path)
    monkeypatch.undo()
    assert len(os.listdir("/proc/self/fd")) == before
    with Storage.open(tmp_path) as again:
        assert [v for _, v in again.query("m")["e"]] == [1]


@pytest.mark.parametrize(
    "code", [errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EBADF]
)
def test_append_turns_every_os_failure_into_write_error_with_its_errno(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """Whatever the OS says, append raises WriteError carrying the errno, log intact."""
    s = Storage.open(tmp_path)
    s.append(points("m", "e", [1]))

    def refuse(fd: int, data: bytes) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "write", refuse)
    with pytest.raises(WriteError) as caught:
        s.append(points("m", "e", [2], start=T0 + 1000))
    monkeypatch.undo()
    assert caught.value.errno == code
    s.close()
    with Storage.open(tmp_path) as again:
        assert [v for _, v in again.query("m")["e"]] == [1]
