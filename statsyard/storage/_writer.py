"""The writer's side of a storage: append, rotate, checkpoint, retention, sync.

Driven by one thread (the ``TimestampWriter`` actor's). It owns the log and
segment files and the series limits; it changes the catalog that queries
read, under the catalog's lock where they iterate.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Callable, Sequence
from itertools import compress
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from statsyard.datapoint import now_ms
from statsyard.exceptions import WriteError
from statsyard.storage._admission import REASONS, SeriesLimits
from statsyard.storage._batch import (
    KIND_BATCH,
    encode_batch,
    out_of_range,
    value_column,
)
from statsyard.storage._catalog import Catalog
from statsyard.storage._checkpoint import SegmentWriter
from statsyard.storage._files import segment_name
from statsyard.storage._framing import MAX_RECORD_PAYLOAD, pack_record
from statsyard.storage._log import LogWriter
from statsyard.storage._log_watch import LogEnd, LogRetention
from statsyard.storage._recovery import Loader
from statsyard.storage._retention import (
    remove_covered_logs,
    remove_segment,
    segments_to_remove,
)

if TYPE_CHECKING:
    from statsyard.datapoint import DataPoint, Row

logger = logging.getLogger("statsyard.storage")

_ROW_COLUMNS = tuple(map(itemgetter, range(4)))
_POINT_COLUMNS = tuple(map(attrgetter, ("metric", "entity", "value", "timestamp")))


class Writer:
    """Appends to a recovered data directory and keeps it compacted and trimmed.

    Args:
        directory: the data directory (locked by the caller).
        catalog: the storage's catalog (filled by :meth:`recover`).
        segment_bytes: size at which logs and segments rotate.
        retention_max_age_ms: remove segments older than this (None: never).
        retention_max_bytes: remove the oldest segments beyond this (None: never).
        checkpoint_points: checkpoint at this many head points (None: on call).
        log_retention: asked which covered logs to keep (None: delete them).
        limits: series limits (None: none).
    """

    def __init__(
        self,
        directory: Path,
        catalog: Catalog,
        *,
        segment_bytes: int,
        retention_max_age_ms: int | None,
        retention_max_bytes: int | None,
        checkpoint_points: int | None,
        log_retention: LogRetention | None,
        limits: SeriesLimits | None,
    ) -> None:
        self._dir = directory
        self._catalog = catalog
        self._segment_bytes = segment_bytes
        self._retention_max_age_ms = retention_max_age_ms
        self._retention_max_bytes = retention_max_bytes
        self._checkpoint_points = checkpoint_points
        self._next_checkpoint = checkpoint_points
        self._log_retention = log_retention
        self._limits = limits
        self._log = LogWriter(directory, catalog.wal_seqs, 0)
        self._segments = SegmentWriter(directory, segment_bytes)
        self._kept_logs: list[int] = []
        self.opened_log_end = self._log.end
        """Where the log ended right after recovery."""
        self.points_written = 0
        self.bytes_written = 0

    def recover(self) -> int:
        """Load and repair the directory, then open its files for appending.

        Returns:
            File bytes read.
        """
        catalog = self._catalog
        loader = Loader(
            self._dir, catalog, repair=True, log_retention=self._log_retention
        )
        loader.load()
        self._kept_logs = loader.kept_logs
        self._log = LogWriter(self._dir, catalog.wal_seqs, catalog.wal_seq)
        if loader.directory_changed:
            self._log.note_directory_changed()
        self._log.start()
        self._segments.start(catalog)
        self.opened_log_end = self._log.end
        self.apply_retention()
        return loader.bytes_read

    @property
    def log_end(self) -> LogEnd:
        """The published end of the acknowledged log."""
        return self._log.end

    @property
    def refused(self) -> dict[str, int]:
        """Points refused by a series limit, by reason."""
        if self._limits is None:
            return dict.fromkeys(REASONS, 0)
        return dict(self._limits.refused)

    # -- appending ----------------------------------------------------------------

    def append(self, points: Sequence[DataPoint] | Sequence[Row]) -> int:
        """See :meth:`Storage.append`."""
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
        catalog = self._catalog
        stamps = array("q", timestamps)
        column = value_column(values)
        problem = out_of_range(stamps, column)
        if problem is not None:  # it could not be read back
            raise ValueError(f"cannot store a {problem}")
        found = catalog.series_numbers(metrics, entities, self._limits)
        if self._limits is not None and -1 in found:  # new series over a limit
            keep = [number != -1 for number in found]
            found = list(compress(found, keep))
            stamps = array("q", compress(stamps, keep))
            column = value_column(list(compress(values, keep)))
            if not found:
                return 0
        numbers = array("I", found)
        payload = encode_batch(
            numbers, stamps, column, catalog.entries, catalog.table_cache
        )
        if len(payload) > MAX_RECORD_PAYLOAD:
            raise ValueError(
                f"a batch takes at most {MAX_RECORD_PAYLOAD} bytes in the log, "
                f"this one {len(payload)}: split it"
            )
        record = pack_record(KIND_BATCH, payload)
        self._log.append(record, stamps[-1])
        # In the log: now in the head too. No lock: the head only ever grows
        # by whole batches, which a query either sees or does not.
        catalog.head.add(numbers, stamps, column)
        self.points_written += len(numbers)
        self.bytes_written += len(record)
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
            if due is not None and self._catalog.head.points >= due:
                self.checkpoint()
            elif self._log.size >= self._segment_bytes:
                self._log.rotate()
        except Exception as exc:  # deliberate: the batch is in the log already
            if due is not None:
                self._next_checkpoint = self._catalog.head.points + due // 10 + 1
            logger.error(
                "Checkpoint of %s failed, will retry: %s",
                self._dir,
                exc,
                exc_info=not isinstance(exc, OSError),
            )

    def sync(self) -> None:
        """fsync the log (and the directory when needed).

        Raises:
            WriteError: fsync failed.
        """
        self._log.sync()

    # -- checkpoints and retention ------------------------------------------------

    def checkpoint(self) -> None:
        """See :meth:`Storage.checkpoint`."""
        try:
            self._checkpoint()
        except WriteError:
            raise
        except OSError as exc:
            raise WriteError(
                exc.errno, f"checkpoint of {self._dir} failed: {exc}"
            ) from exc

    def _checkpoint(self) -> None:
        catalog = self._catalog
        if catalog.head.points == 0:
            return
        self._log.rotate()
        covered = self._log.seq - 1
        written = self._segments.write(catalog, covered)
        # Durable: show the blocks instead of the head.
        catalog.commit_blocks(written.segment, written.entries)
        segment = written.segment
        segment.dat_size += written.data_size
        segment.idx_size += written.record_size
        self._next_checkpoint = self._checkpoint_points
        catalog.covered = covered
        done = [s for s in catalog.wal_seqs if s <= covered]
        catalog.wal_seqs[:] = [s for s in catalog.wal_seqs if s > covered]
        candidates = sorted({*self._kept_logs, *done})
        self._kept_logs, removed = remove_covered_logs(
            self._dir, self._log_retention, candidates
        )
        if removed:
            self._log.note_directory_changed()
        logger.info(
            "Checkpoint: %d points of %d series into %s (%d bytes)",
            sum(entry[3] for entry in written.entries),
            len(written.entries),
            segment_name(segment.seq),
            written.data_size,
        )
        self.apply_retention()
        self.sync()

    def apply_retention(self) -> None:
        """Remove the oldest whole segments that are too old or over the size limit."""
        doomed = segments_to_remove(
            self._catalog.segments,
            max_age_ms=self._retention_max_age_ms,
            max_bytes=self._retention_max_bytes,
            now_ms=now_ms(),
        )
        for segment, reason in doomed:
            remove_segment(self._dir, self._catalog, segment, reason)
            self._log.note_directory_changed()

    def close(self) -> None:
        """Close the log and segment files (no sync)."""
        self._log.close()
        self._segments.close()
