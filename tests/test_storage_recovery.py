"""Crash recovery: torn tails, flipped bytes, bad files, and SIGKILLed writers."""

from __future__ import annotations

import logging
import random
import re
import signal
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from statsyard.datapoint import DataPoint
from statsyard.exceptions import CorruptRecordError, NotADataDirectoryError
from statsyard.storage import Storage
from tests._storage_helpers import T0, expected, points, start_child_writer


def _write(tmp_path: Path, *batches: list[DataPoint], **options: Any) -> None:
    with Storage.open(tmp_path, **options) as s:
        for batch in batches:
            s.append(batch)


def _only(pattern: str, tmp_path: Path) -> Path:
    (path,) = tmp_path.glob(pattern)
    return path


def test_torn_tail_is_truncated_and_logged_with_bytes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Half a record at the end of the newest log: dropped, WARNING says how much."""
    first = points("m", "e", [1, 2])
    _write(tmp_path, first, points("m", "e", [3, 4], start=T0 + 5000))
    log = _only("wal-*.log", tmp_path)
    data = log.read_bytes()
    log.write_bytes(data[:-7])  # tear the second record
    with caplog.at_level(logging.WARNING, logger="statsyard.storage"):
        s = Storage.open(tmp_path)
    torn = [r for r in caplog.records if "torn tail" in r.getMessage()]
    assert len(torn) == 1
    offset = re.search(r"after offset (\d+)", torn[0].getMessage())
    assert offset is not None
    second_record_size = len(data) - 7 - int(offset.group(1))
    assert f"dropped {second_record_size} bytes" in torn[0].getMessage()
    assert s.query("m") == expected(first, "m")
    assert s.skipped_records == 0
    s.append(points("m", "e", [5], start=T0 + 9000))
    s.close()
    with Storage.open(tmp_path) as again:
        assert [v for _, v in again.query("m")["e"]] == [1, 2, 5]


def test_flipped_byte_mid_log_skips_one_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A record failing its checksum mid-file is skipped and counted; the rest reads."""
    a, b, c = (points("m", "e", [i], start=T0 + i * 1000) for i in range(3))
    _write(tmp_path, a, b, c)
    log = _only("wal-*.log", tmp_path)
    data = bytearray(log.read_bytes())
    record = (len(data) - 16) // 3
    data[16 + record + record // 2] ^= 0xFF  # inside the second record
    log.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="statsyard.storage"):
        s = Storage.open(tmp_path)
    assert s.skipped_records == 1
    assert "Skipped 1 damaged records" in caplog.text
    assert [v for _, v in s.query("m")["e"]] == [0, 2]
    s.close()


def test_flipped_byte_in_a_segment_block_skips_that_block_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged block is a counted skip at query time; other series are intact."""
    batch = [DataPoint("m", f"e{i % 4}", i, T0 + i) for i in range(400)]
    with Storage.open(tmp_path, checkpoint_points=None) as s:
        s.append(batch)
        s.checkpoint()
    dat = _only("seg-*.dat", tmp_path)
    data = bytearray(dat.read_bytes())
    data[len(data) - 5] ^= 0x55  # inside the last block's payload
    dat.write_bytes(bytes(data))
    with Storage.open(tmp_path) as s, caplog.at_level(logging.WARNING):
        result = s.query("m")
        assert s.skipped_records == 1
    assert "Skipped damaged block" in caplog.text
    want = expected(batch, "m")
    assert len(result) == 3
    for entity, rows in result.items():
        assert rows == want[entity]


def test_a_torn_block_of_an_unfinished_checkpoint_is_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unreadable block ending the data file: copied to damaged/, then cut."""
    batch = points("m", "e", range(100))
    with Storage.open(tmp_path, checkpoint_points=None) as s:
        s.append(batch)
        s.checkpoint()
        s.append(points("m", "e", [500], start=T0 + 10**6))
    dat = _only("seg-*.dat", tmp_path)
    with open(dat, "ab") as f:
        f.write(b"SYBK" + b"\x00" * 60)  # a crash mid-checkpoint
    with caplog.at_level(logging.WARNING), Storage.open(tmp_path) as s:
        assert [v for _, v in s.query("m")["e"]] == [*range(100), 500]
    assert "Truncated torn tail of" in caplog.text
    assert "dropped 64 bytes after offset" in caplog.text
    saved = list((tmp_path / "damaged").iterdir())
    assert [p.read_bytes() for p in saved] == [b"SYBK" + b"\x00" * 60]


