"""TimestampWriter through its proxy and messages."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest

from statsyard.datapoint import DataPoint
from statsyard.exceptions import UnknownMessageError
from statsyard.ledger import Ledger
from statsyard.timestamp_writer import TimestampWriter, WriteAck, WriteBatch
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
        (lambda tmp: tmp / "log.txt", 42, TypeError),
        (lambda tmp: tmp / "log.txt", "two\nlines", ValueError),
    ],
)
def test_write_timestamp_failures_come_back_to_the_caller(
    writer: pykka.ActorProxy[TimestampWriter],
    tmp_path: Path,
    make_path: object,
    message: object,
    error: type[Exception],
) -> None:
    """A bad path, directory or message is the caller's error; the writer lives."""
    with pytest.raises(error):
        writer.write_timestamp(make_path(tmp_path), 1, message).get(timeout=WAIT)  # type: ignore[operator]
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
    with pytest.raises(ValueError, match="1 of 2 points are invalid"):
        writer.write_points([("m", "e", 1, TS), ("m", "e", float("nan"), TS)]).get(
            timeout=WAIT
        )


def test_pipeline_batches_commit_once_even_when_redelivered(tmp_path: Path) -> None:
    """A WriteBatch already committed in the ledger is acknowledged, not rewritten."""
    ledger = Ledger()
    ledger.accept(3)
    ref = TimestampWriter.start(data_dir=tmp_path / "d", ledger=ledger, fsync="never")
    points = tuple(DataPoint("m", "e", i, TS + i) for i in range(2))
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
