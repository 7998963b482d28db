"""The :class:`Storage` of a data directory: the facade over log, head and segments.

Each concern has its module: ``_catalog`` (what is in memory), ``_recovery``
and ``_rescue`` (loading and repair), ``_writer`` (appends, checkpoints,
retention) over ``_log`` (the write-ahead log), ``_checkpoint`` (compaction
into segments), ``_retention`` and ``_admission`` (series limits); ``_lock``
(one writer), ``_pacing`` and ``_reader`` (queries). This module wires them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

from statsyard.exceptions import CorruptRecordError, WriteError
from statsyard.storage._admission import REASONS, SeriesLimits
from statsyard.storage._catalog import Catalog
from statsyard.storage._files import check_data_directory, listing, upgrade_marker
from statsyard.storage._lock import lock_directory
from statsyard.storage._log_watch import LogEnd, LogRetention
from statsyard.storage._lookup import SeriesSelection
from statsyard.storage._merge import DEFAULT_BLOCK_POINTS as DEFAULT_MERGE_BLOCK_POINTS
from statsyard.storage._pacing import Pacer
from statsyard.storage._reader import QueryResult, Reader, SegmentVanishedError
from statsyard.storage._recovery import Loader, Reload

if TYPE_CHECKING:
    from statsyard.datapoint import DataPoint, Row
    from statsyard.storage._columns import FloatColumns
    from statsyard.storage._writer import Writer

logger = logging.getLogger("statsyard.storage")

_ROW_COLUMNS = tuple(map(itemgetter, range(4)))
_POINT_COLUMNS = tuple(map(attrgetter, ("metric", "entity", "value", "timestamp")))

DEFAULT_CHECKPOINT_POINTS: Final = 500_000
"""Points in the head that trigger an automatic checkpoint."""
DEFAULT_SEGMENT_BYTES: Final = 64 * 2**20
"""Size at which log and segment files rotate."""
MAX_SEGMENT_BYTES: Final = 512 * 2**20
"""Largest ``segment_bytes``: a log is then at most this plus one record,
below the size beyond which a reader takes a file for damage."""
_LOAD_ATTEMPTS: Final = 20
_Answer = TypeVar("_Answer")
_QUERY_ATTEMPTS: Final = 5
"""A query whose snapshot names a segment file that is gone by the time it
reads it (a merge replaced it, or retention removed it) starts over, with a
fresh snapshot (a read-only storage refreshes first); the last attempt
skips what is gone."""


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
        max_series: int | None = None,
        max_new_series_per_minute: int | None = None,
        compaction_worker: bool = False,
        compaction_ready: Callable[[], None] | None = None,
        merge_after_ms: int | None = None,
        merge_block_points: int = DEFAULT_MERGE_BLOCK_POINTS,
    ) -> None:
        """Store the settings; use :meth:`open` or :meth:`open_readonly` instead."""
        if type(segment_bytes) is int and segment_bytes > MAX_SEGMENT_BYTES:
            raise ValueError(
                f"segment_bytes must be at most {MAX_SEGMENT_BYTES}, "
                f"got {segment_bytes}"
            )
        for name, setting in (
            ("segment_bytes", segment_bytes),
            ("retention_max_age_ms", retention_max_age_ms),
            ("retention_max_bytes", retention_max_bytes),
            ("checkpoint_points", checkpoint_points),
            ("merge_after_ms", merge_after_ms),
            ("merge_block_points", merge_block_points),
        ):
            if setting is not None and (type(setting) is not int or setting <= 0):
                raise ValueError(f"{name} must be a positive int, got {setting!r}")
        self._dir = directory
        self._catalog = Catalog()
        self._pacer = Pacer()
        self._reader = Reader(directory, self._pacer)
        if not readonly:  # a reader never loads the writer's modules
            from statsyard.storage._writer import Writer
        self._writer = (
            None
            if readonly
            else Writer(
                directory,
                self._catalog,
                segment_bytes=segment_bytes,
                retention_max_age_ms=retention_max_age_ms,
                retention_max_bytes=retention_max_bytes,
                checkpoint_points=checkpoint_points,
                log_retention=log_retention,
                limits=(
                    None
                    if max_series is None and max_new_series_per_minute is None
                    else SeriesLimits(max_series, max_new_series_per_minute)
                ),
                compaction_worker=compaction_worker,
                compaction_ready=compaction_ready,
                merge_after_ms=merge_after_ms,
                merge_block_points=merge_block_points,
                pace=self._pacer,
            )
        )
        self._only: SeriesSelection | None = None
        """(read-only) The series loaded, when not all of them."""
        self._lock_fd = -1
        self._closed = False
        self._bytes_loaded = 0

    # -- opening ------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        retention_max_age_ms: int | None = None,
        retention_max_bytes: int | None = None,
        checkpoint_points: int | None = DEFAULT_CHECKPOINT_POINTS,
        log_retention: LogRetention | None = None,
        max_series: int | None = None,
        max_new_series_per_minute: int | None = None,
        compaction_worker: bool = False,
        compaction_ready: Callable[[], None] | None = None,
        merge_after_ms: int | None = None,
        merge_block_points: int = DEFAULT_MERGE_BLOCK_POINTS,
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
            max_series: refuse points of new series once the storage holds
                this many series (None: no limit).
            max_new_series_per_minute: refuse points of new series beyond
                this many new series a minute (None: no limit). Refused
                points are counted in :attr:`refused_points`.
            compaction_worker: encode the blocks of automatic checkpoints
                (and of :meth:`start_checkpoint`) in a worker process, on
                another core, while appends go on; False encodes them in the
                appending thread. The worker is started by the first such
                checkpoint, from the thread that appends (it dies with that
                thread), and stopped by :meth:`close`.
            compaction_ready: called from another thread when the worker's
                blocks (or a merge) are in; the owner then calls
                :meth:`finish_checkpoint` from the appending thread (else the
                next append commits them).
            merge_after_ms: merge compaction: seal the segment being written
                once its points span this many ms (the next checkpoint starts
                a new one), and merge runs of sealed segments of small blocks
                into one segment of blocks of up to ``merge_block_points``, in
                the background (in a worker process with
                ``compaction_worker``, else in a paced thread); None merges
                only on :meth:`merge`. See ``docs/storage.md``.
            merge_block_points: most points a merged block holds.

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
            max_series=max_series,
            max_new_series_per_minute=max_new_series_per_minute,
            compaction_worker=compaction_worker,
            compaction_ready=compaction_ready,
            merge_after_ms=merge_after_ms,
            merge_block_points=merge_block_points,
        )
        check_data_directory(directory, create=True)
        storage._lock_fd = lock_directory(directory)
        try:
            upgrade_marker(directory)  # format 2 -> 3: older versions must refuse
            storage._bytes_loaded += storage._writing().recover()
        except BaseException:
            storage._release_files()
            raise
        logger.info(
            "Opened data directory %s: %d points in the log, %d segments, "
            "%d damaged records skipped",
            directory,
            storage.head_points,
            len(storage._catalog.segments),
            storage.skipped_records,
        )
        return storage

    @classmethod
    def open_readonly(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        series: Iterable[tuple[str, str | None]] | None = None,
    ) -> Storage:
        """Open a data directory for reading only, as of now.

        Never modifies a file (a torn tail is skipped, not truncated), and works
        whether or not a writer is running on the directory. The result is a
        snapshot: call :meth:`refresh` to see points written since.

        Args:
            data_dir: the directory.
            series: load only these ``(metric, entity)`` series (an entity of
                None: every entity of the metric); queries and listings then
                see only them, exactly as a full open would show them. Every
                index and log record is still read and checked, but block
                references and points are made for these series alone, which
                makes a one-series read of a large directory far cheaper.
                None (the default) loads everything.

        Raises:
            NotADataDirectoryError: ``data_dir`` is not a StatsYard data directory.
            CorruptRecordError: a file named as a StatsYard file is not one.
            TypeError: ``series`` holds something other than such pairs.
        """
        directory = Path(data_dir)
        only = None if series is None else SeriesSelection(series)
        check_data_directory(directory, create=False)
        storage = cls(
            directory,
            segment_bytes=DEFAULT_SEGMENT_BYTES,
            retention_max_age_ms=None,
            retention_max_bytes=None,
            checkpoint_points=None,
            readonly=True,
        )
        storage._only = only
        storage.refresh()
        return storage

    def refresh(self) -> None:
        """Read-only storage: load the directory again to see newer points.

        Raises:
            StatsYardError: on a writable storage (it is always current).
        """
        if self._writer is not None:
            raise WriteError("refresh() is for read-only storage; this one is live")
        previous: list[tuple[str, int, int]] | None = None
        for _attempt in range(_LOAD_ATTEMPTS):
            fresh = Catalog()
            files = listing(self._dir)
            # Unchanged since an attempt that saw a file vanish or a log
            # missing: not a writer at work, but damage; load past it.
            loader = Loader(
                self._dir,
                fresh,
                repair=False,
                settled=files == previous,
                only=self._only,
            )
            try:
                loader.load()
            except Reload:
                previous = files
                continue
            finally:
                self._bytes_loaded += loader.bytes_read
            # One store: queries in other threads see old or new, never half.
            self._catalog = fresh
            return
        raise CorruptRecordError(
            f"{self._dir}: files kept changing while being read "
            f"({_LOAD_ATTEMPTS} attempts); try again"
        )

    # -- writing ------------------------------------------------------------------

    def _writing(self) -> Writer:
        if self._closed or self._writer is None:
            state = "closed" if self._closed else "read-only"
            raise WriteError(f"storage of {self._dir} is {state}")
        return self._writer

    def append(self, points: Sequence[DataPoint] | Sequence[Row]) -> int:
        """Append a batch of (already validated) points to the log, without fsync.

        The batch becomes one checksummed record, written to the OS; call
        :meth:`sync` to make it durable. Queries see the points at once.
        Points of new series beyond a series limit are refused and counted
        (:attr:`refused_points`).

        Args:
            points: :class:`DataPoint` objects, or rows ``(metric, entity,
                value, timestamp)`` (cheaper); one kind per batch.

        Returns:
            The number of bytes appended.

        Raises:
            WriteError: the write failed (e.g. disk full); the log is left as it
                was before the call, so the same batch may be retried.
            ValueError: a name is longer than the format holds (64 KiB), a
                row is not a 4-tuple, a timestamp or value is outside what
                :func:`~statsyard.datapoint.validate` accepts (it could not be
                read back), or the batch is too big for one record (256 MiB).
            TypeError: a timestamp is not an int.
        """
        writer = self._writing()
        if not points:
            return 0
        self._pacer.note_ingest()
        return writer.append(points)

    def sync(self) -> None:
        """Make everything appended so far durable (fsync, and the directory if needed).

        Raises:
            WriteError: fsync failed.
        """
        if self._closed or self._writer is None:
            return
        self._writer.sync()

    def checkpoint(self) -> None:
        """Compact the head into blocks of a segment, then drop the logs it covered.

        Called automatically every ``checkpoint_points`` appended points; call
        it yourself (e.g. when idle, or before measuring the size on disk).

        Raises:
            WriteError: writing the segment failed; nothing is lost (the log
                files stay until a checkpoint succeeds).
        """
        self._writing().checkpoint()

    def start_checkpoint(self) -> None:
        """Begin compacting the head without waiting for the blocks, if possible.

        With a compaction worker the head is frozen (appends go on into a new
        one) and its blocks are encoded in the worker; they are committed by
        :meth:`finish_checkpoint` or the next append once they are in.
        Without one, or while a checkpoint is already under way, this is
        :meth:`checkpoint` (resp. does nothing). Queries see every point
        once throughout.

        Raises:
            WriteError: writing failed (see :meth:`checkpoint`).
        """
        self._writing().start_checkpoint()

    def finish_checkpoint(self) -> int:
        """Commit a checkpoint whose blocks the worker has finished; never waits.

        Returns:
            Checkpoints committed (0 or 1).

        Raises:
            WriteError: writing the segment failed; the blocks are kept and
                written again by the next call (the log keeps the points).
        """
        return self._writing().finish_checkpoint()

    def merge(self, *, seal: bool = False) -> int:
        """Merge runs of sealed segments of small blocks now, and wait.

        Commits a merge under way first. Each merge rewrites consecutive
        sealed segments whose blocks average fewer than half of
        ``merge_block_points`` points into one segment of blocks of up to
        that many points; queries see every point once throughout.

        Args:
            seal: seal the segment being written first (the next checkpoint
                starts a new one), so that everything compacted may merge.

        Returns:
            Segments merged away.

        Raises:
            WriteError: a merge failed; nothing is lost (its sources stay).
        """
        writer = self._writing()
        merged = 0

        def run() -> None:
            nonlocal merged
            merged = writer.merge(seal=seal)

        writer.guard(run)
        return merged

    @property
    def merges_done(self) -> int:
        """Merges committed through this object since it was opened."""
        return 0 if self._writer is None else self._writer.merges_done

    @property
    def merging(self) -> bool:
        """Whether a merge runs in the background."""
        return self._writer is not None and self._writer.merging

    @property
    def merge_failures(self) -> int:
        """Merges the merge worker failed (after 3, merges run in a thread)."""
        return 0 if self._writer is None else self._writer.merge_failures

    @property
    def merge_worker_pid(self) -> int | None:
        """The merge worker's process id, while one runs."""
        return None if self._writer is None else self._writer.merge_worker_pid

    @property
    def compacting(self) -> bool:
        """Whether a checkpoint's head is frozen, its blocks not yet committed."""
        return self._writer is not None and self._writer.compacting

    @property
    def checkpoints_done(self) -> int:
        """Checkpoints committed through this object since it was opened."""
        return 0 if self._writer is None else self._writer.checkpoints_done

    @property
    def compaction_worker_pid(self) -> int | None:
        """The compaction worker's process id, while one runs."""
        compactor = None if self._writer is None else self._writer.compactor
        return None if compactor is None else compactor.worker_pid

    @property
    def compaction_fallbacks(self) -> int:
        """Checkpoints the worker failed, whose blocks the writer encoded itself."""
        compactor = None if self._writer is None else self._writer.compactor
        return 0 if compactor is None else compactor.failures

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
        return self._retrying(
            lambda strict: self._reader.query(
                self._catalog, metric, entity, start, end, step, agg, strict=strict
            )
        )

    def query_columns(
        self,
        metric: str,
        entity: str,
        start: int | None = None,
        end: int | None = None,
    ) -> FloatColumns:
        """One series' raw points in ``[start, end)`` ms as two numpy columns.

        The points :meth:`query` gives (sorted by time, the last write of a
        timestamp winning), as an int64 array of timestamps and a float64
        array of values (ints rounded as ``float()`` rounds them), for a
        reader that computes on many points (the render engine): no Python
        object per point. Imports numpy. An unknown series gives two empty
        arrays.
        """
        return self._retrying(
            lambda strict: self._reader.columns(
                self._catalog, metric, entity, start, end, strict=strict
            )
        )

    def _retrying(self, read: Callable[[bool], _Answer]) -> _Answer:
        """``read(strict)`` again from a fresh snapshot while a segment file
        vanishes under it (see :data:`_QUERY_ATTEMPTS`); a read-only storage
        loads the directory again first (a live one's catalog is current)."""
        for _ in range(_QUERY_ATTEMPTS - 1):
            try:
                return read(True)
            except SegmentVanishedError:
                if self._writer is None:
                    self.refresh()
        return read(False)

    def pace(self) -> None:
        """Step aside for ingest if it is active (for readers' own long work).

        A reader that computes on query results (the HTTP API formatting a
        render) calls this between pieces of work, as queries do between
        blocks, so that it shares the interpreter lock with ingest.
        """
        self._pacer()

    def metrics(self) -> list[str]:
        """The names of every stored metric, sorted."""
        return sorted({metric for metric, _entity in self.series()})

    def series(self, pattern: str = "*") -> list[tuple[str, str]]:
        """The stored ``(metric, entity)`` pairs whose metric matches ``pattern``.

        ``pattern`` is a Graphite-style glob: ``*`` matches within one dotted
        component (``cpu.*``, ``*.load``), ``**`` across components, ``?`` one
        character, ``{a,b}`` alternatives, ``[...]`` a character class; a bare
        ``*`` lists everything. Matching takes time linear in each name.

        Raises:
            PatternError: (a ValueError) the pattern is malformed, longer than
                1,024 characters or nests braces deeper than 16.
        """
        return self._reader.series(self._catalog, pattern)

    # -- closing and figures ------------------------------------------------------

    def close(self, *, compact: bool = False) -> None:
        """Sync and close the files; calling it again does nothing.

        Args:
            compact: checkpoint first when the head holds points, so that the
                data is left in blocks (about a byte a point) rather than in
                the log (about 11), then (with merges on) merge the small
                blocks left when that takes at most a million points; a
                failure is logged and loses nothing (the log and the merge's
                sources stay). The pipeline's writer does so on a clean stop.
        """
        if self._closed:
            return
        try:
            if self._writer is not None:
                self._writer.closing = True  # a merge started now is called off
            if compact and self._writer is not None and self.head_points:
                try:
                    self._writer.checkpoint()
                except WriteError as exc:
                    logger.error(
                        "Checkpoint at close of %s failed; the log keeps the "
                        "points: %s",
                        self._dir,
                        exc,
                    )
            if compact and self._writer is not None:
                self._writer.merge_before_close()
            self.sync()
        finally:
            self._closed = True
            self._release_files()
            if self._writer is not None:
                logger.info("Closed data directory %s", self._dir)

    def _release_files(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._lock_fd != -1:
            os.close(self._lock_fd)
            self._lock_fd = -1

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
        return LogEnd(0, 0, None) if self._writer is None else self._writer.log_end

    @property
    def opened_log_end(self) -> LogEnd:
        """Where the log ended when this storage was opened (before any append)."""
        if self._writer is None:
            return LogEnd(0, 0, None)
        return self._writer.opened_log_end

    @property
    def points_written(self) -> int:
        """Points appended through this object since it was opened."""
        return 0 if self._writer is None else self._writer.points_written

    @property
    def bytes_written(self) -> int:
        """Log bytes appended through this object since it was opened."""
        return 0 if self._writer is None else self._writer.bytes_written

    @property
    def bytes_read(self) -> int:
        """File bytes read: indexes and logs when loading, blocks by queries."""
        return self._bytes_loaded + self._reader.bytes_read

    @property
    def skipped_records(self) -> int:
        """Damaged records, blocks or stretches skipped while reading the directory."""
        return self._catalog.skipped_records

    @property
    def series_held(self) -> int:
        """Distinct series stored (compacted or in the head)."""
        return self._catalog.series_held

    @property
    def refused_points(self) -> dict[str, int]:
        """Points of new series refused by a series limit since open, by reason.

        Reasons: ``max_series`` and ``max_new_series_per_minute``.
        """
        if self._writer is None:
            return dict.fromkeys(REASONS, 0)
        return self._writer.refused

    @property
    def head_points(self) -> int:
        """Points in memory (and the log) not yet in committed blocks."""
        return self._catalog.head.pending
