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
from statsyard.storage._batch import KIND_BATCH, decode_batch
from statsyard.storage._catalog import Catalog, SegmentInfo
from statsyard.storage._files import (
    INDEX_PATTERN,
    MAX_FILE_BYTES,
    SEGMENT_PATTERN,
    WAL_PATTERN,
    DamagedFileError,
    index_name,
    numbered,
    open_regular,
    quarantine,
    save_bytes,
    segment_name,
)
from statsyard.storage._framing import (
    FILE_HEADER_SIZE,
    INDEX_MAGIC,
    SEGMENT_MAGIC,
    WAL_MAGIC,
    ScanResult,
    check_file_header,
    pack_file_header,
    scan_file,
)
from statsyard.storage._index import KIND_CHECKPOINT, BlockRef, decode_checkpoint
from statsyard.storage._log_watch import LogRetention
from statsyard.storage._rescue import rescue_blocks, write_rescue_records
from statsyard.storage._retention import logs_to_keep

logger = logging.getLogger("statsyard.storage")

_GOOD, _TORN, _DAMAGED, _FOREIGN = "good", "torn", "damaged", "foreign"


class Reload(Exception):  # noqa: N818 (internal signal, not an error)
    """A concurrent writer changed the directory under a reader: load again."""


def header_state(header: bytes, magic: bytes, path: Path) -> str:
    """How a file's first 16 bytes look: good, torn, damaged or foreign.

    * torn: shorter than a header, but what is there is the magic's start
      (a file created by a crash before its header reached the disk);
    * damaged: the magic is right but the header fails its checksum;
    * foreign: not a StatsYard file of this kind at all.

    Raises:
        CorruptRecordError: a sound header of a newer format version: a
            newer StatsYard wrote it, and this one must not touch it.
    """
    if len(header) < FILE_HEADER_SIZE:
        return _TORN if magic.startswith(header[:8]) else _FOREIGN
    if header[:8] != magic:
        return _FOREIGN
    try:
        check_file_header(header, magic, str(path))
    except CorruptRecordError as exc:
        if "unsupported format version" in str(exc):
            raise
        return _DAMAGED
    return _GOOD


