"""The :class:`Storage` of a data directory: log, head, compacted segments."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from statsyard.datapoint import now_ms
from statsyard.exceptions import (
    CorruptRecordError,
    DataDirectoryInUseError,
    WriteError,
)
from statsyard.storage._batch import (
    KIND_BATCH,
    Batch,
    TableCache,
    Value,
    decode_batch,
    encode_batch,
    series_entry,
    value_column,
)
from statsyard.storage._blocks import decode_block, encode_block
from statsyard.storage._files import (
    INDEX_PATTERN,
    MARKER_NAME,
    SEGMENT_PATTERN,
    WAL_PATTERN,
    check_data_directory,
    fsync_directory,
    index_name,
    numbered,
    segment_name,
    wal_name,
)
from statsyard.storage._framing import (
    FILE_HEADER_SIZE,
    INDEX_MAGIC,
    SEGMENT_MAGIC,
    WAL_MAGIC,
    check_file_header,
    pack_file_header,
    pack_record,
    scan_records,
)
from statsyard.storage._head import Head
from statsyard.storage._index import (
    KIND_CHECKPOINT,
    BlockRef,
    decode_checkpoint,
    encode_checkpoint,
)
from statsyard.storage._log_watch import LogEnd, LogRetention
from statsyard.storage._query import (
    Piece,
    check_agg,
    compile_glob,
    downsample,
    merge,
    select,
)

if TYPE_CHECKING:
    from statsyard.datapoint import DataPoint, Row

logger = logging.getLogger("statsyard.storage")

SeriesKey = tuple[str, str]
_ROW_COLUMNS = tuple(map(itemgetter, range(4)))
_POINT_COLUMNS = tuple(map(attrgetter, ("metric", "entity", "value", "timestamp")))

QueryResult = dict[str, list[tuple[int, Value]]]
"""Entity -> ``(timestamp ms, value)`` points, by time."""

DEFAULT_CHECKPOINT_POINTS = 500_000

QUERY_SLICE_S = 0.00005
"""While ingest is active, a query works at most this long before yielding."""
QUERY_YIELD_S = 0.0003
"""How long a query steps aside: long enough for the writer to take the GIL."""
INGEST_ACTIVE_S = 0.01
"""Ingest counts as active for this long after an append."""
_LOAD_ATTEMPTS = 20

_STATE = (
    "_head",
    "_numbers",
    "_keys",
    "_entries",
    "_table_cache",
    "_entities",
    "_index",
    "_segments",
    "_covered",
    "_wal_seq",
    "_wal_seqs",
    "_skipped_records",
)
"""What a read-only storage's refresh() replaces."""


@attrs.define
class _Segment:
    """What is known of one segment: sizes and the time span of its blocks."""

    seq: int
    dat_size: int = FILE_HEADER_SIZE
    idx_size: int = FILE_HEADER_SIZE
    min_ts: int | None = None
    max_ts: int | None = None

    def cover(self, low: int, high: int) -> None:
        self.min_ts = low if self.min_ts is None else min(self.min_ts, low)
        self.max_ts = high if self.max_ts is None else max(self.max_ts, high)


class _Pacer:
    """Makes queries step aside for ingest now and then.

    Queries and ingest share one interpreter lock. The writer releases it at
    every ``write()``; a query thread then keeps it for the whole switch
    interval (5 ms), so without pacing, continuous queries would cut ingest to
    a fraction. While an append ran recently, queries sleep ``QUERY_YIELD_S``
    after each ``QUERY_SLICE_S`` of work (counted across queries).
    """

    __slots__ = ("_since", "_storage")

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._since = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if (
            now - self._since >= QUERY_SLICE_S
            and now - self._storage._last_append < INGEST_ACTIVE_S
        ):
            time.sleep(QUERY_YIELD_S)
            self._since = time.monotonic()


class _Reload(Exception):  # noqa: N818 (internal signal, not an error)
    """A concurrent writer changed the directory under a reader: load again."""


