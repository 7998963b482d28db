"""Loading a data directory into a catalog: indexes, then the logs they do not cover.

Every file is untrusted input. Only regular files are read (opened
``O_NONBLOCK``, checked with ``fstat``), through a bounded window, never
whole. The writer loads with ``repair``; it never deletes or cuts away
bytes it cannot get back: a damaged file is moved into ``damaged/``, a torn
tail is copied there before it is cut, and blocks of a segment that its
index no longer lists (a damaged or lost checkpoint record) are found again
by scanning the data file and listed by a new record. A reader never writes
a byte; when a concurrent writer changes the files under it, it raises
:class:`Reload` and starts over. The rules are in ``docs/storage.md``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from statsyard.exceptions import CorruptRecordError
from statsyard.storage._batch import batch_payload, decode_batch
from statsyard.storage._catalog import Catalog
from statsyard.storage._files import (
    INDEX_PATTERN,
    MAX_FILE_BYTES,
    MERGE_DAT_TMP,
    MERGE_IDX_TMP,
    SEGMENT_PATTERN,
    WAL_PATTERN,
    numbered,
    save_bytes,
)
from statsyard.storage._framing import (
    FILE_HEADER_SIZE,
    WAL_MAGIC,
    ScanResult,
    scan_file,
)
from statsyard.storage._inspect import (
    FOREIGN,
    GOOD,
    TORN,
    Reload,
    header_state,
    truncate,
)
from statsyard.storage._log_watch import LogRetention
from statsyard.storage._lookup import SeriesSelection
from statsyard.storage._retention import logs_to_keep
from statsyard.storage._segment_recovery import SegmentRecovery

logger = logging.getLogger("statsyard.storage")


class Loader(SegmentRecovery):
    """Fills a :class:`Catalog` from the files of a data directory.

    Args:
        directory: the data directory.
        catalog: an empty catalog to fill.
        repair: the writer: repair and quarantine; else read only.
        log_retention: asked which covered logs to keep (writer only).
        settled: (reader) the directory did not change since the last
            attempt, so what looks like a concurrent checkpoint is damage:
            skip it (counted) instead of raising :class:`Reload`.
        only: (reader) load only these series' blocks and points; every
            record is still read and checked (``_lookup.py``).
    """

    def __init__(
        self,
        directory: Path,
        catalog: Catalog,
        *,
        repair: bool,
        log_retention: LogRetention | None = None,
        settled: bool = False,
        only: SeriesSelection | None = None,
    ) -> None:
        if only is not None and repair:
            raise ValueError("only a reader loads a selection of series")
        super().__init__(directory, catalog, repair=repair, settled=settled)
        self.only = only
        self._log_retention = log_retention
        self.kept_logs: list[int] = []
        """Covered logs left on disk for log readers."""
        self.superseded = {}

    # -- the whole directory ------------------------------------------------------

    def load(self) -> None:
        """Read segment indexes (rescuing unlisted blocks), then uncovered logs.

        Raises:
            Reload: (reader) a checkpoint changed the files meanwhile.
            CorruptRecordError: a file of a newer format version.
        """
        catalog = self._catalog
        if self._repair:
            self._remove_merge_leftovers()
        indexes = numbered(self._dir, INDEX_PATTERN)
        data_files = {seq for seq, _ in numbered(self._dir, SEGMENT_PATTERN)}
        newest = max([0, *data_files, *(seq for seq, _ in indexes)])
        skip = self.find_merges(indexes)
        for seq in self.superseded:
            skip.add(seq)
            if self._repair:
                self.remove_superseded(seq)
        data_files -= skip
        for seq, path in indexes:
            if seq not in skip and self._load_segment(seq, path):
                data_files.discard(seq)
        for seq in sorted(data_files):
            self._load_orphan(seq, newest=seq == newest)
        wals = numbered(self._dir, WAL_PATTERN)
        live = [(s, p) for s, p in wals if s > catalog.covered]
        if not self._repair and live and live[0][0] != catalog.covered + 1:
            if not self._settled:
                raise Reload  # a checkpoint removed logs after we read the indexes
            logger.warning(
                "Logs %d..%d of %s are missing: a damaged index lost the record "
                "of the checkpoint that covered them",
                catalog.covered + 1,
                live[0][0] - 1,
                self._dir,
            )
        loaded = []
        for position, (seq, path) in enumerate(live):
            if self._replay_wal(seq, path, newest=position == len(live) - 1):
                loaded.append(seq)
        catalog.wal_seqs = loaded
        catalog.wal_seq = max([catalog.covered, *(s for s, _ in wals)])
        if self._repair:
            self._remove_covered([(s, p) for s, p in wals if s <= catalog.covered])

    def _remove_merge_leftovers(self) -> None:
        """Writer: remove the files of a merge cut short before its commit."""
        for name in (MERGE_DAT_TMP, MERGE_IDX_TMP):
            path = self._dir / name
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            logger.warning("Removed %s: a merge that never committed", path)
            self.directory_changed = True

    # -- logs ---------------------------------------------------------------------

    def _replay_wal(self, seq: int, path: Path, *, newest: bool) -> bool:
        """Load one log file into the head.

        Returns:
            Whether the log stays a live log (False: damaged and set aside).
        """
        opened = self._open(path, limit=MAX_FILE_BYTES)
        if opened is None:
            return False
        fd, size = opened
        try:
            return self._read_wal(path, fd, size, newest=newest)
        finally:
            os.close(fd)

    def _read_wal(self, path: Path, fd: int, size: int, *, newest: bool) -> bool:
        repair = self._repair and newest
        state = self._read_header(fd, path, WAL_MAGIC)
        if state == TORN:
            # Created but its header never fully reached the disk: holds nothing.
            if repair:
                logger.warning(
                    "Truncated %s: its header was torn; dropped %d bytes", path, size
                )
                truncate(path, 0, header=WAL_MAGIC)
                return True
            logger.warning("Skipped %s: empty or torn header, no records", path)
            return True
        scan = ScanResult()
        batches = []
        for offset, kind, payload in scan_file(fd, FILE_HEADER_SIZE, size, scan):
            try:
                payload = batch_payload(kind, payload)
                only = self.only
                batches.append(
                    decode_batch(payload) if only is None else only.batch(payload)
                )
            except CorruptRecordError as exc:
                self._count_skips(1, len(payload), path, f"record at {offset}: {exc}")
                continue
            if state == GOOD:  # else held until the header is judged
                self._catalog.add_batch(batches.pop())
        self.bytes_read += scan.bytes_read
        if not self._settle_header(path, WAL_MAGIC, state, bool(batches), "log"):
            return False
        for batch in batches:
            self._catalog.add_batch(batch)
        self._count_skips(scan.skipped_records, scan.skipped_bytes, path)
        if scan.torn_bytes:
            if repair:
                saved = save_bytes(self._dir, path, fd, scan.valid_end, size)
                logger.warning(
                    "Truncated torn tail of %s: dropped %d bytes after offset %d "
                    "(copied to %s)",
                    path,
                    scan.torn_bytes,
                    scan.valid_end,
                    saved,
                )
                truncate(path, scan.valid_end)
            elif self._repair:
                self._count_skips(1, scan.torn_bytes, path, "torn tail of an old log")
        return True

    def _remove_covered(self, covered: list[tuple[int, Path]]) -> None:
        """Writer: delete logs a checkpoint covers, unless a log reader needs them.

        A file that is not a sound log is moved into ``damaged/``, never deleted.
        """
        kept = logs_to_keep(self._dir, self._log_retention, [s for s, _ in covered])
        self.kept_logs = sorted(kept)
        for seq, path in covered:
            if seq in kept:
                continue
            opened = self._open(path, limit=MAX_FILE_BYTES)
            if opened is None:
                continue
            fd, _size = opened
            try:
                state = header_state(os.pread(fd, FILE_HEADER_SIZE, 0), WAL_MAGIC, path)
            finally:
                os.close(fd)
            if state == FOREIGN:
                self._damage(path, "not a StatsYard log")
                continue
            logger.info("Removed %s: a checkpoint covers it", path)
            path.unlink()
            self.directory_changed = True


__all__ = ["Loader", "Reload"]
