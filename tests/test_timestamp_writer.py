"""TimestampWriter through its proxy and messages."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pykka
import pytest

from statsyard._ticker import Ticker
from statsyard.app import StatsYard
from statsyard.config import Config
from statsyard.datapoint import DataPoint, Row
from statsyard.exceptions import (
    InvalidArgumentError,
    NotRunningError,
    UnknownMessageError,
    WriteError,
)
from statsyard.pipeline import timestamp_writer, write_stall
from statsyard.pipeline.ingest_consumer import IngestObserver
from statsyard.pipeline.ledger import Ledger
from statsyard.pipeline.timestamp_writer import (
    StorageHandle,
    TimestampWriter,
    WriteAck,
    WriteBatch,
)
from statsyard.storage import Storage
from tests._stored import stored_points
from tests.conftest import RecordingLink

WAIT = 5.0
TS = 1_700_000_000_000


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[pykka.ActorProxy[TimestampWriter]]:
    ref = TimestampWriter.start(data_dir=tmp_path / "data", fsync="always")
    yield ref.proxy()
    ref.stop()


def test_write_timestamp_appends_one_line_and_replies_when_written(
    writer: pykka.ActorProxy[TimestampWriter], tmp_path: Path
) -> None:
    """The seed's write_timestamp: "<timestamp> <message>" per call, in order."""
    target = tmp_path / "log.txt"
    assert writer.write_timestamp(target, 1, "hello").get(timeout=WAIT) is None
    writer.write_timestamp(str(target), 2, "world").get(timeout=WAIT)
    assert target.read_text() == "1 hello\n2 world\n"


