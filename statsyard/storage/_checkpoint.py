"""Checkpoints: write a frozen head's encoded blocks, committed by an index record."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import attrs

from statsyard.exceptions import WriteError
from statsyard.storage._catalog import BlockEntry, Catalog, SegmentInfo
from statsyard.storage._files import fsync_directory, index_name, segment_name
from statsyard.storage._framing import (
    INDEX_MAGIC,
    SEGMENT_MAGIC,
    pack_file_header,
    pack_record,
)
from statsyard.storage._index import KIND_CHECKPOINT, encode_checkpoint
from statsyard.storage._log import append_all

logger = logging.getLogger("statsyard.storage")


@attrs.frozen
class Written:
    """A checkpoint made durable, not yet shown to queries."""

    segment: SegmentInfo
    covered: int
    data_size: int
    record_size: int
    entries: list[BlockEntry]


class SegmentWriter:
    """Appends checkpoints to the newest segment, creating segments as they fill.

    Args:
        directory: the data directory.
        segment_bytes: a segment's data file takes no new checkpoint once
            this big.
    """

    def __init__(self, directory: Path, segment_bytes: int) -> None:
        self._dir = directory
        self._segment_bytes = segment_bytes
        self._dat_fd = -1
        self._idx_fd = -1

    def start(self, catalog: Catalog) -> None:
        """Open the newest segment's files for appending, if there is one."""
        if catalog.segments:
            seq = max(catalog.segments)
            self._dat_fd = os.open(
                self._dir / segment_name(seq), os.O_WRONLY | os.O_APPEND
            )
            self._idx_fd = os.open(
                self._dir / index_name(seq), os.O_WRONLY | os.O_APPEND
            )

    def write(
        self, catalog: Catalog, covered: int, data: bytes, entries: list[BlockEntry]
    ) -> Written:
        """Append encoded blocks and the checkpoint record listing them.

        Both files are fsynced; on failure both are truncated back.

        Args:
            catalog: the storage's catalog (for its segments).
            covered: the newest log file whose points are all in ``data``.
            data: the blocks (see ``_compaction.encode_head``).
            entries: each block's series, length, points and time span.

        Raises:
            WriteError: a write, fsync or new segment failed; nothing changed.
        """
        segment = catalog.segments.get(max(catalog.segments, default=0))
        if (
            segment is None
            or segment.sealed  # a merge may take it, or made it
            or segment.dat_size >= self._segment_bytes
        ):
            segment = self._new_segment(catalog)
        record = pack_record(
            KIND_CHECKPOINT, encode_checkpoint(covered, segment.dat_size, entries)
        )
        dat_name, idx_name = segment_name(segment.seq), index_name(segment.seq)
        append_all(self._dat_fd, segment.dat_size, data, dat_name, self._dir)
        try:
            os.fsync(self._dat_fd)
            append_all(self._idx_fd, segment.idx_size, record, idx_name, self._dir)
            os.fsync(self._idx_fd)
        except OSError as exc:
            self._undo(segment)
            if isinstance(exc, WriteError):
                raise
            raise WriteError(exc.errno, f"could not fsync a segment: {exc}") from exc
        return Written(segment, covered, len(data), len(record), entries)

    def _undo(self, segment: SegmentInfo) -> None:
        for fd, size in (
            (self._dat_fd, segment.dat_size),
            (self._idx_fd, segment.idx_size),
        ):
            try:
                os.ftruncate(fd, size)
            except OSError as exc:
                logger.error("Could not undo a failed checkpoint: %s", exc)

    def _new_segment(self, catalog: Catalog) -> SegmentInfo:
        """Create the next segment's data and index files (each atomically)."""
        seq = max(catalog.segments, default=0) + 1
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
        self.close()
        self._dat_fd, self._idx_fd = dat_fd, idx_fd
        for older in catalog.segments.values():
            older.sealed = True  # only the newest takes checkpoints
        segment = catalog.segments[seq] = SegmentInfo(seq)
        return segment

    def _open_for_append(self, name: str) -> int:
        try:
            return os.open(self._dir / name, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise WriteError(exc.errno, f"could not open {name}: {exc}") from exc

    def close(self) -> None:
        """Close the segment's files."""
        for fd in (self._dat_fd, self._idx_fd):
            if fd != -1:
                os.close(fd)
        self._dat_fd = self._idx_fd = -1
