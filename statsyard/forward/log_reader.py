"""Reads the write-ahead log from a cursor, in order, never past what was acknowledged.

A :class:`LogReader` follows the numbered log files of a data directory
(``wal-<seq>.log``, records framed as in ``docs/storage.md``) from a
:class:`~statsyard.forward.cursor.Cursor`. It reads log ``seq`` only up to the
writer's published :class:`~statsyard.storage.LogEnd` (whole, appended
records) and older logs to their end, so it never sees a half-written record.
Damaged records are skipped and logged as the storage does at start-up; a log
file that disappeared (deleted over the backlog cap, already counted as
dropped by the retention) is stepped over.

Everything runs in the forwarder's own thread, with ``os.pread`` on files
the writer only appends to: no lock, no message to the writer.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

import attrs

from statsyard.exceptions import CorruptRecordError
from statsyard.forward.cursor import Cursor
from statsyard.storage import (
    BATCH_HEADER,
    BATCH_KINDS,
    FILE_HEADER_SIZE,
    MAX_FILE_BYTES,
    WAL_MAGIC,
    WAL_PATTERN,
    Batch,
    DamagedFileError,
    LogEnd,
    ScanResult,
    Value,
    batch_payload,
    check_file_header,
    decode_batch_record,
    numbered,
    open_regular,
    scan_file,
    scan_records,
    wal_name,
)

__all__ = ["Chunk", "LogReader", "Piece", "count_points", "oldest_log"]

logger = logging.getLogger(__name__)

READ_SIZE: Final = 4 * 2**20
"""Bytes read from a log at a time (more when one record is bigger)."""

SeriesCost = Callable[[str, str], tuple[int, int]]
"""``(metric, entity) -> (bytes per point, bytes once per series)`` in a request."""


@attrs.frozen(slots=True)
class Piece:
    """Consecutive points of one log record, as columns."""

    keys: Mapping[int, tuple[str, str]]
    """Series number (within the record) -> ``(metric, entity)``."""
    numbers: Sequence[int]
    timestamps: Sequence[int]
    values: Sequence[Value]


@attrs.frozen(slots=True)
class Chunk:
    """One batch to send: points in log order and the cursor just past them."""

    pieces: tuple[Piece, ...]
    samples: int
    end: Cursor
    last_timestamp: int
    """Timestamp (ms) of the chunk's last point in log order."""


def oldest_log(data_dir: Path) -> int | None:
    """Number of the oldest log file in ``data_dir``, or None."""
    logs = numbered(data_dir, WAL_PATTERN)
    return logs[0][0] if logs else None


def count_points(path: Path, cursor: Cursor | None = None) -> int:
    """Points in the log file ``path`` (from ``cursor`` on if given); 0 if gone."""
    try:  # a regular file only, streamed: never blocks, never read whole
        fd, size = open_regular(path, max_bytes=MAX_FILE_BYTES)
    except (FileNotFoundError, DamagedFileError):
        return 0
    start = FILE_HEADER_SIZE if cursor is None else max(cursor.offset, FILE_HEADER_SIZE)
    total = 0
    try:
        for _offset, kind, payload in scan_file(fd, start, size, ScanResult()):
            if kind not in BATCH_KINDS:
                continue
            try:
                batch = batch_payload(kind, payload)
            except CorruptRecordError:
                continue  # damage: the reader counts it when it gets there
            if len(batch) >= BATCH_HEADER.size:
                total += BATCH_HEADER.unpack_from(batch)[1]
    finally:
        os.close(fd)
    if cursor is not None and total:
        total -= min(cursor.skip, total)
    return total