@pytest.mark.parametrize(
    ("make_path", "message", "error"),
    [
        (lambda tmp: tmp / "missing" / "log.txt", "x", FileNotFoundError),
        (lambda tmp: tmp, "x", IsADirectoryError),
        (lambda tmp: tmp / "log.txt", 42, InvalidArgumentError),
        (lambda tmp: tmp / "log.txt", "two\nlines", InvalidArgumentError),
    ],
)
def test_write_timestamp_failures_come_back_to_the_caller(
    writer: pykka.ActorProxy[TimestampWriter],
    tmp_path: Path,
    make_path: Callable[[Path], Any],
    message: Any,
    error: type[Exception],
) -> None:
    """A bad path, directory or message is the caller's error; the writer lives."""
    with pytest.raises(error):
        writer.write_timestamp(make_path(tmp_path), 1, message).get(timeout=WAIT)
    assert (
        writer.write_timestamp(tmp_path / "ok.txt", 1, "fine").get(timeout=WAIT) is None
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_write_timestamp_permission_error(
    writer: pykka.ActorProxy[TimestampWriter], tmp_path: Path
) -> None:
    """A file the writer may not write comes back as PermissionError."""
    target = tmp_path / "ro.txt"
    target.write_text("")
    target.chmod(0o400)
    with pytest.raises(PermissionError):
        writer.write_timestamp(target, 1, "x").get(timeout=WAIT)


def test_write_points_acknowledges_durable_points(
    writer: pykka.ActorProxy[TimestampWriter], tmp_path: Path
) -> None:
    """write_points replies with an ack once the batch is on disk (fsync always)."""
    points = [DataPoint("cpu", "h1", i, TS + i) for i in range(10)]
    ack = writer.write_points(points).get(timeout=WAIT)
    assert ack == WriteAck(end=0, written=10, synced=True)
    writer.sync().get(timeout=WAIT)
    assert stored_points(tmp_path / "data") == [
        ("cpu", "h1", TS + i, i) for i in range(10)
    ]


def test_write_points_refuses_invalid_points(
    writer: pykka.ActorProxy[TimestampWriter],
) -> None:
    """Invalid points are the caller's error; nothing of the batch is written."""
    with pytest.raises(InvalidArgumentError, match="1 of 2 points are invalid"):
        writer.write_points([("m", "e", 1, TS), ("m", "e", float("nan"), TS)]).get(
            timeout=WAIT
        )


def test_pipeline_batches_commit_once_even_when_redelivered(tmp_path: Path) -> None:
    """A WriteBatch already committed in the ledger is acknowledged, not rewritten."""
    ledger = Ledger()
    ledger.accept(3)
    ref = TimestampWriter.start(data_dir=tmp_path / "d", ledger=ledger, fsync="never")
    points: tuple[Row, ...] = tuple(("m", "e", i, TS + i) for i in range(2))
    first: pykka.Future[WriteAck] = pykka.ThreadingFuture()
    ref.tell(WriteBatch(0, 3, points, invalid=1, reply=first))
    assert first.get(timeout=WAIT) == WriteAck(3, 2, synced=False)
    again: pykka.Future[WriteAck] = pykka.ThreadingFuture()
    ref.tell(WriteBatch(0, 3, points, invalid=1, reply=again))
    assert again.get(timeout=WAIT).duplicate
    counts = ledger.counts()
    assert (counts.written, counts.invalid) == (2, 1)
    ref.stop(block=True, timeout=WAIT)
    assert len(stored_points(tmp_path / "d")) == 2


def test_an_unknown_message_crashes_the_writer_and_keeps_what_was_written(
    tmp_path: Path, link: RecordingLink, caplog: pytest.LogCaptureFixture
) -> None:
    """Told an unknown message, the writer crashes (logged) and closes its files."""
    ref = TimestampWriter.start(data_dir=tmp_path / "d", fsync="never", link=link)
    ref.proxy().write_points([("m", "e", 1, TS)]).get(timeout=WAIT)
    with caplog.at_level(logging.ERROR):
        ref.tell({"what": "is this"})
        assert link.exited_event.wait(WAIT)
    crashed, error = link.exits[0]
    assert crashed
    assert isinstance(error, UnknownMessageError)
    assert any("Unhandled exception" in r.getMessage() for r in caplog.records)
    assert stored_points(tmp_path / "d") == [("m", "e", TS, 1)]


def test_a_batch_straddling_the_committed_index_is_trimmed_not_rewritten(
    tmp_path: Path,
) -> None:
    """Only the part above ``committed_upto`` is written, whatever the sender thought.

    The second batch overlaps the first (as a restarted consumer's can): its
    valid points below index 6 and its rejected point at index 2 are dropped,
    the rest is written and counted once; a batch wholly below is only acked.
    """
    ledger = Ledger()
    ledger.accept(10)
    ref = TimestampWriter.start(data_dir=tmp_path / "d", ledger=ledger, fsync="never")

    def rows(indices: list[int]) -> tuple[tuple[str, str, int, int], ...]:
        return tuple(("m", "e", i, TS + i) for i in indices)

    first: pykka.Future[WriteAck] = pykka.ThreadingFuture()
    ref.tell(WriteBatch(0, 6, rows([0, 1, 3, 4, 5]), 1, first, invalid_at=(2,)))
    assert first.get(timeout=WAIT) == WriteAck(6, 5, synced=False)
    overlapping: pykka.Future[WriteAck] = pykka.ThreadingFuture()
    ref.tell(
        WriteBatch(
            1, 10, rows([1, 3, 4, 5, 6, 8, 9]), 2, overlapping, invalid_at=(2, 7)
        )
    )
    assert overlapping.get(timeout=WAIT) == WriteAck(10, 3, synced=False)
    below: pykka.Future[WriteAck] = pykka.ThreadingFuture()
    ref.tell(WriteBatch(3, 8, rows([3, 4, 5, 6]), 1, below, invalid_at=(7,)))
    assert below.get(timeout=WAIT) == WriteAck(8, 0, synced=False, duplicate=True)

    counts = ledger.counts()
    assert (counts.written, counts.invalid, counts.pending) == (8, 2, 0)
    ref.stop(block=True, timeout=WAIT)
    assert stored_points(tmp_path / "d") == [
        ("m", "e", TS + i, i) for i in (0, 1, 3, 4, 5, 6, 8, 9)
    ]


def test_a_straddling_batch_whose_rejections_are_unplaced_is_refused(
    tmp_path: Path,
) -> None:
    """Without the indices of its rejected points a batch cannot be trimmed exactly.

    The writer then refuses it (the sender retries from the committed index)
    rather than guess which points are already written.
    """
    ledger = Ledger()
    ledger.accept(6)
    ref = TimestampWriter.start(data_dir=tmp_path / "d", ledger=ledger, fsync="never")
    first: pykka.Future[WriteAck] = pykka.ThreadingFuture()
    ref.tell(WriteBatch(0, 3, (("m", "e", 0, TS),) * 3, 0, first))
    first.get(timeout=WAIT)
    unplaced: pykka.Future[WriteAck] = pykka.ThreadingFuture()
    ref.tell(WriteBatch(2, 6, (("m", "e", 1, TS + 1),) * 3, 1, unplaced))
    with pytest.raises(ValueError, match="rejected points"):
        unplaced.get(timeout=WAIT)
    assert ledger.committed_upto == 3
    assert ref.is_alive()


class _ConsumerWatch(IngestObserver):
    """Signals when a consumer other than the first one validates a batch."""

    def __init__(self) -> None:
        self.first: threading.Thread | None = None
        self.successor_validated = threading.Event()

    def validated(self, points: int, invalid: int, seconds: float) -> None:
        if self.first is None:
            self.first = threading.current_thread()
        elif threading.current_thread() is not self.first:
            self.successor_validated.set()


def test_a_consumer_restart_during_a_slow_write_writes_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reproduction of issue 8's defect 1, through the whole pipeline.

    The consumer dies while its write of [0, 5) is held up in the writer (a
    slow checkpoint); its successor gets those points back merged with later
    chunks (chunks of 5, batches of 7), trims them against a committed index
    that has not moved yet, and sends [0, 7). The writer must write only
    [5, 7) of it. Points 3 and 6 are invalid: each is counted once too.
    """
    rejected = {3, 6}

    def point(i: int) -> tuple[str, str, float, int]:
        return ("m", "e", float("nan") if i in rejected else i, TS + i)

    gate, entered = threading.Event(), threading.Event()
    real_append = Storage.append

    def slow_append(self: Storage, points: Any) -> int:
        if not gate.is_set():
            entered.set()
            assert gate.wait(WAIT)
        return real_append(self, points)

    monkeypatch.setattr(Storage, "append", slow_append)
    watch = _ConsumerWatch()
    yard = StatsYard(
        Config.of(storage={"fsync": "never"}),
        data_dir=tmp_path / "data",
        batch_size=7,
        ship_metrics=False,
        ingest_observer=watch,
    ).start()
    try:
        chunks = [[point(i) for i in range(s, s + 5)] for s in (0, 5, 10)]
        yard.queue.push_many(chunks[0], timeout=WAIT)
        assert entered.wait(WAIT)  # the write of [0, 5) is pending in the writer
        for chunk in chunks[1:]:
            yard.queue.push_many(chunk, timeout=WAIT)
        yard.child("consumer").tell("crash")
        assert watch.successor_validated.wait(WAIT)
        gate.set()
        yard.flush(timeout=WAIT)
        counts = yard.counts()
    finally:
        gate.set()
        yard.stop(timeout=WAIT)
    assert (counts.pushed, counts.written, counts.invalid) == (15, 13, 2)
    assert counts.pending == 0
    assert stored_points(tmp_path / "data") == [
        ("m", "e", TS + i, i) for i in range(15) if i not in rejected
    ]


def test_a_failed_automatic_checkpoint_writes_no_batch_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EMFILE while a checkpoint opens its segment: logged, nothing stored twice.

    Issue 8's defect 5 (300 pushed, 400 stored): the error escaped append
    after the batch was in the log, and the redelivery appended it again.
    """
    real_open = os.open

    def no_more_files(path: Any, *args: Any, **kwargs: Any) -> int:
        if "seg-" in os.fspath(path):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_more_files)
    yard = StatsYard(
        Config.of(storage={"fsync": "never", "checkpoint_points": 100}),
        data_dir=tmp_path / "data",
        batch_size=100,
        ship_metrics=False,
    ).start()
    try:
        consumer = yard.child("consumer")
        yard.push_many(("m", "e", i, TS + i) for i in range(300))
        yard.flush(timeout=WAIT)
        counts = yard.counts()
        assert yard.child("consumer") is consumer  # never crashed
    finally:
        yard.stop(timeout=WAIT)
        monkeypatch.undo()
    assert (counts.pushed, counts.written, counts.pending) == (300, 300, 0)
    assert stored_points(tmp_path / "data") == [
        ("m", "e", TS + i, i) for i in range(300)
    ]