@pytest.mark.parametrize("content", [b"", b"SYARD"], ids=["empty", "truncated-header"])
def test_newest_log_with_empty_or_torn_header_is_repaired(
    tmp_path: Path, content: bytes
) -> None:
    """A log created but whose header never reached the disk holds nothing: reset."""
    batch = points("m", "e", [1, 2])
    _write(tmp_path, batch)
    (tmp_path / "wal-0000000000000009.log").write_bytes(content)
    with Storage.open(tmp_path) as s:
        s.append(points("m", "e", [3], start=T0 + 9000))
    with Storage.open(tmp_path) as s:
        assert [v for _, v in s.query("m")["e"]] == [1, 2, 3]


def test_older_empty_log_is_a_counted_skip(tmp_path: Path) -> None:
    """An empty log that is not the newest is skipped and counted, nothing lost."""
    (tmp_path / "STATSYARD").write_bytes(b"StatsYard data directory\nformat 2\n")
    (tmp_path / "wal-0000000000000001.log").write_bytes(b"")
    (tmp_path / "wal-0000000000000002.log").write_bytes(b"")
    with Storage.open(tmp_path) as s:
        s.append(points("m", "e", [1]))
    with Storage.open(tmp_path) as s:
        assert s.query("m") == {"e": [(T0, 1)]}


def test_a_file_that_is_not_a_log_is_moved_aside_never_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file named like a log with foreign content: a reader skips it (counted,
    WARNING naming it); the writer moves it into damaged/ and starts."""
    _write(tmp_path, points("m", "e", [1]))
    content = b"this is not a StatsYard log, it is a text file\n"
    bogus = tmp_path / "wal-0000000000000005.log"
    bogus.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        reader = Storage.open_readonly(tmp_path)
    assert reader.query("m") == {"e": [(T0, 1)]}
    assert reader.skipped_records == 1
    assert f"Skipped {bogus}: not a StatsYard log" in caplog.text
    assert bogus.read_bytes() == content  # a reader never touches a file
    with caplog.at_level(logging.WARNING), Storage.open(tmp_path) as s:
        assert s.query("m") == {"e": [(T0, 1)]}
        s.append(points("m", "e", [2], start=T0 + 1000))
    assert f"Moved {bogus} into damaged/: not a StatsYard log" in caplog.text
    assert (tmp_path / "damaged" / bogus.name).read_bytes() == content
    with Storage.open(tmp_path) as s:
        assert [v for _, v in s.query("m")["e"]] == [1, 2]
        assert s.skipped_records == 0


def test_a_file_of_a_newer_format_is_a_clear_error_and_left_alone(
    tmp_path: Path,
) -> None:
    """A sound header of a newer format version: refused, never moved or read."""
    _write(tmp_path, points("m", "e", [1]))
    log = _only("wal-*.log", tmp_path)
    head = b"SYARDWAL" + struct.pack("<HH", 3, 0)
    newer = head + struct.pack("<I", zlib.crc32(head))
    log.write_bytes(newer)
    for opener in (Storage.open_readonly, Storage.open):
        with pytest.raises(CorruptRecordError, match="unsupported format version 3"):
            opener(tmp_path)
    assert log.read_bytes() == newer


def test_a_foreign_segment_index_is_set_aside_and_its_blocks_found_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An index overwritten with foreign content: moved into damaged/, and every
    block of its data file found again by scanning it and listed anew."""
    with Storage.open(tmp_path, checkpoint_points=None) as s:
        s.append(points("m", "e", [1, 2]))
        s.append(points("m", "f", [3]))
        s.checkpoint()
    index = _only("seg-*.idx", tmp_path)
    index.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with caplog.at_level(logging.WARNING), Storage.open(tmp_path) as s:
        assert s.query("m") == {"e": [(T0, 1), (T0 + 1000, 2)], "f": [(T0, 3)]}
    assert "not a StatsYard segment index" in caplog.text
    assert "Found 2 blocks (3 points)" in caplog.text
    assert (tmp_path / "damaged" / index.name).read_bytes().startswith(b"\x89PNG")
    with Storage.open_readonly(tmp_path) as reader:
        assert reader.query("m") == {"e": [(T0, 1), (T0 + 1000, 2)], "f": [(T0, 3)]}
        assert reader.skipped_records == 0


