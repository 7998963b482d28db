"""Recovering segments: each index with its data file, and blocks no index lists.

Blocks that no sound checkpoint record lists (a damaged or lost record, a
checkpoint that never committed) are found again by scanning the data file
(``_rescue.py``) and listed by new records; unreadable bytes ending a data
file are copied into ``damaged/`` before they are cut.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from statsyard.exceptions import CorruptRecordError
from statsyard.storage._catalog import SegmentInfo
from statsyard.storage._files import (
    MAX_FILE_BYTES,
    DamagedFileError,
    index_name,
    open_regular,
    save_bytes,
    segment_name,
)
from statsyard.storage._framing import (
    FILE_HEADER_SIZE,
    INDEX_MAGIC,
    MAX_RECORD_PAYLOAD,
    RECORD_HEADER_SIZE,
    RECORD_MARKER,
    SEGMENT_MAGIC,
    ScanResult,
    record_at,
    scan_file,
)
from statsyard.storage._index import (
    KIND_CHECKPOINT,
    KIND_MERGE,
    decode_checkpoint,
    decode_merge,
)
from statsyard.storage._inspect import (
    DAMAGED,
    FOREIGN,
    TORN,
    FileInspector,
    create_index,
    truncate,
)
from statsyard.storage._lookup import Listing, SeriesSelection, listing_of
from statsyard.storage._rescue import rescue_blocks, write_rescue_records

logger = logging.getLogger("statsyard.storage")


class SegmentRecovery(FileInspector):
    """Loads segment indexes into the catalog, finding unlisted blocks again."""

    only: SeriesSelection | None = None
    """(reader) Index only these series' blocks; every record is still read."""
    superseded: dict[int, int]
    """Segment -> the merged segment that replaced it (its merge record
    says so): loaded, then dropped (the writer removes its files)."""

    def _listing(self, seq: int, payload: bytes, dat_size: int) -> Listing:
        """A checkpoint record's blocks (those of :attr:`only`, if set).

        Raises:
            CorruptRecordError: the record is damaged.
        """
        if self.only is not None:
            return self.only.checkpoint(seq, payload, dat_size)
        return listing_of(decode_checkpoint(seq, payload, dat_size))

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
        if state == TORN:
            # Created by a checkpoint that never finished: holds no record.
            if self._repair:
                logger.warning(
                    "Reset %s: created by a checkpoint that never finished", path
                )
                truncate(path, 0, header=INDEX_MAGIC)
                size = FILE_HEADER_SIZE
            else:
                logger.warning("Skipped %s: empty or torn header, no records", path)
        dat_state = self._read_header(dat_fd, dat_path, SEGMENT_MAGIC)
        if dat_state == TORN and self._repair:
            truncate(dat_path, 0, header=SEGMENT_MAGIC)
            dat_size = FILE_HEADER_SIZE
        segment = SegmentInfo(seq, dat_size=dat_size, idx_size=size)
        scan = ScanResult()
        listed: list[tuple[int, int]] = []
        damaged = state in (DAMAGED, FOREIGN)
        covered = 0
        for offset, kind, payload in scan_file(
            fd, FILE_HEADER_SIZE, max(size, FILE_HEADER_SIZE), scan
        ):
            try:
                if kind == KIND_MERGE:
                    decode_merge(payload)  # read by find_merges()
                    continue
                if kind != KIND_CHECKPOINT:
                    raise CorruptRecordError(f"unknown record kind {kind}")
                listing = self._listing(seq, payload, dat_size)
            except CorruptRecordError as exc:
                self._count_skips(1, len(payload), path, f"record at {offset}: {exc}")
                damaged = True
                continue
            covered = max(covered, listing.covered)
            segment.count(
                len(listing.blocks), sum(ref.points for _m, _e, ref in listing.blocks)
            )
            if listing.extent is not None:
                listed.append(listing.extent)
            if listing.span is not None:
                segment.cover(*listing.span)
            for metric, entity, ref in listing.blocks:
                catalog.add_loaded_block(metric, entity, ref)
        self.bytes_read += scan.bytes_read
        if not self._settle_header(
            path, INDEX_MAGIC, state, bool(listed), "segment index"
        ):
            return False
        self._count_skips(scan.skipped_records, scan.skipped_bytes, path)
        catalog.covered = max(catalog.covered, covered)
        segment.covered = covered
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
            truncate(path, scan.valid_end)
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
            truncate(path, tail)
            segment.dat_size = tail
        if not found:
            if skipped or damaged:
                logger.warning("No readable block in the unlisted bytes of %s", name)
            return False
        only = self.only
        for metric, entity, ref in found:
            if only is None or only.wants(metric, entity):
                self._catalog.add_loaded_block(metric, entity, ref)
            segment.cover(ref.min_ts, ref.max_ts)
            segment.count(1, ref.points)
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

    def _merge_sources(self, path: Path) -> list[int] | None:
        """The sources named by the merge record that begins index ``path``.

        Returns:
            None when the index does not begin with a sound merge record.
        """
        try:
            fd, size = open_regular(path, max_bytes=MAX_FILE_BYTES)
        except (OSError, DamagedFileError):
            return None  # judged again (and counted) when the index is loaded
        try:
            head = os.pread(fd, RECORD_HEADER_SIZE, FILE_HEADER_SIZE)
            if len(head) < RECORD_HEADER_SIZE or head[:4] != RECORD_MARKER:
                return None
            length = int.from_bytes(head[8:12], "little")
            if length > min(size, MAX_RECORD_PAYLOAD):
                return None
            data = head + os.pread(fd, length, FILE_HEADER_SIZE + RECORD_HEADER_SIZE)
        finally:
            os.close(fd)
        found = record_at(data, 0)
        if found is None or found[0] != KIND_MERGE:
            return None
        try:
            return decode_merge(found[1])
        except CorruptRecordError:
            return None

    def find_merges(self, indexes: list[tuple[int, Path]]) -> set[int]:
        """Read the merge records of merged segments, before anything is loaded.

        A committed merge (its data file in place) supersedes its sources:
        they are not loaded, and the writer removes their files. An index
        beginning with a merge record whose data file is missing is a merge
        cut short before its commit (the rename of its data file): its
        sources hold every point, so it is not loaded, and the writer
        removes it.

        Returns:
            The unfinished merges' segment numbers (not to load).
        """
        unfinished: set[int] = set()
        for seq, path in indexes:
            sources = self._merge_sources(path)
            if sources is None:
                continue
            if not (self._dir / segment_name(seq)).exists():
                unfinished.add(seq)
                if all((self._dir / segment_name(s)).exists() for s in sources):
                    if self._repair:  # cut short: its sources hold every point
                        logger.warning("Removed %s: a merge that never committed", path)
                        path.unlink()
                        self.directory_changed = True
                else:  # committed, then its data file was lost: damage
                    self._damage(
                        path,
                        f"the data file {segment_name(seq)} of a committed merge "
                        f"is missing, and so are some of its sources {sources}",
                    )
                continue
            for source in sources:
                if source < seq:  # a merge replaces older segments only
                    self.superseded.setdefault(source, seq)
        return unfinished

    def remove_superseded(self, seq: int) -> None:
        """Writer: delete the files of a segment a committed merge replaced.

        The data file goes first: an index left alone by a crash is still
        named by the merge record and removed at the next open.
        """
        for name in (segment_name(seq), index_name(seq)):
            try:
                (self._dir / name).unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                logger.error("Could not remove %s (merged): %s", name, exc)
                continue
            self.directory_changed = True
            logger.info(
                "Removed %s: merged into segment %d", name, self.superseded[seq]
            )

    def _load_orphan(self, seq: int, *, newest: bool) -> None:
        """A data file without a usable index: rescue its blocks under a new index."""
        path = self._dir / segment_name(seq)
        opened = self._open(path, limit=None)
        if opened is None:
            return
        fd, size = opened
        try:
            state = self._read_header(fd, path, SEGMENT_MAGIC)
            if size <= FILE_HEADER_SIZE and state != FOREIGN:
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
                create_index(self._dir / index_name(seq))
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