def test_an_fsync_failure_after_commit_reaches_flush_not_a_redelivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync="always": a failed fsync of a committed batch is flush()'s error, once.

    The batch stays committed (the consumer is acknowledged, nothing is
    redelivered or written twice); the next flush() reports that those points
    are not known to be durable; the one after succeeds.
    """
    real_fsync = os.fsync
    failures = {"left": 0}

    def failing_fsync(fd: int) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    yard = StatsYard(
        Config.of(storage={"fsync": "always"}),
        data_dir=tmp_path / "data",
        batch_size=10,
        ship_metrics=False,
    ).start()
    try:
        consumer = yard.child("consumer")
        yard.push_many(("m", "e", i, TS + i) for i in range(10))
        yard.flush(timeout=WAIT)
        monkeypatch.setattr(os, "fsync", failing_fsync)
        failures["left"] = 1
        yard.push_many(("m", "e", i, TS + i) for i in range(10, 20))
        with pytest.raises(WriteError, match="not known to be durable") as caught:
            yard.flush(timeout=WAIT)
        assert caught.value.errno == errno.EIO
        yard.flush(timeout=WAIT)  # reported once; later fsyncs succeed
        assert yard.child("consumer") is consumer  # no crash, no redelivery
        counts = yard.counts()
    finally:
        yard.stop(timeout=WAIT)
    assert (counts.pushed, counts.written, counts.pending) == (20, 20, 0)
    assert stored_points(tmp_path / "data") == [
        ("m", "e", TS + i, i) for i in range(20)
    ]


def test_write_points_reports_an_fsync_failure_as_not_durable(
    writer: pykka.ActorProxy[TimestampWriter],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Outside the pipeline the asker gets the error itself, saying what happened."""
    writer.sync().get(timeout=WAIT)  # started: its data directory is open

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(WriteError, match="1 points were written to the log"):
        writer.write_points([("m", "e", 1, TS)]).get(timeout=WAIT)
    monkeypatch.undo()
    writer.sync().get(timeout=WAIT)  # already reported: not raised again
    assert stored_points(tmp_path / "data") == [("m", "e", TS, 1)]