class Loader:
    """Fills a :class:`Catalog` from the files of a data directory.

    Args:
        directory: the data directory.
        catalog: an empty catalog to fill.
        repair: the writer: repair and quarantine; else read only.
        log_retention: asked which covered logs to keep (writer only).
        settled: (reader) the directory did not change since the last
            attempt, so what looks like a concurrent checkpoint is damage:
            skip it (counted) instead of raising :class:`Reload`.
    """

    def __init__(
        self,
        directory: Path,
        catalog: Catalog,
        *,
        repair: bool,
        log_retention: LogRetention | None = None,
        settled: bool = False,
    ) -> None:
        self._dir = directory
        self._catalog = catalog
        self._repair = repair
        self._log_retention = log_retention
        self._settled = settled
        self.bytes_read = 0
        """File bytes read."""
        self.kept_logs: list[int] = []
        """Covered logs left on disk for log readers."""
        self.directory_changed = False
        """A file was moved or removed (the writer must fsync the directory)."""

    # -- the whole directory ------------------------------------------------------

    def load(self) -> None:
        """Read segment indexes (rescuing unlisted blocks), then uncovered logs.

        Raises:
            Reload: (reader) a checkpoint changed the files meanwhile.
            CorruptRecordError: a file of a newer format version.
        """
        catalog = self._catalog
        indexes = numbered(self._dir, INDEX_PATTERN)
        data_files = {seq for seq, _ in numbered(self._dir, SEGMENT_PATTERN)}
        newest = max([0, *data_files, *(seq for seq, _ in indexes)])
        for seq, path in indexes:
            if self._load_segment(seq, path):
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

    def _damage(self, path: Path, reason: str) -> None:
        """Count a damaged file: the writer moves it aside, a reader skips it."""
        self._catalog.skipped_records += 1
        if self._repair:
            try:
                quarantine(self._dir, path, reason)
            except FileNotFoundError:
                return
            self.directory_changed = True
        else:
            logger.warning("Skipped %s: %s", path, reason)

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

    def _open(self, path: Path, *, limit: int | None) -> tuple[int, int] | None:
        """Open a data file safely; None (after counting it) if it is gone or damaged.

        Raises:
            Reload: (reader, not settled) it vanished: a writer removed it.
        """
        try:
            return open_regular(path, max_bytes=limit)
        except FileNotFoundError:
            if not self._repair and not self._settled:
                raise Reload from None
            return None
        except DamagedFileError as exc:
            self._damage(path, exc.reason)
            return None

    def _read_header(self, fd: int, path: Path, magic: bytes) -> str:
        """Read and judge a file's header (see :func:`header_state`)."""
        header = os.pread(fd, FILE_HEADER_SIZE, 0)
        self.bytes_read += len(header)
        return header_state(header, magic, path)

    def _settle_header(
        self, path: Path, magic: bytes, state: str, found: bool, what: str
    ) -> bool:
        """Decide on a damaged or foreign header once the content was scanned.

        A file holding sound records (or blocks) is ours whatever its header
        says: the writer rewrites the header (it carries no data). A foreign
        one holding nothing of ours is set aside.

        Returns:
            False when the file was set aside.
        """
        if state == _FOREIGN and not found:
            self._damage(path, f"not a StatsYard {what}")
            return False
        if state in (_DAMAGED, _FOREIGN):
            self._catalog.skipped_records += 1
            if self._repair:
                _rewrite_header(path, magic)
                logger.warning("Rewrote the damaged file header of %s", path)
            else:
                logger.warning("Skipped the damaged file header of %s", path)
        return True

    # -- segments -----------------------------------------------------------------

    def _load_segment(self, seq: int, path: Path) -> bool:
        """Load one segment's index and rescue blocks it does not list.

        Returns:
            Whether the index was usable (else its data file is an orphan).
        """
        dat_path = self._dir / segment_name(seq)
        opened_dat = self._open(dat_path, limit=None)
        if opened_dat is None:
            if self._repair or self._settled:
                self._damage(path, f"its data file {dat_path.name} is missing")
            return False
        dat_fd, dat_size = opened_dat
        try:
            opened = self._open(path, limit=MAX_FILE_BYTES)
            if opened is None:
                return False
            fd, size = opened
            try:
                return self._read_index(seq, path, fd, size, dat_fd, dat_size)
            finally:
                os.close(fd)
        finally:
            os.close(dat_fd)

    def _read_index(
        self, seq: int, path: Path, fd: int, size: int, dat_fd: int, dat_size: int
    ) -> bool:
        catalog = self._catalog
        dat_path = self._dir / segment_name(seq)
        state = self._read_header(fd, path, INDEX_MAGIC)
        if state == _TORN:
            # Created by a checkpoint that never finished: holds no record.
            if self._repair:
                logger.warning(
                    "Reset %s: created by a checkpoint that never finished", path
                )
                _truncate(path, 0, header=INDEX_MAGIC)
                size = FILE_HEADER_SIZE
            else:
                logger.warning("Skipped %s: empty or torn header, no records", path)
        dat_state = self._read_header(dat_fd, dat_path, SEGMENT_MAGIC)
        if dat_state == _TORN and self._repair:
            _truncate(dat_path, 0, header=SEGMENT_MAGIC)
            dat_size = FILE_HEADER_SIZE
        segment = SegmentInfo(seq, dat_size=dat_size, idx_size=size)
        scan = ScanResult()
        listed: list[tuple[int, int]] = []
        damaged = state in (_DAMAGED, _FOREIGN)
        covered = 0
        for offset, kind, payload in scan_file(
            fd, FILE_HEADER_SIZE, max(size, FILE_HEADER_SIZE), scan
        ):
            try:
                if kind != KIND_CHECKPOINT:
                    raise CorruptRecordError(f"unknown record kind {kind}")
                checkpoint = decode_checkpoint(seq, payload, dat_size)
            except CorruptRecordError as exc:
                self._count_skips(1, len(payload), path, f"record at {offset}: {exc}")
                damaged = True
                continue
            covered = max(covered, checkpoint.covered)
            if checkpoint.blocks:
                listed.append((checkpoint.blocks[0][2].offset, checkpoint.dat_end))
            for metric, entity, ref in checkpoint.blocks:
                catalog.add_loaded_block(metric, entity, ref)
                segment.cover(ref.min_ts, ref.max_ts)
        self.bytes_read += scan.bytes_read
        if not self._settle_header(
            path, INDEX_MAGIC, state, bool(listed), "segment index"
        ):
            return False
        self._count_skips(scan.skipped_records, scan.skipped_bytes, path)
        catalog.covered = max(catalog.covered, covered)
        if scan.torn_bytes and self._repair:
            saved = save_bytes(self._dir, path, fd, scan.valid_end, size)
            logger.warning(
                "Truncated torn tail of %s: dropped %d bytes after offset %d "
                "(copied to %s)",
                path,
                scan.torn_bytes,
                scan.valid_end,
                saved,
            )
            _truncate(path, scan.valid_end)
            segment.idx_size = scan.valid_end
        if scan.skipped_records:
            damaged = True
        found = self._rescue(segment, dat_fd, listed, covered, damaged)
        if not self._settle_header(
            dat_path, SEGMENT_MAGIC, dat_state, bool(listed or found), "data file"
        ):
            self._damage(path, f"its data file {dat_path.name} is not one")
            return True  # nothing left to rescue from the data file
        catalog.segments[seq] = segment
        return True

    def _rescue(
        self,
        segment: SegmentInfo,
        dat_fd: int,
        listed: list[tuple[int, int]],
        covered: int,
        damaged: bool,
    ) -> bool:
        """Find the blocks of ``segment`` that no good record lists, and list them.

        Returns whether it found any.

        Gaps between listed ranges, and the data past the last of them,
        hold blocks of a checkpoint whose record is damaged or lost (or of
        one that never committed: those points are also still in the logs,
        and a query reads a point written twice once).
        """
        gaps: list[tuple[int, int]] = []
        at = FILE_HEADER_SIZE
        for start, end in sorted(listed):
            if start > at:
                gaps.append((at, start))
            at = max(at, end)
        if segment.dat_size > at:
            gaps.append((at, segment.dat_size))
        if not gaps:
            return False
        seq = segment.seq
        name = segment_name(seq)
        found, skipped, read, tail = rescue_blocks(dat_fd, gaps, name, seq)
        self.bytes_read += read
        self._catalog.skipped_records += skipped
        if self._repair and tail is not None and gaps[-1][1] == segment.dat_size:
            # Unreadable bytes end the file (a checkpoint cut short): copy
            # them aside, then cut them, so that new blocks follow sound ones.
            path = self._dir / name
            saved = save_bytes(self._dir, path, dat_fd, tail, segment.dat_size)
            logger.warning(
                "Truncated torn tail of %s: dropped %d bytes after offset %d "
                "(copied to %s)",
                path,
                segment.dat_size - tail,
                tail,
                saved,
            )
            _truncate(path, tail)
            segment.dat_size = tail
        if not found:
            if skipped or damaged:
                logger.warning("No readable block in the unlisted bytes of %s", name)
            return False
        for metric, entity, ref in found:
            self._catalog.add_loaded_block(metric, entity, ref)
            segment.cover(ref.min_ts, ref.max_ts)
        logger.warning(
            "Found %d blocks (%d points) in %s that its index did not list%s",
            len(found),
            sum(ref.points for _m, _e, ref in found),
            name,
            "; listed them in a new checkpoint record" if self._repair else "",
        )
        if self._repair:
            idx_path = self._dir / index_name(seq)
            segment.idx_size = write_rescue_records(idx_path, covered, found)
        return True

    def _load_orphan(self, seq: int, *, newest: bool) -> None:
        """A data file without a usable index: rescue its blocks under a new index."""
        path = self._dir / segment_name(seq)
        opened = self._open(path, limit=None)
        if opened is None:
            return
        fd, size = opened
        try:
            state = self._read_header(fd, path, SEGMENT_MAGIC)
            if size <= FILE_HEADER_SIZE and state != _FOREIGN:
                if self._repair and newest:
                    # Crashed between creating the data and the index file.
                    logger.warning("Removed %s: its index file was never created", path)
                    path.unlink()
                    self.directory_changed = True
                else:
                    logger.warning("Skipped %s: it has no index file", path)
                    self._catalog.skipped_records += 1
                return
            logger.warning("%s has no index file: scanning it for blocks", path)
            if self._repair:
                _create_index(self._dir / index_name(seq))
            segment = SegmentInfo(seq, dat_size=size)
            found = self._rescue(segment, fd, [], 0, True)
            if not self._settle_header(path, SEGMENT_MAGIC, state, found, "data file"):
                if self._repair:
                    (self._dir / index_name(seq)).unlink()  # the empty one made above
                return
            self._catalog.skipped_records += 1
            self._catalog.segments[seq] = segment
        finally:
            os.close(fd)

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
        if state == _TORN:
            # Created but its header never fully reached the disk: holds nothing.
            if repair:
                logger.warning(
                    "Truncated %s: its header was torn; dropped %d bytes", path, size
                )
                _truncate(path, 0, header=WAL_MAGIC)
                return True
            logger.warning("Skipped %s: empty or torn header, no records", path)
            return True
        scan = ScanResult()
        batches = []
        for offset, kind, payload in scan_file(fd, FILE_HEADER_SIZE, size, scan):
            try:
                if kind != KIND_BATCH:
                    raise CorruptRecordError(f"unknown record kind {kind}")
                batches.append(decode_batch(payload))
            except CorruptRecordError as exc:
                self._count_skips(1, len(payload), path, f"record at {offset}: {exc}")
                continue
            if state == _GOOD:  # else held until the header is judged
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
                _truncate(path, scan.valid_end)
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
            if state == _FOREIGN:
                self._damage(path, "not a StatsYard log")
                continue
            logger.info("Removed %s: a checkpoint covers it", path)
            path.unlink()
            self.directory_changed = True


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


def _rewrite_header(path: Path, magic: bytes) -> None:
    """Write a sound header over a damaged one (it carries no data), fsynced."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, pack_file_header(magic), 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_index(path: Path) -> None:
    """A new, empty index file (atomically: written aside, fsynced, renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(pack_file_header(INDEX_MAGIC))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


__all__ = ["BlockRef", "Loader", "Reload", "header_state"]
