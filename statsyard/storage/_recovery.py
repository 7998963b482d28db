"""Loading a data directory into a catalog: indexes, then the logs they do not cover.

The writer loads with ``repair``: torn tails of the newest files are
truncated, logs a checkpoint covers are removed. A reader never writes a
byte; when a concurrent writer's checkpoint changes the files under it, it
raises :class:`Reload` and starts over. The rules are in ``docs/storage.md``
(Recovery).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from statsyard.exceptions import CorruptRecordError
from statsyard.storage._batch import KIND_BATCH, decode_batch
from statsyard.storage._catalog import Catalog, SegmentInfo
from statsyard.storage._files import (
    INDEX_PATTERN,
    SEGMENT_PATTERN,
    WAL_PATTERN,
    numbered,
    segment_name,
)
from statsyard.storage._framing import (
    FILE_HEADER_SIZE,
    INDEX_MAGIC,
    SEGMENT_MAGIC,
    WAL_MAGIC,
    check_file_header,
    pack_file_header,
    scan_records,
)
from statsyard.storage._index import KIND_CHECKPOINT, decode_checkpoint
from statsyard.storage._log_watch import LogRetention
from statsyard.storage._retention import logs_to_keep

logger = logging.getLogger("statsyard.storage")


class Reload(Exception):  # noqa: N818 (internal signal, not an error)
    """A concurrent writer changed the directory under a reader: load again."""


class Loader:
    """Fills a :class:`Catalog` from the files of a data directory.

    Args:
        directory: the data directory.
        catalog: an empty catalog to fill.
        repair: the writer: truncate torn tails, remove covered logs.
        log_retention: asked which covered logs to keep (writer only).
    """

    def __init__(
        self,
        directory: Path,
        catalog: Catalog,
        *,
        repair: bool,
        log_retention: LogRetention | None = None,
    ) -> None:
        self._dir = directory
        self._catalog = catalog
        self._repair = repair
        self._log_retention = log_retention
        self.bytes_read = 0
        """File bytes read."""
        self.kept_logs: list[int] = []
        """Covered logs left on disk for log readers."""
        self.directory_changed = False
        """A file was removed (the writer must fsync the directory)."""

    def load(self) -> None:
        """Read segment indexes, then the logs they do not cover.

        Raises:
            Reload: (reader) a checkpoint changed the files meanwhile.
            CorruptRecordError: a file named as a StatsYard file is not one.
        """
        catalog, repair = self._catalog, self._repair
        segments = numbered(self._dir, INDEX_PATTERN)
        data_files = {seq for seq, _ in numbered(self._dir, SEGMENT_PATTERN)}
        for position, (seq, path) in enumerate(segments):
            newest = position == len(segments) - 1
            self._load_segment(seq, path, repair=repair and newest)
            data_files.discard(seq)
        for seq in sorted(data_files):
            path = self._dir / segment_name(seq)
            if repair and seq > max(catalog.segments, default=0):
                # Crashed between creating the data and the index file.
                logger.warning("Removed %s: its index file was never created", path)
                path.unlink()
            else:
                catalog.skipped_records += 1
                logger.warning("Skipped %s: it has no index file", path)
        wals = list(numbered(self._dir, WAL_PATTERN))
        live = [(s, p) for s, p in wals if s > catalog.covered]
        if not repair and live and live[0][0] != catalog.covered + 1:
            raise Reload  # a checkpoint removed logs after we read the indexes
        for position, (seq, path) in enumerate(live):
            newest = position == len(live) - 1
            self._replay_wal(seq, path, repair=repair and newest)
        catalog.wal_seqs = [s for s, _ in live]
        catalog.wal_seq = max([catalog.covered, *(s for s, _ in wals)])
        if repair:
            self._remove_covered([(s, p) for s, p in wals if s <= catalog.covered])

    def _remove_covered(self, covered: list[tuple[int, Path]]) -> None:
        kept = logs_to_keep(self._dir, self._log_retention, [s for s, _ in covered])
        self.kept_logs = sorted(kept)
        for seq, path in covered:
            if seq in kept:
                continue
            with open(path, "rb") as f:
                header = f.read(FILE_HEADER_SIZE)
            if len(header) == FILE_HEADER_SIZE or not WAL_MAGIC.startswith(header[:8]):
                check_file_header(header, WAL_MAGIC, str(path))
            logger.info("Removed %s: a checkpoint covers it", path)
            path.unlink()
            self.directory_changed = True

    def _read_file(self, path: Path) -> bytes:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if not self._repair:
                raise Reload from None
            raise
        self.bytes_read += len(data)
        return data

    def _load_segment(self, seq: int, path: Path, *, repair: bool) -> None:
        """Load one segment's index; ``repair`` the newest one's tails."""
        catalog = self._catalog
        data = self._read_file(path)
        dat_path = self._dir / segment_name(seq)
        segment = SegmentInfo(seq)
        try:
            segment.dat_size = dat_path.stat().st_size
        except FileNotFoundError:
            if not self._repair:
                raise Reload from None
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
            _truncate(path, 0, header=INDEX_MAGIC)
            _truncate(dat_path, 0, header=SEGMENT_MAGIC)
            catalog.segments[seq] = SegmentInfo(seq)
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
            catalog.covered = max(catalog.covered, checkpoint.covered)
            dat_end = max(dat_end, checkpoint.dat_end)
            for metric, entity, ref in checkpoint.blocks:
                catalog.add_loaded_block(metric, entity, ref)
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
                _truncate(path, scan.valid_end)
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
            _truncate(dat_path, dat_end)
            segment.dat_size = dat_end
        catalog.segments[seq] = segment

    def _count_skips(
        self, records: int, size: int, path: Path, detail: str = ""
    ) -> None:
        if not records:
            return
        self._catalog.skipped_records += records
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
                _truncate(path, 0, header=WAL_MAGIC)
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
            self._catalog.add_batch(batch)
        if scan.torn_bytes:
            if repair:
                logger.warning(
                    "Truncated torn tail of %s: dropped %d bytes after offset %d",
                    path,
                    scan.torn_bytes,
                    scan.valid_end,
                )
                _truncate(path, scan.valid_end)
            elif self._repair:
                self._count_skips(1, scan.torn_bytes, path, "torn tail of an old log")


def _truncate(path: Path, size: int, *, header: bytes | None = None) -> None:
    """Cut ``path`` to ``size`` bytes (writing a fresh ``header`` at 0), fsynced."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        if size == 0 and header is not None:
            os.write(fd, pack_file_header(header))
        os.fsync(fd)
    finally:
        os.close(fd)