class _LogWatch(logging.Handler):
    """Sets an event for each watched phrase once a record containing it arrives."""

    def __init__(self, *phrases: str) -> None:
        super().__init__(logging.DEBUG)
        self.seen = {phrase: threading.Event() for phrase in phrases}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for phrase, event in self.seen.items():
            if phrase in message:
                event.set()


@pytest.fixture
def writer_log() -> Iterator[_LogWatch]:
    """Watches the writer's log for the disk-full and resume lines."""
    watch = _LogWatch("Cannot write to", "Still cannot write", "resumed after")
    log = logging.getLogger("statsyard.pipeline.timestamp_writer")
    log.addHandler(watch)
    yield watch
    log.removeHandler(watch)


def _disk_full_yard(data_dir: Path) -> StatsYard:
    return StatsYard(
        Config.of(storage={"fsync": "interval", "fsync_interval": 0.05}),
        data_dir=data_dir,
        batch_size=50,
        queue_capacity=200,
        ship_metrics=False,
    ).start()


def test_a_full_disk_holds_ingest_and_resumes_by_itself(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    writer_log: _LogWatch,
) -> None:
    """ENOSPC at the file layer: the writer holds, pushers wait, nothing is lost.

    Issue 8's defect 6: the writer used to crash on ENOSPC until the tree
    gave up. Now it keeps the batch, retries with capped backoff (logged once,
    then periodically with counts), shows ``writer.write_stalled``, and once
    the disk takes writes again every point is written exactly once, without
    the writer ever being restarted.
    """
    monkeypatch.setattr(write_stall, "RETRY_INITIAL_S", 0.005)
    monkeypatch.setattr(write_stall, "RETRY_MAX_S", 0.02)
    monkeypatch.setattr(write_stall, "STALL_LOG_INTERVAL_S", 0.05)
    real_write, real_fsync = os.write, os.fsync
    full = threading.Event()
    refused = {"writes": 0}

    def write(fd: int, data: Any) -> int:
        if full.is_set():
            refused["writes"] += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    def fsync(fd: int) -> None:
        if full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    yard = _disk_full_yard(tmp_path / "data")
    try:
        yard.flush(timeout=WAIT)  # the writer has its data directory open
        writer = yard.child("writer")
        stalled = yard.registry.gauge("writer.write_stalled")
        retries = yard.registry.counter("writer.write_retries")
        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "fsync", fsync)
        full.set()
        outcome: list[object] = []

        def push() -> None:
            try:
                points = [("m", "e", i, TS + i) for i in range(1000)]
                outcome.append(yard.queue.push_many(points, timeout=WAIT))
            except Exception as exc:  # noqa: BLE001 (reported by the assertion)
                outcome.append(exc)

        pusher = threading.Thread(target=push)
        with caplog.at_level(logging.INFO, logger="statsyard"):
            pusher.start()
            assert writer_log.seen["Still cannot write"].wait(WAIT)
            assert stalled.value == 1
            pusher.join(timeout=0.2)
            assert pusher.is_alive()  # back-pressure: the queue is full, push waits
            full.clear()
            pusher.join(timeout=WAIT)
            assert outcome == [1000]
            assert writer_log.seen["resumed after"].wait(WAIT)
            yard.flush(timeout=WAIT)
        assert stalled.value == 0
        assert retries.value >= 1
        assert refused["writes"] > retries.value  # the first refusal is no retry
        assert yard.child("writer") is writer  # held, never restarted
        counts = yard.counts()
    finally:
        full.clear()
        yard.stop(timeout=WAIT)
    starts = [r for r in caplog.records if "Cannot write to" in r.getMessage()]
    assert len(starts) == 1 and starts[0].levelno == logging.ERROR
    assert "restarting" not in caplog.text
    assert (counts.pushed, counts.written, counts.lost, counts.pending) == (
        1000,
        1000,
        0,
        0,
    )
    assert stored_points(tmp_path / "data") == [
        ("m", "e", TS + i, i) for i in range(1000)
    ]


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A real 512 KiB tmpfs, mounted for the test (needs root and mount rights)."""
    where = tmp_path / "small"
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(path: Path) -> None:
    """Write ``path`` until the filesystem is full (bounded by its 512 KiB)."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        for _ in range(64):
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return
    raise AssertionError("the small filesystem never filled up")