class LogReader:
    """Reads chunks of points from the logs of ``data_dir`` (one thread).

    Args:
        data_dir: the data directory.
        cost: bytes a point and a series take in a request (the sender's).
        read_size: bytes read at a time.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        cost: SeriesCost,
        read_size: int = READ_SIZE,
    ) -> None:
        self._dir = data_dir
        self._cost = cost
        self._read_size = read_size
        self._fd = -1
        self._fd_seq = -1
        self._records: list[tuple[int, int, int, bytes]] = []
        """Records read ahead: ``(offset, end offset, payload)``, in order."""
        self._next = 0
        self._records_seq = -1
        self._record_offset = 0
        self._record_kind = 0
        self._decoded: tuple[int, int, Batch, int] | None = None
        """The last record decoded: ``(seq, offset, batch, cost per point)``."""
        self._skipped = 0

    def close(self) -> None:
        """Close the open log file."""
        if self._fd != -1:
            os.close(self._fd)
        self._fd, self._fd_seq = -1, -1
        self._records, self._next, self._records_seq = [], 0, -1

    @property
    def skipped_records(self) -> int:
        """Damaged records and torn tails stepped over so far."""
        return self._skipped

    # -- positions ----------------------------------------------------------

    def _open(self, seq: int) -> bool:
        """Open log ``seq`` (checking its header); False if it does not exist."""
        if self._fd_seq == seq:
            return True
        self.close()
        path = self._dir / wal_name(seq)
        try:  # a FIFO named like a log must not block the forwarder
            fd, _size = open_regular(path)
        except FileNotFoundError:
            return False
        except DamagedFileError as exc:
            logger.error("Not reading %s", exc)
            return False
        header = os.pread(fd, FILE_HEADER_SIZE, 0)
        if len(header) == FILE_HEADER_SIZE:
            try:
                check_file_header(header, WAL_MAGIC, str(path))
            except CorruptRecordError as exc:
                os.close(fd)
                logger.error("Not reading %s: %s", path, exc)
                return False
        self._fd, self._fd_seq = fd, seq
        return True

    def _next_log(self, after: int, end: LogEnd) -> int | None:
        """The first log numbered above ``after`` and at most ``end.seq``."""
        later = [
            seq for seq, _ in numbered(self._dir, WAL_PATTERN) if after < seq <= end.seq
        ]
        return later[0] if later else None

    def settle(self, cursor: Cursor, end: LogEnd) -> Cursor:
        """``cursor``, moved to the next existing log if its own is gone or done."""
        while cursor.seq < end.seq:
            if self._open(cursor.seq):
                size = os.fstat(self._fd).st_size
                if cursor.offset < size:
                    return cursor
            following = self._next_log(cursor.seq, end)
            if following is None:
                return cursor
            if following != cursor.seq + 1 or not self._open(cursor.seq):
                logger.warning(
                    "Logs %s to %s are gone before being sent; going on from %s "
                    "(counted as dropped when deleted)",
                    wal_name(cursor.seq),
                    wal_name(following - 1),
                    wal_name(following),
                )
            cursor = Cursor(following, FILE_HEADER_SIZE, 0)
        return cursor

    def pending_bytes(self, cursor: Cursor, end: LogEnd) -> int:
        """Log bytes between ``cursor`` and ``end`` (an estimate while logs change)."""
        if (cursor.seq, cursor.offset) >= (end.seq, end.size):
            return 0
        if cursor.seq == end.seq:
            return end.size - cursor.offset
        total = end.size - FILE_HEADER_SIZE
        for seq, path in numbered(self._dir, WAL_PATTERN):
            if cursor.seq <= seq < end.seq:
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    continue
                total += size - (
                    cursor.offset if seq == cursor.seq else FILE_HEADER_SIZE
                )
        return max(total, 0)

    # -- records ------------------------------------------------------------

    def _record(self, cursor: Cursor, end: LogEnd) -> tuple[int, bytes] | None:
        """The record at ``cursor`` as ``(end offset, payload)``; None if none yet.

        May move past damaged stretches; the caller takes the record's offset
        from ``self._record_offset``.
        """
        records = self._records
        if (
            self._records_seq == cursor.seq
            and self._next < len(records)
            and records[self._next][0] >= cursor.offset
            and (self._next == 0 or records[self._next - 1][1] <= cursor.offset)
        ):  # read ahead already (a gap before it is damage, counted then)
            offset, stop, kind, payload = records[self._next]
            self._next += 1
            self._record_offset, self._record_kind = offset, kind
            return stop, payload
        if not self._open(cursor.seq):
            return None
        limit = end.size if cursor.seq == end.seq else os.fstat(self._fd).st_size
        if cursor.offset >= limit:
            return None
        size = self._read_size
        while True:
            want = min(size, limit - cursor.offset)
            data = os.pread(self._fd, want, cursor.offset)
            scan = scan_records(data, 0)
            if scan.records or len(data) < want or want == limit - cursor.offset:
                break
            size *= 2  # one record larger than the read size
        if scan.skipped_records:
            self._skipped += scan.skipped_records
            logger.warning(
                "Skipped %d damaged records (%d bytes) in %s",
                scan.skipped_records,
                scan.skipped_bytes,
                wal_name(cursor.seq),
            )
        base = cursor.offset
        self._records = [
            (base + offset, base + offset + 16 + len(payload), kind, payload)
            for offset, kind, payload in scan.records
            if kind in BATCH_KINDS or self._skip_kind(kind, cursor.seq)
        ]
        self._records_seq, self._next = cursor.seq, 0
        if not self._records:
            if scan.torn_bytes and cursor.seq < end.seq:
                self._skipped += 1
                logger.warning(
                    "Skipped the torn tail of %s (%d bytes)",
                    wal_name(cursor.seq),
                    scan.torn_bytes,
                )
                self._record_offset = limit
                return limit, b""
            return None
        offset, stop, kind, payload = self._records[0]
        self._next = 1
        self._record_offset, self._record_kind = offset, kind
        return stop, payload

    def _skip_kind(self, kind: int, seq: int) -> bool:
        self._skipped += 1
        logger.warning("Skipped a record of unknown kind %d in %s", kind, wal_name(seq))
        return False

    def read(
        self,
        cursor: Cursor,
        end: LogEnd,
        *,
        max_samples: int,
        max_bytes: int,
    ) -> tuple[Chunk | None, Cursor]:
        """The next chunk after ``cursor``, bounded in samples and request bytes.

        Returns:
            ``(chunk, cursor)``: the chunk, or None when nothing new is
            acknowledged, and the cursor after it (which may also have moved
            past gone logs and damaged records).
        """
        cursor = self.settle(cursor, end)
        pieces: list[Piece] = []
        samples = 0
        cost = 0
        last_ts = 0
        while samples < max_samples:
            found = self._record(cursor, end)
            if found is None:
                following = self.settle(cursor, end)
                if following == cursor:
                    break
                cursor = following
                continue
            stop, payload = found
            offset = self._record_offset
            if offset != cursor.offset:
                cursor = Cursor(cursor.seq, offset, 0)
            if not payload:  # a torn tail: go on with the next log
                cursor = Cursor(cursor.seq, stop, 0)
                continue
            time.sleep(0)  # let a thread waiting for the GIL (ingest) run now
            decoded = self._decode(cursor.seq, offset, payload)
            if decoded is None:
                cursor = Cursor(cursor.seq, stop, 0)
                continue
            batch, per_point = decoded
            first = cursor.skip
            count = len(batch.series_numbers) - first
            if count <= 0:
                cursor = Cursor(cursor.seq, stop, 0)
                continue
            budget = (max_bytes - cost) // per_point
            if budget < 1:
                if pieces:
                    self._next -= 1  # this record starts the next chunk
                    break
                budget = 1
            take = min(count, max_samples - samples, budget)
            piece = Piece(
                batch.keys,
                batch.series_numbers[first : first + take],
                batch.timestamps[first : first + take],
                batch.values[first : first + take],
            )
            pieces.append(piece)
            samples += take
            cost += per_point * take
            last_ts = piece.timestamps[-1]
            if take < count:
                cursor = Cursor(cursor.seq, offset, first + take)
                self._next -= 1  # the rest of this record comes next time
                break
            cursor = Cursor(cursor.seq, stop, 0)
        if not pieces:
            return None, cursor
        return Chunk(tuple(pieces), samples, cursor, last_ts), cursor

    def _decode(
        self, seq: int, offset: int, payload: bytes
    ) -> tuple[Batch, int] | None:
        """The record's batch and request bytes per point; None if damaged."""
        cached = self._decoded
        if cached is not None and cached[0] == seq and cached[1] == offset:
            return cached[2], cached[3]
        try:
            batch = decode_batch_record(self._record_kind, payload)
        except CorruptRecordError as exc:
            self._skipped += 1
            logger.warning(
                "Skipped a damaged record at %s:%d: %s", wal_name(seq), offset, exc
            )
            return None
        points = max(1, len(batch.series_numbers))
        per_point = max(
            1, -(-self._record_cost(batch.keys, batch.series_numbers) // points)
        )
        self._decoded = (seq, offset, batch, per_point)
        return batch, per_point

    def _record_cost(
        self, keys: Mapping[int, tuple[str, str]], numbers: Sequence[int]
    ) -> int:
        """Request bytes of a whole record, each series' own bytes counted once."""
        total = 0
        cost = self._cost
        for number, count in Counter(numbers).items():
            point, series = cost(*keys[number])
            total += point * count + series
        return total