def test_a_directory_of_other_files_is_not_a_data_directory(tmp_path: Path) -> None:
    """A non-empty directory without the marker: NotADataDirectoryError, untouched."""
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(NotADataDirectoryError, match="not empty"):
        Storage.open(tmp_path)
    with pytest.raises(NotADataDirectoryError, match="no STATSYARD file"):
        Storage.open_readonly(tmp_path)
    with pytest.raises(NotADataDirectoryError, match="does not exist"):
        Storage.open_readonly(tmp_path / "missing")
    with pytest.raises(NotADataDirectoryError, match="not a directory"):
        Storage.open(tmp_path / "notes.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_reader_skips_a_torn_tail_without_modifying_anything(tmp_path: Path) -> None:
    """open_readonly() ignores a torn tail and never truncates the file."""
    _write(tmp_path, points("m", "e", [1, 2]), points("m", "e", [3], start=T0 + 5000))
    log = _only("wal-*.log", tmp_path)
    torn = log.read_bytes()[:-3]
    log.write_bytes(torn)
    reader = Storage.open_readonly(tmp_path)
    assert [v for _, v in reader.query("m")["e"]] == [1, 2]
    assert log.read_bytes() == torn


def test_sigkilled_writer_loses_no_acknowledged_batch(tmp_path: Path) -> None:
    """Kill -9 a writer child at random moments, 20 times: acked batches are all
    there exactly once, each batch is whole or absent, and nothing is corrupt."""
    rng = random.Random(5)
    batch_size = 40
    acked: set[int] = set()
    next_batch = 0
    for _round in range(20):
        child = start_child_writer(tmp_path, next_batch, batch_size)
        assert child.stdout is not None
        try:
            for _ in range(rng.randint(1, 60)):
                line = child.stdout.readline()
                assert line, "the child writer died on its own"
                acked.add(int(line))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            acked.update(int(line) for line in child.stdout.read().split())
            child.stdout.close()
        with Storage.open(tmp_path) as s:
            assert s.skipped_records == 0
            rows = [row for entity in s.query("kill.test").values() for row in entity]
        values = sorted(v for _, v in rows)
        assert len(values) == len(set(values)), "a point was stored twice"
        by_batch: dict[int, int] = {}
        for value in values:
            batch_id = int(value) // 1_000_000
            by_batch[batch_id] = by_batch.get(batch_id, 0) + 1
        assert set(by_batch.values()) == {batch_size}, "a batch was stored in part"
        assert acked <= set(by_batch), (
            f"lost acknowledged batches {acked - set(by_batch)}"
        )
        for timestamp, value in rows:
            batch, i = divmod(value, 1_000_000)
            assert timestamp == T0 + batch * 1000 + i
        next_batch = max(by_batch) + 1
    assert len(acked) >= 20
    assert list(tmp_path.glob("seg-*.dat")), "no checkpoint ran between the kills"


def test_segment_files_of_a_checkpoint_cut_short_are_repaired(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A newest segment whose index header is torn, or whose index never got
    created, holds nothing committed: it is reset or removed, the log replays."""
    with Storage.open(tmp_path, checkpoint_points=None) as s:
        s.append(points("m", "e", [1, 2]))
        s.checkpoint()
        s.append(points("m", "e", [3], start=T0 + 5000))
    (tmp_path / "seg-0000000000000002.dat").write_bytes(b"SYARDSEG")
    (tmp_path / "seg-0000000000000002.idx").write_bytes(b"SYAR")
    (tmp_path / "seg-0000000000000003.dat").write_bytes(b"SYARDSEG\x02\x00")
    with caplog.at_level(logging.WARNING), Storage.open(tmp_path) as s:
        assert [v for _, v in s.query("m")["e"]] == [1, 2, 3]
        s.checkpoint()
    assert "never finished" in caplog.text
    assert "its index file was never created" in caplog.text
    assert not (tmp_path / "seg-0000000000000003.dat").exists()
    with Storage.open(tmp_path) as s:
        assert [v for _, v in s.query("m")["e"]] == [1, 2, 3]
        assert s.skipped_records == 0