def test_a_really_full_filesystem_holds_ingest_and_resumes_when_space_is_freed(
    small_filesystem: Path, writer_log: _LogWatch
) -> None:
    """On a real full tmpfs: ingest waits, then every point lands exactly once."""
    data_dir = small_filesystem / "data"
    filler = small_filesystem / "filler"
    yard = _disk_full_yard(data_dir)
    try:
        yard.flush(timeout=WAIT)  # the data directory exists and is open
        writer = yard.child("writer")
        stalled = yard.registry.gauge("writer.write_stalled")
        _fill(filler)
        outcome: list[object] = []

        def push() -> None:
            try:
                points = [("m", "e", i, TS + i) for i in range(2000)]
                outcome.append(yard.queue.push_many(points, timeout=WAIT))
            except Exception as exc:  # noqa: BLE001 (reported by the assertion)
                outcome.append(exc)

        pusher = threading.Thread(target=push)
        pusher.start()
        assert writer_log.seen["Cannot write to"].wait(WAIT)
        assert stalled.value == 1
        pusher.join(timeout=0.2)
        assert pusher.is_alive()  # back-pressure
        filler.unlink()
        pusher.join(timeout=WAIT)
        assert outcome == [2000]
        assert writer_log.seen["resumed after"].wait(WAIT)
        yard.flush(timeout=WAIT)
        assert stalled.value == 0
        assert yard.child("writer") is writer
        counts = yard.counts()
    finally:
        yard.stop(timeout=WAIT)
    assert (counts.pushed, counts.written, counts.lost, counts.pending) == (
        2000,
        2000,
        0,
        0,
    )
    assert stored_points(data_dir) == [("m", "e", TS + i, i) for i in range(2000)]


