"""The :class:`Storage` of a data directory: log, head, compacted segments."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING

from statsyard.exceptions import CorruptRecordError, WriteError
from statsyard.storage._batch import (
    KIND_BATCH,
    Group,
    Value,
    decode_batch,
    encode_batch,
)
from statsyard.storage._files import (
    WAL_PATTERN,
    check_data_directory,
    fsync_directory,
    numbered,
    wal_name,
)
from statsyard.storage._framing import (
    FILE_HEADER_SIZE,
    WAL_MAGIC,
    check_file_header,
    pack_file_header,
    pack_record,
    scan_records,
)

if TYPE_CHECKING:
    from statsyard.datapoint import DataPoint

logger = logging.getLogger("statsyard.storage")

SeriesKey = tuple[str, str]
HeadSeries = tuple[
    Callable[[int], None], Callable[[Value], None], int, list[int], list[Value]
]
"""One series in the head: bound appends (speed), its number, timestamps, values."""

_point_fields = attrgetter("metric", "entity", "timestamp", "value")


class Storage:
    """The points of one data directory, written by one thread and read by any.

    The writer (``Storage.open``) must be used from a single thread — in the
    pipeline, the ``TimestampWriter`` actor's — for :meth:`append`, :meth:`sync`
    and :meth:`close`. Queries may run in other threads concurrently; they
    take a short snapshot under a lock and scan without it.
    """

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int,
        retention_max_age_ms: int | None,
        retention_max_bytes: int | None,
        readonly: bool,
    ) -> None:
        """Store the settings; use :meth:`open` or :meth:`open_readonly` instead."""
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes!r}")
        self._dir = directory
        self._segment_bytes = segment_bytes
        self._retention_max_age_ms = retention_max_age_ms
        self._retention_max_bytes = retention_max_bytes
        self._readonly = readonly
        self._lock = threading.Lock()
        self._head: dict[SeriesKey, HeadSeries] = {}
        self._names: dict[int, SeriesKey] = {}
        self._entities: dict[str, dict[str, None]] = {}
        self._head_points = 0
        self._wal_seq = 0
        self._wal_fd = -1
        self._wal_size = 0
        self._unsynced = False
        self._dir_unsynced = False
        self._closed = False
        self._points_written = 0
        self._bytes_written = 0
        self._skipped_records = 0

    # -- opening ------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        segment_bytes: int = 64 * 2**20,
        retention_max_age_ms: int | None = None,
        retention_max_bytes: int | None = None,
    ) -> Storage:
        """Open (creating if needed) a data directory for writing, recovering it.

        A torn record at the tail of the newest log is truncated away and logged
        at WARNING with the number of bytes dropped; a record failing its
        checksum in the middle of a file is skipped, counted and logged.

        Args:
            data_dir: the directory; created when missing.
            segment_bytes: size at which log and segment files rotate.
            retention_max_age_ms: remove segments whose newest point is older
                than this (None: keep forever).
            retention_max_bytes: remove the oldest segments while the data
                files take more than this (None: no limit).

        Raises:
            NotADataDirectoryError: ``data_dir`` is not a StatsYard data directory.
            CorruptRecordError: a file named as a StatsYard file is not one.
        """
        directory = Path(data_dir)
        check_data_directory(directory, create=True)
        storage = cls(
            directory,
            segment_bytes=segment_bytes,
            retention_max_age_ms=retention_max_age_ms,
            retention_max_bytes=retention_max_bytes,
            readonly=False,
        )
        storage._recover()
        return storage

    def _recover(self) -> None:
        wals = numbered(self._dir, WAL_PATTERN)
        for position, (seq, path) in enumerate(wals):
            newest = position == len(wals) - 1
            self._replay_wal(seq, path, repair=newest)
        if wals and self._wal_fd == -1:
            self._wal_seq = wals[-1][0]
        if self._wal_fd == -1:
            self._new_wal()
        logger.info(
            "Opened data directory %s: %d points in the log, %d damaged records skipped",  # noqa: E501
            self._dir,
            self._head_points,
            self._skipped_records,
        )

    def _replay_wal(self, seq: int, path: Path, *, repair: bool) -> None:
        """Load one log file into the head; ``repair`` the newest one's tail."""
        data = path.read_bytes()
        if len(data) < FILE_HEADER_SIZE and WAL_MAGIC.startswith(data[:8]):
            # Created but its header never fully reached the disk: holds nothing.
            if repair:
                logger.warning(
                    "Truncated %s: its %d-byte header was torn; dropped %d bytes",
                    path,
                    FILE_HEADER_SIZE,
                    len(data),
                )
                self._reopen_wal(seq, path, truncate_to=0)
            else:
                logger.warning("Skipped %s: empty or torn header, no records", path)
                self._skipped_records += 1
            return
        check_file_header(data, WAL_MAGIC, str(path))
        scan = scan_records(data, FILE_HEADER_SIZE)
        if scan.skipped_records:
            self._skipped_records += scan.skipped_records
            logger.warning(
                "Skipped %d damaged records (%d bytes) in %s",
                scan.skipped_records,
                scan.skipped_bytes,
                path,
            )
        for offset, kind, payload in scan.records:
            if kind != KIND_BATCH:
                self._skipped_records += 1
                logger.warning(
                    "Skipped record of unknown kind %d at %s:%d", kind, path, offset
                )
                continue
            try:
                groups = decode_batch(payload)
            except CorruptRecordError as exc:
                self._skipped_records += 1
                logger.warning("Skipped record at %s:%d: %s", path, offset, exc)
                continue
            self._add_groups(groups)
        if scan.torn_bytes:
            if repair:
                logger.warning(
                    "Truncated torn tail of %s: dropped %d bytes after offset %d",
                    path,
                    scan.torn_bytes,
                    scan.valid_end,
                )
            else:
                self._skipped_records += 1
                logger.warning(
                    "Skipped %d bytes of torn tail in %s (not the newest log)",
                    scan.torn_bytes,
                    path,
                )
        if repair:
            self._reopen_wal(seq, path, truncate_to=scan.valid_end)

    def _reopen_wal(self, seq: int, path: Path, *, truncate_to: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            if os.fstat(fd).st_size != truncate_to:
                os.ftruncate(fd, truncate_to)
                os.fsync(fd)
            if truncate_to == 0:
                os.write(fd, pack_file_header(WAL_MAGIC))
                os.fsync(fd)
                truncate_to = FILE_HEADER_SIZE
        except BaseException:
            os.close(fd)
            raise
        self._wal_fd, self._wal_seq, self._wal_size = fd, seq, truncate_to

    def _new_wal(self) -> None:
        """Start the next log file (header written, not yet fsynced)."""
        seq = self._wal_seq + 1
        path = self._dir / wal_name(seq)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            header = pack_file_header(WAL_MAGIC)
            os.write(fd, header)
        except OSError as exc:
            os.close(fd)
            os.unlink(path)
            raise WriteError(
                exc.errno, f"could not create log file {path}: {exc}"
            ) from exc
        self._wal_fd, self._wal_seq, self._wal_size = fd, seq, len(header)
        self._unsynced = True
        self._dir_unsynced = True

    def _rotate_wal(self) -> None:
        """Seal the current log (fsynced) and start the next one."""
        os.fsync(self._wal_fd)
        os.close(self._wal_fd)
        self._wal_fd = -1
        self._new_wal()

    # -- the head -----------------------------------------------------------------

    def _new_series(self, key: SeriesKey) -> HeadSeries:
        """Create the head entry of a series (caller holds the lock)."""
        timestamps: list[int] = []
        values: list[Value] = []
        number = len(self._names)
        series = (timestamps.append, values.append, number, timestamps, values)
        self._head[key] = series
        self._names[number] = key
        self._entities.setdefault(key[0], {})[key[1]] = None
        return series

    def _add_groups(self, groups: Sequence[Group]) -> None:
        """Add decoded groups to the head (recovery)."""
        with self._lock:
            for metric, entity, timestamps, values in groups:
                key = (metric, entity)
                series = self._head.get(key) or self._new_series(key)
                series[3].extend(timestamps)
                series[4].extend(values)
                self._head_points += len(timestamps)

    # -- writing ------------------------------------------------------------------

    def append(self, points: Sequence[DataPoint]) -> int:
        """Append a batch of (already validated) points to the log, without fsync.

        The batch becomes one checksummed record, written to the OS; call
        :meth:`sync` to make it durable.

        Returns:
            The number of bytes appended.

        Raises:
            WriteError: the write failed (e.g. disk full); the log is left as it
                was before the call, so the same batch may be retried.
        """
        if self._closed or self._readonly:
            raise WriteError(
                f"storage of {self._dir} is {'closed' if self._closed else 'read-only'}"
            )
        if not points:
            return 0
        with self._lock:
            numbers: list[int] = []
            add_number = numbers.append
            get = self._head.get
            for metric, entity, timestamp, value in map(_point_fields, points):
                series = get((metric, entity))
                if series is None:
                    series = self._new_series((metric, entity))
                series[0](timestamp)
                series[1](value)
                add_number(series[2])
            try:
                record = pack_record(
                    KIND_BATCH, encode_batch(points, numbers, self._names)
                )
                self._write_wal(record)
            except BaseException:
                for metric, entity, _timestamp, _value in map(_point_fields, points):
                    series = self._head[(metric, entity)]
                    series[3].pop()
                    series[4].pop()
                raise
            self._head_points += len(points)
        self._points_written += len(points)
        self._bytes_written += len(record)
        if self._wal_size >= self._segment_bytes:
            self._rotate_wal()
        return len(record)

    def _write_wal(self, record: bytes) -> None:
        fd = self._wal_fd
        before = self._wal_size
        view = memoryview(record)
        try:
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError as exc:
            try:
                os.ftruncate(fd, before)
            except OSError as undo:
                logger.error(
                    "Could not truncate %s back to %d bytes after a failed write: %s",
                    self._dir / wal_name(self._wal_seq),
                    before,
                    undo,
                )
            raise WriteError(
                exc.errno,
                f"could not append {len(record)} bytes to "
                f"{self._dir / wal_name(self._wal_seq)}: {exc.strerror or exc}",
            ) from exc
        self._wal_size = before + len(record)
        self._unsynced = True

    def sync(self) -> None:
        """Make everything appended so far durable (fsync, and the directory if needed).

        Raises:
            WriteError: fsync failed.
        """
        if self._closed or self._readonly:
            return
        try:
            if self._unsynced:
                os.fsync(self._wal_fd)
                self._unsynced = False
            if self._dir_unsynced:
                fsync_directory(self._dir)
                self._dir_unsynced = False
        except OSError as exc:
            raise WriteError(exc.errno, f"could not fsync {self._dir}: {exc}") from exc

    def close(self) -> None:
        """Sync and close the files; calling it again does nothing."""
        if self._closed:
            return
        try:
            self.sync()
        finally:
            self._closed = True
            if self._wal_fd != -1:
                os.close(self._wal_fd)
                self._wal_fd = -1
            logger.info("Closed data directory %s", self._dir)

    def __enter__(self) -> Storage:
        """Use as a context manager that closes the storage on exit."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the storage."""
        self.close()

    # -- figures ------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """The data directory."""
        return self._dir

    @property
    def points_written(self) -> int:
        """Points appended through this object since it was opened."""
        return self._points_written

    @property
    def bytes_written(self) -> int:
        """Log bytes appended through this object since it was opened."""
        return self._bytes_written

    @property
    def skipped_records(self) -> int:
        """Damaged records (or stretches) skipped while reading the directory."""
        return self._skipped_records