class Storage:
    """The points of one data directory, written by one thread and read by any.

    Appended points go to a write-ahead log (the durability layer) and to an
    in-memory *head*; a checkpoint compacts the head into per-series blocks
    in segment files and removes the log files it covered. A query merges a
    series' blocks and head. See ``docs/storage.md`` for the on-disk format.

    The writer (``Storage.open``) must be driven by one thread — in the
    pipeline the ``TimestampWriter`` actor's — for :meth:`append`,
    :meth:`sync`, :meth:`checkpoint` and :meth:`close`. :meth:`query` and
    :meth:`series` may run in any thread, concurrently with appends: they copy
    a short snapshot under a lock and read blocks without it.
    """

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int,
        retention_max_age_ms: int | None,
        retention_max_bytes: int | None,
        checkpoint_points: int | None,
        readonly: bool,
        log_retention: LogRetention | None = None,
    ) -> None:
        """Store the settings; use :meth:`open` or :meth:`open_readonly` instead."""
        for name, setting in (
            ("segment_bytes", segment_bytes),
            ("retention_max_age_ms", retention_max_age_ms),
            ("retention_max_bytes", retention_max_bytes),
            ("checkpoint_points", checkpoint_points),
        ):
            if setting is not None and (type(setting) is not int or setting <= 0):
                raise ValueError(f"{name} must be a positive int, got {setting!r}")
        self._dir = directory
        self._segment_bytes = segment_bytes
        self._retention_max_age_ms = retention_max_age_ms
        self._retention_max_bytes = retention_max_bytes
        self._checkpoint_points = checkpoint_points
        self._next_checkpoint = checkpoint_points
        self._readonly = readonly
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._skipped_records = 0
        self._reset_state()
        self._wal_fd = -1
        self._wal_size = 0
        self._dat_fd = -1
        self._idx_fd = -1
        self._lock_fd = -1
        self._unsynced = False
        self._dir_unsynced = False
        self._closed = False
        self._points_written = 0
        self._bytes_written = 0
        self._bytes_read = 0
        self._last_append = -1.0
        self._pacer = _Pacer(self)
        # -- log readers (forwarders): see _log_watch.py --
        self._log_retention = log_retention
        self._kept_logs: list[int] = []
        self._log_end = LogEnd(0, 0, None)
        self._opened_log_end = self._log_end

    def _reset_state(self) -> None:
        self._head = Head()
        self._numbers: dict[SeriesKey, int] = {}
        self._keys: list[SeriesKey] = []
        self._entries: dict[int, bytes] = {}
        self._table_cache = TableCache()
        self._entities: dict[str, dict[str, None]] = {}
        self._index: dict[SeriesKey, list[BlockRef]] = {}
        self._segments: dict[int, _Segment] = {}
        self._covered = 0
        self._wal_seq = 0
        self._wal_seqs: list[int] = []

    # -- opening ------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        segment_bytes: int = 64 * 2**20,
        retention_max_age_ms: int | None = None,
        retention_max_bytes: int | None = None,
        checkpoint_points: int | None = DEFAULT_CHECKPOINT_POINTS,
        log_retention: LogRetention | None = None,
    ) -> Storage:
        """Open (creating if needed) a data directory for writing, recovering it.

        A torn record at the tail of the newest file is truncated away and
        logged at WARNING with the number of bytes dropped; a record failing its
        checksum in the middle of a file is skipped, counted and logged. Start-up
        never fails for either.

        Args:
            data_dir: the directory; created when missing.
            segment_bytes: size at which log and segment files rotate.
            retention_max_age_ms: remove whole segments whose newest point is
                older than this (None: keep forever).
            retention_max_bytes: remove the oldest segments while the segment
                files take more than this (None: no limit).
            checkpoint_points: compact the head into a segment whenever it holds
                this many points (None: only when :meth:`checkpoint` is called).
            log_retention: asked which covered logs to keep for log readers
                (forwarders); None deletes them all.

        Raises:
            NotADataDirectoryError: ``data_dir`` is not a StatsYard data directory.
            DataDirectoryInUseError: another writer has it open.
            CorruptRecordError: a file named as a StatsYard file is not one.
            ValueError: a setting is out of range.
        """
        directory = Path(data_dir)
        storage = cls(
            directory,
            segment_bytes=segment_bytes,
            retention_max_age_ms=retention_max_age_ms,
            retention_max_bytes=retention_max_bytes,
            checkpoint_points=checkpoint_points,
            readonly=False,
            log_retention=log_retention,
        )
        check_data_directory(directory, create=True)
        storage._lock_directory()
        try:
            storage._load(repair=True)
            storage._start_writing()
            storage._opened_log_end = storage._log_end
            storage._apply_retention()
        except BaseException:
            storage._release_files()
            raise
        logger.info(
            "Opened data directory %s: %d points in the log, %d segments, "
            "%d damaged records skipped",
            directory,
            storage.head_points,
            len(storage._segments),
            storage._skipped_records,
        )
        return storage

    def _lock_directory(self) -> None:
        """Take the writer's exclusive lock (``flock`` on the marker file).

        The kernel drops it when the process dies, however it dies.
        """
        fd = os.open(self._dir / MARKER_NAME, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirectoryInUseError(
                f"{self._dir} is already open for writing (by another process or "
                "Storage); read it with Storage.open_readonly()",
                path=str(self._dir),
            ) from None
        self._lock_fd = fd

    @classmethod
    def open_readonly(cls, data_dir: str | os.PathLike[str]) -> Storage:
        """Open a data directory for reading only, as of now.

        Never modifies a file (a torn tail is skipped, not truncated), and works
        whether or not a writer is running on the directory. The result is a
        snapshot: call :meth:`refresh` to see points written since.

        Raises:
            NotADataDirectoryError: ``data_dir`` is not a StatsYard data directory.
            CorruptRecordError: a file named as a StatsYard file is not one.
        """
        directory = Path(data_dir)
        check_data_directory(directory, create=False)
        storage = cls(
            directory,
            segment_bytes=64 * 2**20,
            retention_max_age_ms=None,
            retention_max_bytes=None,
            checkpoint_points=None,
            readonly=True,
        )
        storage.refresh()
        return storage

    def refresh(self) -> None:
        """Read-only storage: load the directory again to see newer points.

        Raises:
            StatsYardError: on a writable storage (it is always current).
        """
        if not self._readonly:
            raise WriteError("refresh() is for read-only storage; this one is live")
        for _attempt in range(_LOAD_ATTEMPTS):
            fresh = Storage(
                self._dir,
                segment_bytes=self._segment_bytes,
                retention_max_age_ms=None,
                retention_max_bytes=None,
                checkpoint_points=None,
                readonly=True,
            )
            try:
                fresh._load(repair=False)
            except _Reload:
                continue
            with self._lock:  # queries in other threads see old or new, never half
                for name in _STATE:
                    setattr(self, name, getattr(fresh, name))
            with self._stats_lock:
                self._bytes_read += fresh._bytes_read
            return
        raise CorruptRecordError(
            f"{self._dir}: files kept changing while being read "
            f"({_LOAD_ATTEMPTS} attempts); try again"
        )

    def _load(self, *, repair: bool) -> None:
        """Read segment indexes, then the logs they do not cover, into memory."""
        segments = numbered(self._dir, INDEX_PATTERN)
        data_files = {seq for seq, _ in numbered(self._dir, SEGMENT_PATTERN)}
        for position, (seq, path) in enumerate(segments):
            newest = position == len(segments) - 1
            self._load_segment(seq, path, repair=repair and newest)
            data_files.discard(seq)
        for seq in sorted(data_files):
            path = self._dir / segment_name(seq)
            if repair and seq > max(self._segments, default=0):
                # Crashed between creating the data and the index file.
                logger.warning("Removed %s: its index file was never created", path)
                path.unlink()
            else:
                self._skipped_records += 1
                logger.warning("Skipped %s: it has no index file", path)
        wals = [(s, p) for s, p in numbered(self._dir, WAL_PATTERN)]
        live = [(s, p) for s, p in wals if s > self._covered]
        if not repair and live and live[0][0] != self._covered + 1:
            raise _Reload  # a checkpoint removed logs after we read the indexes
        for position, (seq, path) in enumerate(live):
            newest = position == len(live) - 1
            self._replay_wal(seq, path, repair=repair and newest)
        self._wal_seqs = [s for s, _ in live]
        self._wal_seq = max([self._covered, *(s for s, _ in wals)])
        if repair:
            kept = self._logs_to_keep([s for s, _ in wals if s <= self._covered])
            self._kept_logs = sorted(kept)
            for seq, path in wals:
                if seq <= self._covered and seq not in kept:
                    with open(path, "rb") as f:
                        header = f.read(FILE_HEADER_SIZE)
                    if len(header) == FILE_HEADER_SIZE or not WAL_MAGIC.startswith(
                        header[:8]
                    ):
                        check_file_header(header, WAL_MAGIC, str(path))
                    logger.info("Removed %s: a checkpoint covers it", path)
                    path.unlink()
                    self._dir_unsynced = True

    def _read_file(self, path: Path) -> bytes:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if self._readonly:
                raise _Reload from None
            raise
        with self._stats_lock:
            self._bytes_read += len(data)
        return data

    def _load_segment(self, seq: int, path: Path, *, repair: bool) -> None:
        """Load one segment's index; ``repair`` the newest one's tails."""
        data = self._read_file(path)
        dat_path = self._dir / segment_name(seq)
        segment = _Segment(seq)
        try:
            segment.dat_size = dat_path.stat().st_size
        except FileNotFoundError:
            if self._readonly:
                raise _Reload from None
            raise CorruptRecordError(
                f"{dat_path}: missing, but {path} exists"
            ) from None
        if len(data) < FILE_HEADER_SIZE and INDEX_MAGIC.startswith(data[:8]):
            if not repair:
                logger.warning("Skipped %s: empty or torn header, no records", path)
                return
            logger.warning(
                "Reset %s and %s: created by a checkpoint that never finished",
                path,
                dat_path,
            )
            self._truncate(path, 0, header=INDEX_MAGIC)
            self._truncate(dat_path, 0, header=SEGMENT_MAGIC)
            self._segments[seq] = _Segment(seq)
            return
        check_file_header(data, INDEX_MAGIC, str(path))
        if segment.dat_size >= FILE_HEADER_SIZE or not repair:
            with open(dat_path, "rb") as f:
                check_file_header(
                    f.read(FILE_HEADER_SIZE), SEGMENT_MAGIC, str(dat_path)
                )
        scan = scan_records(data, FILE_HEADER_SIZE)
        self._count_skips(scan.skipped_records, scan.skipped_bytes, path)
        dat_end = FILE_HEADER_SIZE
        for offset, kind, payload in scan.records:
            try:
                if kind != KIND_CHECKPOINT:
                    raise CorruptRecordError(f"unknown record kind {kind}")
                checkpoint = decode_checkpoint(seq, payload)
            except CorruptRecordError as exc:
                self._count_skips(1, len(payload), path, f"record at {offset}: {exc}")
                continue
            self._covered = max(self._covered, checkpoint.covered)
            dat_end = max(dat_end, checkpoint.dat_end)
            for metric, entity, ref in checkpoint.blocks:
                key = (metric, entity)
                refs = self._index.get(key)
                if refs is None:
                    refs = self._index[key] = []
                    self._entities.setdefault(metric, {})[entity] = None
                refs.append(ref)
                segment.cover(ref.min_ts, ref.max_ts)
        segment.idx_size = scan.valid_end
        if scan.torn_bytes:
            if repair:
                logger.warning(
                    "Truncated torn tail of %s: dropped %d bytes after offset %d",
                    path,
                    scan.torn_bytes,
                    scan.valid_end,
                )
                self._truncate(path, scan.valid_end)
            else:
                segment.idx_size = len(data)
        if repair and segment.dat_size != dat_end:
            if segment.dat_size < dat_end:
                raise CorruptRecordError(
                    f"{dat_path} is {segment.dat_size} bytes but its index lists "
                    f"blocks up to byte {dat_end}: the data file was truncated"
                )
            logger.warning(
                "Truncated %s: dropped %d bytes of blocks that no checkpoint listed",
                dat_path,
                segment.dat_size - dat_end,
            )
            self._truncate(dat_path, dat_end)
            segment.dat_size = dat_end
        self._segments[seq] = segment

    def _truncate(self, path: Path, size: int, *, header: bytes | None = None) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            if size == 0 and header is not None:
                os.write(fd, pack_file_header(header))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _count_skips(
        self, records: int, size: int, path: Path, detail: str = ""
    ) -> None:
        if not records:
            return
        self._skipped_records += records
        logger.warning(
            "Skipped %d damaged records (%d bytes) in %s%s",
            records,
            size,
            path,
            f": {detail}" if detail else "",
        )

    def _replay_wal(self, seq: int, path: Path, *, repair: bool) -> None:
        """Load one log file into the head; ``repair`` the newest one's tail."""
        data = self._read_file(path)
        if len(data) < FILE_HEADER_SIZE and WAL_MAGIC.startswith(data[:8]):
            # Created but its header never fully reached the disk: holds nothing.
            if repair:
                logger.warning(
                    "Truncated %s: its header was torn; dropped %d bytes",
                    path,
                    len(data),
                )
                self._truncate(path, 0, header=WAL_MAGIC)
            else:
                logger.warning("Skipped %s: empty or torn header, no records", path)
            return
        check_file_header(data, WAL_MAGIC, str(path))
        scan = scan_records(data, FILE_HEADER_SIZE)
        self._count_skips(scan.skipped_records, scan.skipped_bytes, path)
        for offset, kind, payload in scan.records:
            try:
                if kind != KIND_BATCH:
                    raise CorruptRecordError(f"unknown record kind {kind}")
                batch = decode_batch(payload)
            except CorruptRecordError as exc:
                self._count_skips(1, len(payload), path, f"record at {offset}: {exc}")
                continue
            self._add_batch(batch)
        if scan.torn_bytes:
            if repair:
                logger.warning(
                    "Truncated torn tail of %s: dropped %d bytes after offset %d",
                    path,
                    scan.torn_bytes,
                    scan.valid_end,
                )
                self._truncate(path, scan.valid_end)
            elif not self._readonly:
                self._count_skips(1, scan.torn_bytes, path, "torn tail of an old log")

    def _start_writing(self) -> None:
        """Writer: append to the newest log (or a new one) and the newest segment."""
        if self._wal_seqs:
            seq = self._wal_seqs[-1]
            path = self._dir / wal_name(seq)
            self._wal_fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            self._wal_seq = seq
            self._wal_size = os.fstat(self._wal_fd).st_size
            self._log_end = LogEnd(seq, self._wal_size, None)
            # A writer that died (in this process) may have left it unsynced.
            self._unsynced = True
        else:
            self._new_wal()
        if self._segments:
            seq = max(self._segments)
            self._dat_fd = os.open(
                self._dir / segment_name(seq), os.O_WRONLY | os.O_APPEND
            )
            self._idx_fd = os.open(
                self._dir / index_name(seq), os.O_WRONLY | os.O_APPEND
            )

    def _new_wal(self) -> None:
        """Start the next log file (header written, not yet fsynced)."""
        seq = self._wal_seq + 1
        path = self._dir / wal_name(seq)
        header = pack_file_header(WAL_MAGIC)
        try:
            fd = os.open(
                path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644
            )
        except OSError as exc:
            raise WriteError(exc.errno, f"could not create {path}: {exc}") from exc
        try:
            os.write(fd, header)
        except OSError as exc:
            os.close(fd)
            path.unlink()
            raise WriteError(exc.errno, f"could not write {path}: {exc}") from exc
        if self._wal_fd != -1:
            os.close(self._wal_fd)
        self._wal_fd, self._wal_seq, self._wal_size = fd, seq, len(header)
        self._wal_seqs.append(seq)
        self._unsynced = True
        self._dir_unsynced = True
        self._log_end = LogEnd(seq, len(header), self._log_end.last_timestamp)

    def _rotate_wal(self) -> None:
        """Seal the current log (fsynced) and start the next one."""
        try:
            os.fsync(self._wal_fd)
        except OSError as exc:
            raise WriteError(exc.errno, f"could not fsync the log: {exc}") from exc
        self._new_wal()

    # -- the head -----------------------------------------------------------------

    def _new_series(self, key: SeriesKey) -> int:
        """Number a series never seen before (the writer's thread)."""
        number = len(self._keys)
        entry = series_entry(number, *key)  # may raise: check first
        with self._lock:  # queries iterate these under the lock
            self._numbers[key] = number
            self._keys.append(key)
            self._entities.setdefault(key[0], {})[key[1]] = None
        self._entries[number] = entry
        return number

    def _series_numbers(
        self, metrics: Sequence[str], entities: Sequence[str]
    ) -> list[int]:
        """The number of each point's series, numbering new series."""
        number_of = self._numbers
        try:  # C speed: the usual case, where every series is known
            return list(map(number_of.__getitem__, zip(metrics, entities, strict=True)))
        except KeyError:
            pass
        numbers: list[int] = []
        for key in zip(metrics, entities, strict=True):
            number = number_of.get(key)
            numbers.append(self._new_series(key) if number is None else number)
        return numbers

    def _add_batch(self, batch: Batch) -> None:
        """Add a decoded log record to the head (loading the log)."""
        mapping: dict[int, int] = {}
        for number, key in batch.keys.items():
            known = self._numbers.get(key)
            mapping[number] = self._new_series(key) if known is None else known
        self._head.add(
            array("I", map(mapping.__getitem__, batch.series_numbers)),
            batch.timestamps,
            batch.values,
        )

    # -- writing ------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._closed or self._readonly:
            state = "closed" if self._closed else "read-only"
            raise WriteError(f"storage of {self._dir} is {state}")

    def append(self, points: Sequence[DataPoint] | Sequence[Row]) -> int:
        """Append a batch of (already validated) points to the log, without fsync.

        The batch becomes one checksummed record, written to the OS; call
        :meth:`sync` to make it durable. Queries see the points at once.

        Args:
            points: :class:`DataPoint` objects, or rows ``(metric, entity,
                value, timestamp)`` (cheaper); one kind per batch.

        Returns:
            The number of bytes appended.

        Raises:
            WriteError: the write failed (e.g. disk full); the log is left as it
                was before the call, so the same batch may be retried.
            ValueError: a name is longer than the format holds (64 KiB), or a
                row is not a 4-tuple.
            TypeError: a timestamp is not an int.
        """
        self._check_writable()
        if not points:
            return 0
        self._last_append = time.monotonic()
        # Whole columns at C speed, creating no container per point (that
        # would set off the garbage collector): no per-point Python code.
        first = points[0]
        if type(first) is tuple:
            if len(first) != 4:
                raise ValueError(
                    f"rows must be (metric, entity, value, timestamp), got {first!r}"
                )
            getters: tuple[Callable[[Any], Any], ...] = _ROW_COLUMNS
        else:
            getters = _POINT_COLUMNS
        try:
            metrics, entities, values, timestamps = [
                list(map(getter, points)) for getter in getters
            ]
        except IndexError:
            raise ValueError(
                "rows must be (metric, entity, value, timestamp), got a shorter one"
            ) from None
        numbers = array("I", self._series_numbers(metrics, entities))
        stamps = array("q", timestamps)
        column = value_column(values)
        record = pack_record(
            KIND_BATCH,
            encode_batch(numbers, stamps, column, self._entries, self._table_cache),
        )
        self._write(self._wal_fd, self._wal_size, record, "the log")
        # In the log: now in the head too. No lock: the head only ever grows
        # by whole batches, which a query either sees or does not.
        self._head.add(numbers, stamps, column)
        self._wal_size += len(record)
        self._log_end = LogEnd(self._wal_seq, self._wal_size, stamps[-1])
        self._unsynced = True
        self._points_written += len(numbers)
        self._bytes_written += len(record)
        self._maintain()
        return len(record)

    def _maintain(self) -> None:
        """After an append: rotate the log or checkpoint when due; never raises.

        The batch is already in the log, so a failure here must not reach the
        caller (who would retry and duplicate it): it is logged and retried
        later.
        """
        due = self._next_checkpoint
        try:
            if due is not None and self._head.points >= due:
                self.checkpoint()
            elif self._wal_size >= self._segment_bytes:
                self._rotate_wal()
        except Exception as exc:  # deliberate: the batch is in the log already
            if due is not None:
                self._next_checkpoint = self._head.points + due // 10 + 1
            logger.error(
                "Checkpoint of %s failed, will retry: %s",
                self._dir,
                exc,
                exc_info=not isinstance(exc, OSError),
            )

    def _write(self, fd: int, size: int, data: bytes, what: str) -> None:
        """Append ``data`` to ``fd`` (now ``size`` bytes), all or nothing."""
        view = memoryview(data)
        try:
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError as exc:
            try:
                os.ftruncate(fd, size)
            except OSError as undo:
                logger.error(
                    "Could not truncate %s back to %d bytes after a failed write: %s",
                    what,
                    size,
                    undo,
                )
            raise WriteError(
                exc.errno,
                f"could not append {len(data)} bytes to {what} in {self._dir}: "
                f"{exc.strerror or exc}",
            ) from exc

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

    # -- checkpoints and retention ------------------------------------------------

    def checkpoint(self) -> None:
        """Compact the head into blocks of a segment, then drop the logs it covered.

        Called automatically every ``checkpoint_points`` appended points; call
        it yourself (e.g. when idle, or before measuring the size on disk).

        Raises:
            WriteError: writing the segment failed; nothing is lost (the log
                files stay until a checkpoint succeeds).
        """
        self._check_writable()
        try:
            self._checkpoint()
        except WriteError:
            raise
        except OSError as exc:
            raise WriteError(
                exc.errno, f"checkpoint of {self._dir} failed: {exc}"
            ) from exc

    def _checkpoint(self) -> None:
        head = self._head
        if head.points == 0:
            return
        self._rotate_wal()
        covered = self._wal_seq - 1
        segment = self._segments.get(max(self._segments, default=0))
        if segment is None or segment.dat_size >= self._segment_bytes:
            segment = self._new_segment()
        blocks: list[bytes] = []
        entries: list[tuple[str, str, int, int, int, int]] = []
        keys = self._keys
        kind = head.value_kind()
        for number, timestamps, values in head.groups():
            metric, entity = keys[number]
            block, low, high = encode_block(metric, entity, timestamps, values, kind)
            blocks.append(block)
            entries.append((metric, entity, len(block), len(timestamps), low, high))
        data = b"".join(blocks)
        record = pack_record(
            KIND_CHECKPOINT, encode_checkpoint(covered, segment.dat_size, entries)
        )
        self._write(self._dat_fd, segment.dat_size, data, segment_name(segment.seq))
        try:
            os.fsync(self._dat_fd)
            self._write(self._idx_fd, segment.idx_size, record, index_name(segment.seq))
            os.fsync(self._idx_fd)
        except OSError as exc:
            self._undo_checkpoint(segment)
            if isinstance(exc, WriteError):
                raise
            raise WriteError(exc.errno, f"could not fsync a segment: {exc}") from exc
        self._commit_checkpoint(segment, covered, len(data), len(record), entries)

    def _undo_checkpoint(self, segment: _Segment) -> None:
        for fd, size in (
            (self._dat_fd, segment.dat_size),
            (self._idx_fd, segment.idx_size),
        ):
            try:
                os.ftruncate(fd, size)
            except OSError as exc:
                logger.error("Could not undo a failed checkpoint: %s", exc)

    def _commit_checkpoint(
        self,
        segment: _Segment,
        covered: int,
        data_size: int,
        record_size: int,
        entries: list[tuple[str, str, int, int, int, int]],
    ) -> None:
        """The checkpoint is durable: show its blocks instead of the head."""
        offset = segment.dat_size
        with self._lock:
            for metric, entity, length, count, low, high in entries:
                key = (metric, entity)
                ref = BlockRef(segment.seq, offset, length, count, low, high)
                self._index.setdefault(key, []).append(ref)
                segment.cover(low, high)
                offset += length
            self._head = Head()
        segment.dat_size += data_size
        segment.idx_size += record_size
        self._next_checkpoint = self._checkpoint_points
        self._covered = covered
        points = sum(entry[3] for entry in entries)
        done = [s for s in self._wal_seqs if s <= covered]
        self._wal_seqs = [s for s in self._wal_seqs if s > covered]
        candidates = sorted({*self._kept_logs, *done})
        kept = self._logs_to_keep(candidates)
        self._kept_logs = [s for s in candidates if s in kept]
        for seq in [s for s in candidates if s not in kept]:
            try:
                (self._dir / wal_name(seq)).unlink()
            except OSError as exc:
                logger.error("Could not remove covered log %s: %s", wal_name(seq), exc)
                self._kept_logs.append(seq)  # retried at the next checkpoint
                continue
            self._dir_unsynced = True
        logger.info(
            "Checkpoint: %d points of %d series into %s (%d bytes)",
            points,
            len(entries),
            segment_name(segment.seq),
            data_size,
        )
        self._apply_retention()
        self.sync()

    def _logs_to_keep(self, seqs: Sequence[int]) -> set[int]:
        """Of covered logs ``seqs``, those the log retention hook says to keep."""
        if self._log_retention is None or not seqs:
            return set()
        sizes = []
        for seq in seqs:
            try:
                sizes.append((seq, (self._dir / wal_name(seq)).stat().st_size))
            except FileNotFoundError:
                continue
        try:
            return set(self._log_retention.keep(sizes)) & set(seqs)
        except Exception:  # deliberate: a broken hook keeps logs rather than lose them
            logger.exception("Log retention hook failed; keeping covered logs")
            return set(seqs)

    def _new_segment(self) -> _Segment:
        """Create the next segment's data and index files (each atomically)."""
        seq = max(self._segments, default=0) + 1
        for name, magic in (
            (segment_name(seq), SEGMENT_MAGIC),
            (index_name(seq), INDEX_MAGIC),
        ):
            tmp = self._dir / (name + ".tmp")
            try:
                with open(tmp, "wb") as f:
                    f.write(pack_file_header(magic))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self._dir / name)
            except OSError as exc:
                raise WriteError(exc.errno, f"could not create {name}: {exc}") from exc
        try:
            fsync_directory(self._dir)
        except OSError as exc:
            raise WriteError(exc.errno, f"could not fsync {self._dir}: {exc}") from exc
        # Open both new files before closing the old ones: a failure here
        # leaves the storage writing where it was.
        dat_fd = self._open_for_append(segment_name(seq))
        try:
            idx_fd = self._open_for_append(index_name(seq))
        except WriteError:
            os.close(dat_fd)
            raise
        for fd in (self._dat_fd, self._idx_fd):
            if fd != -1:
                os.close(fd)
        self._dat_fd, self._idx_fd = dat_fd, idx_fd
        segment = self._segments[seq] = _Segment(seq)
        return segment

    def _open_for_append(self, name: str) -> int:
        try:
            return os.open(self._dir / name, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise WriteError(exc.errno, f"could not open {name}: {exc}") from exc

    def _apply_retention(self) -> None:
        """Remove the oldest whole segments that are too old or over the size limit."""
        max_age, max_bytes = self._retention_max_age_ms, self._retention_max_bytes
        if max_age is None and max_bytes is None:
            return
        oldest_allowed = now_ms() - max_age if max_age is not None else None
        total = sum(s.dat_size + s.idx_size for s in self._segments.values())
        for seq in sorted(self._segments)[:-1]:  # never the segment being written
            segment = self._segments[seq]
            too_old = (
                oldest_allowed is not None
                and segment.max_ts is not None
                and segment.max_ts < oldest_allowed
            )
            too_big = max_bytes is not None and total > max_bytes
            if not (too_old or too_big):
                break
            self._remove_segment(
                segment, "too old" if too_old else "over the size limit"
            )
            total -= segment.dat_size + segment.idx_size

    def _remove_segment(self, segment: _Segment, reason: str) -> None:
        with self._lock:
            del self._segments[segment.seq]
            for key in list(self._index):
                refs = [ref for ref in self._index[key] if ref.segment != segment.seq]
                self._index[key] = refs
        for name in (index_name(segment.seq), segment_name(segment.seq)):
            try:
                (self._dir / name).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                # Out of the index already; the next open applies retention again.
                logger.error("Could not remove %s (%s): %s", name, reason, exc)
        self._dir_unsynced = True
        logger.info(
            "Retention removed segment %d (%s): %d bytes",
            segment.seq,
            reason,
            segment.dat_size + segment.idx_size,
        )

    # -- reading ------------------------------------------------------------------

    def query(
        self,
        metric: str,
        entity: str | None = None,
        start: int | None = None,
        end: int | None = None,
        step: int | None = None,
        agg: str = "avg",
    ) -> QueryResult:
        """The points of ``metric`` in ``[start, end)`` ms, by entity, sorted by time.

        Sees every point appended before the call. A timestamp written more
        than once for the series reads back once: the last write wins. With
        ``step``, points are aggregated into buckets of ``step`` ms aligned on
        multiples of ``step``; each bucket is ``(bucket start, aggregate)``.

        Args:
            metric: the metric name (exact).
            entity: only this entity; None for all of the metric's entities.
            start: earliest timestamp included (ms); None for no bound.
            end: first timestamp excluded (ms); None for no bound.
            step: bucket width in ms, or None for raw points.
            agg: ``avg``, ``min``, ``max``, ``sum``, ``count`` or ``last``.

        Returns:
            Entity -> points; an unknown metric or entity gives ``{}``.

        Raises:
            ValueError: ``agg`` or ``step`` is invalid.
        """
        aggregate = check_agg(agg)
        if step is not None and (type(step) is not int or step <= 0):
            raise ValueError(f"step must be a positive int of ms, got {step!r}")
        with self._lock:
            entities = self._entities.get(metric, {})
            wanted = list(entities) if entity is None else [entity]
            head = self._head
            snapshot: list[tuple[str, list[BlockRef], int | None]] = []
            for name in wanted:
                key = (metric, name)
                refs = [
                    ref
                    for ref in self._index.get(key, ())
                    if (start is None or ref.max_ts >= start)
                    and (end is None or ref.min_ts < end)
                ]
                number = self._numbers.get(key)
                if refs or number is not None:
                    snapshot.append((name, refs, number))
        result: QueryResult = {}
        pace = self._pacer
        pace()
        for name, refs, number in snapshot:
            # The head's batches only ever grow by whole batches: it holds
            # every batch appended before the call (and maybe later ones).
            recent: Piece = ([], [])
            if number is not None:
                recent = head.piece(number, pace)
                pace()
            piece = merge([*self._read_blocks(refs, pace), recent])
            pace()
            piece = select(piece, start, end)
            if not piece[0]:
                continue
            if step is None:
                result[name] = list(zip(*piece, strict=True))
            else:
                result[name] = downsample(piece, step, aggregate, pace)
        return result

    def pace(self) -> None:
        """Step aside for ingest if it is active (for readers' own long work).

        A reader that computes on query results (the HTTP API formatting a
        render) calls this between pieces of work, as queries do between
        blocks, so that it shares the interpreter lock with ingest.
        """
        self._pacer()

    def _read_blocks(self, refs: list[BlockRef], pace: _Pacer) -> list[Piece]:
        """Read and decode blocks; a damaged one is skipped, counted and logged."""
        pieces: list[Piece] = []
        fds: dict[int, int] = {}
        read = 0
        try:
            for ref in refs:
                pace()
                fd = fds.get(ref.segment)
                if fd is None:
                    try:
                        fd = os.open(self._dir / segment_name(ref.segment), os.O_RDONLY)
                    except FileNotFoundError:
                        fd = -1  # removed by retention since the snapshot
                    fds[ref.segment] = fd
                if fd == -1:
                    continue
                data = os.pread(fd, ref.length, ref.offset)
                read += len(data)
                try:
                    _metric, _entity, timestamps, values = decode_block(data)
                except CorruptRecordError as exc:
                    with self._stats_lock:
                        self._skipped_records += 1
                    logger.warning(
                        "Skipped damaged block at %s:%d: %s",
                        segment_name(ref.segment),
                        ref.offset,
                        exc,
                    )
                    continue
                pieces.append((timestamps, values))
        finally:
            for fd in fds.values():
                if fd != -1:
                    os.close(fd)
            with self._stats_lock:
                self._bytes_read += read
        return pieces

    def metrics(self) -> list[str]:
        """The names of every stored metric, sorted."""
        return sorted({metric for metric, _entity in self.series()})

    def series(self, pattern: str = "*") -> list[tuple[str, str]]:
        """The stored ``(metric, entity)`` pairs whose metric matches ``pattern``.

        ``pattern`` is a Graphite-style glob: ``*`` matches within one dotted
        component (``cpu.*``, ``*.load``), ``**`` across components, ``?`` one
        character, ``{a,b}`` alternatives, ``[...]`` a character class; a bare
        ``*`` lists everything.

        Raises:
            ValueError: the pattern is malformed.
        """
        regex = compile_glob(pattern)
        with self._lock:
            head, numbers = self._head, self._numbers
            candidates = [
                (metric, entity, bool(self._index.get((metric, entity))))
                for metric, entities in self._entities.items()
                if regex.fullmatch(metric)
                for entity in entities
            ]
        in_head = head.nonempty()
        found = [
            (metric, entity)
            for metric, entity, compacted in candidates
            if compacted or numbers.get((metric, entity)) in in_head
        ]
        return sorted(found)

    # -- closing and figures ------------------------------------------------------

    def close(self) -> None:
        """Sync and close the files; calling it again does nothing."""
        if self._closed:
            return
        try:
            self.sync()
        finally:
            self._closed = True
            self._release_files()
            if not self._readonly:
                logger.info("Closed data directory %s", self._dir)

    def _release_files(self) -> None:
        for fd in (self._wal_fd, self._dat_fd, self._idx_fd, self._lock_fd):
            if fd != -1:
                os.close(fd)
        self._wal_fd = self._dat_fd = self._idx_fd = self._lock_fd = -1

    def __enter__(self) -> Storage:
        """Use as a context manager that closes the storage on exit."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the storage."""
        self.close()

    @property
    def directory(self) -> Path:
        """The data directory."""
        return self._dir

    @property
    def log_end(self) -> LogEnd:
        """Where the acknowledged log ends; any thread may read it (see LogEnd)."""
        return self._log_end

    @property
    def opened_log_end(self) -> LogEnd:
        """Where the log ended when this storage was opened (before any append)."""
        return self._opened_log_end

    @property
    def points_written(self) -> int:
        """Points appended through this object since it was opened."""
        return self._points_written

    @property
    def bytes_written(self) -> int:
        """Log bytes appended through this object since it was opened."""
        return self._bytes_written

    @property
    def bytes_read(self) -> int:
        """File bytes read: indexes and logs when loading, blocks by queries."""
        return self._bytes_read

    @property
    def skipped_records(self) -> int:
        """Damaged records, blocks or stretches skipped while reading the directory."""
        return self._skipped_records

    @property
    def head_points(self) -> int:
        """Points in memory (and the log) not yet compacted by a checkpoint."""
        return self._head.points