def test_a_writer_whose_start_fails_releases_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: RecordingLink
) -> None:
    """A start failing after the directory lock is taken leaves it free again.

    Issue 8's defect 10: the dead writer kept the lock, so every restart
    failed with "already open for writing".
    """
    real_start = Ticker.start

    def no_thread(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(Ticker, "start", no_thread)
    handle = StorageHandle()
    TimestampWriter.start(data_dir=tmp_path / "d", handle=handle, link=link)
    assert link.exited_event.wait(WAIT)
    assert link.exits[0][0]  # crashed
    monkeypatch.setattr(Ticker, "start", real_start)
    with pytest.raises(NotRunningError):
        handle.get(timeout=0)  # the failed writer's storage is not left published
    again = TimestampWriter.start(data_dir=tmp_path / "d", handle=handle)
    again.proxy().write_points([("m", "e", 1, TS)]).get(timeout=WAIT)
    again.stop(block=True, timeout=WAIT)
    assert stored_points(tmp_path / "d") == [("m", "e", TS, 1)]


def test_a_writer_stopped_while_holding_a_batch_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer_log: _LogWatch
) -> None:
    """A held batch is never committed: restarted mid-stall, it is redelivered.

    The successor writer holds it again (the disk is still full), and once
    space is back every point is written exactly once.
    """
    monkeypatch.setattr(write_stall, "RETRY_INITIAL_S", 0.005)
    monkeypatch.setattr(write_stall, "RETRY_MAX_S", 0.02)
    real_write = os.write
    full = threading.Event()

    def write(fd: int, data: Any) -> int:
        if full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    yard = _disk_full_yard(tmp_path / "data")
    try:
        yard.flush(timeout=WAIT)
        monkeypatch.setattr(os, "write", write)
        full.set()
        yard.queue.push_many([("m", "e", i, TS + i) for i in range(120)], timeout=WAIT)
        assert writer_log.seen["Cannot write to"].wait(WAIT)
        first = yard.child("writer")
        writer_log.seen["Cannot write to"].clear()
        yard.supervisor.restart_child("writer").get(timeout=WAIT)
        assert writer_log.seen["Cannot write to"].wait(WAIT)  # held again
        assert yard.child("writer") is not first
        full.clear()
        yard.flush(timeout=WAIT)
        counts = yard.counts()
    finally:
        full.clear()
        yard.stop(timeout=WAIT)
    assert (counts.pushed, counts.written, counts.lost, counts.pending) == (
        120,
        120,
        0,
        0,
    )
    assert stored_points(tmp_path / "data") == [
        ("m", "e", TS + i, i) for i in range(120)
    ]


def _log_points(data_dir: Path) -> int:
    """Points a fresh reader finds in the log (not yet compacted into blocks)."""
    reader = Storage.open_readonly(data_dir)
    try:
        return reader.head_points
    finally:
        reader.close()


def _slow_gauges(series: int, seconds: int) -> list[tuple[str, str, float, int]]:
    return [
        (f"gauge.{s % 7}", f"host-{s}", s * 0.5 + t, TS + t * 1000)
        for t in range(seconds)
        for s in range(series)
    ]


def test_a_clean_stop_compacts_the_head_so_the_log_holds_no_points(
    tmp_path: Path,
) -> None:
    """Stopping the writer checkpoints: the data reads back exactly from blocks."""
    points = _slow_gauges(20, 30)
    ref = TimestampWriter.start(data_dir=tmp_path / "d", fsync="never")
    ref.proxy().write_points(points).get(timeout=WAIT)
    assert _log_points(tmp_path / "d") == len(points)  # not compacted yet
    ref.stop()
    assert _log_points(tmp_path / "d") == 0
    expected = sorted((m, e, ts, v) for m, e, v, ts in points)
    assert sorted(stored_points(tmp_path / "d")) == expected


def test_a_crashed_writer_leaves_its_head_in_the_log_to_restart_at_once(
    tmp_path: Path, link: RecordingLink
) -> None:
    """Only a clean stop compacts; after a crash the log keeps the points."""
    ref = TimestampWriter.start(data_dir=tmp_path / "d", fsync="never", link=link)
    ref.proxy().write_points([("m", "e", 1, TS)]).get(timeout=WAIT)
    ref.tell({"what": "is this"})
    assert link.exited_event.wait(WAIT)
    assert _log_points(tmp_path / "d") == 1
    assert stored_points(tmp_path / "d") == [("m", "e", TS, 1)]


class _CheckpointSeen(timestamp_writer.WriterObserver):
    def __init__(self) -> None:
        self.points: list[int] = []
        self.event = threading.Event()

    def checkpointed(self, points: int, seconds: float) -> None:
        self.points.append(points)
        self.event.set()


def test_a_head_that_aged_past_checkpoint_after_is_compacted_by_the_timer(
    tmp_path: Path,
) -> None:
    """An idle writer compacts its head after ``checkpoint_after`` seconds."""
    seen = _CheckpointSeen()
    ref = TimestampWriter.start(
        data_dir=tmp_path / "d", fsync="never", checkpoint_after=0.05, observer=seen
    )
    try:
        points = _slow_gauges(10, 12)
        ref.proxy().write_points(points).get(timeout=WAIT)
        assert seen.event.wait(WAIT)
        assert seen.points == [len(points)]
        assert _log_points(tmp_path / "d") == 0  # while the writer still runs
        expected = sorted((m, e, ts, v) for m, e, v, ts in points)
        assert sorted(stored_points(tmp_path / "d")) == expected
    finally:
        ref.stop()


def _compaction_workers() -> list[psutil.Process]:
    """This process' compaction workers."""
    return [
        child
        for child in psutil.Process().children()
        if "statsyard.storage._compaction:handle" in child.cmdline()
    ]


def _gone(process: psutil.Process) -> bool:
    """Whether ``process`` has exited (and been reaped) within a while."""
    try:
        process.wait(timeout=30)
    except psutil.NoSuchProcess:
        pass
    return not process.is_running()


def test_an_aged_head_is_compacted_by_the_worker_that_stops_with_the_writer(
    tmp_path: Path,
) -> None:
    """With ``compaction_worker`` the timer's checkpoint is encoded in a worker
    process and committed when the writer is told the blocks are in; stopping
    the writer stops the worker."""
    seen = _CheckpointSeen()
    ref = TimestampWriter.start(
        data_dir=tmp_path / "d",
        fsync="never",
        checkpoint_after=0.05,
        observer=seen,
        storage_options={"compaction_worker": True},
    )
    try:
        points = _slow_gauges(10, 12)
        ref.proxy().write_points(points).get(timeout=WAIT)
        assert seen.event.wait(30)
        assert seen.points == [len(points)]
        assert _log_points(tmp_path / "d") == 0
        (worker,) = _compaction_workers()
    finally:
        ref.stop()
    assert _gone(worker)
    expected = sorted((m, e, ts, v) for m, e, v, ts in points)
    assert sorted(stored_points(tmp_path / "d")) == expected


def test_a_crashed_writer_stops_its_compaction_worker(
    tmp_path: Path, link: RecordingLink
) -> None:
    """on_failure closes the storage, and with it the worker; nothing is lost."""
    seen = _CheckpointSeen()
    ref = TimestampWriter.start(
        data_dir=tmp_path / "d",
        fsync="never",
        checkpoint_after=0.05,
        observer=seen,
        storage_options={"compaction_worker": True},
        link=link,
    )
    ref.proxy().write_points([("m", "e", 1, TS)]).get(timeout=WAIT)
    assert seen.event.wait(30)
    (worker,) = _compaction_workers()
    ref.proxy().write_points([("m", "e", 2, TS + 1)]).get(timeout=WAIT)
    ref.tell({"what": "is this"})
    assert link.exited_event.wait(WAIT)
    assert _gone(worker)
    assert stored_points(tmp_path / "d") == [("m", "e", TS, 1), ("m", "e", TS + 1, 2)]


def test_checkpoint_after_must_be_positive(tmp_path: Path) -> None:
    """A zero or negative age is the caller's error, before anything opens."""
    with pytest.raises(InvalidArgumentError, match="checkpoint_after"):
        TimestampWriter(data_dir=tmp_path / "d", checkpoint_after=0)


def test_the_service_compacts_an_aged_head_as_configured(tmp_path: Path) -> None:
    """``[storage] checkpoint_after`` reaches the writer of a running StatsYard."""
    done = threading.Event()

    class _Checkpoints(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("Checkpoint:"):
                done.set()

    handler = _Checkpoints(level=logging.INFO)
    storage_logger = logging.getLogger("statsyard.storage")
    storage_logger.addHandler(handler)
    old_level = storage_logger.level
    storage_logger.setLevel(logging.INFO)
    config = Config.of(
        storage={"data_dir": str(tmp_path / "d"), "checkpoint_after": 0.05},
        metrics={"enabled": False},
    )
    try:
        with StatsYard(config) as yard:
            yard.push_many(_slow_gauges(5, 4))
            yard.flush(timeout=WAIT)
            assert done.wait(WAIT)
            assert _log_points(tmp_path / "d") == 0
    finally:
        storage_logger.removeHandler(handler)
        storage_logger.setLevel(old_level)
