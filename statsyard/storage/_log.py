"""The writer's side of the write-ahead log: numbered files, appends, rotation."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from statsyard.exceptions import WriteError
from statsyard.storage._files import fsync_directory, wal_name
from statsyard.storage._framing import WAL_MAGIC, pack_file_header
from statsyard.storage._log_watch import LogEnd

logger = logging.getLogger("statsyard.storage")


def append_all(fd: int, size: int, data: bytes, what: str, directory: Path) -> None:
    """Append ``data`` to ``fd`` (now ``size`` bytes), all or nothing.

    Raises:
        WriteError: the write failed; the file was truncated back to ``size``.
    """
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
            f"could not append {len(data)} bytes to {what} in {directory}: "
            f"{exc.strerror or exc}",
        ) from exc


class LogWriter:
    """Appends records to the newest log file and starts new ones.

    Also keeps the directory's durability: whatever created or removed a
    file calls :meth:`note_directory_changed`, and :meth:`sync` fsyncs the
    directory too.

    Args:
        directory: the data directory.
        seqs: numbers of the live logs, oldest first (shared with the
            catalog; new logs are appended to it).
        seq: the newest log number (or the covered number when none exists).
    """

    def __init__(self, directory: Path, seqs: list[int], seq: int) -> None:
        self._dir = directory
        self.seqs = seqs
        self.seq = seq
        self.fd = -1
        self.size = 0
        self.end = LogEnd(0, 0, None)
        """The published end of the acknowledged log (see :class:`LogEnd`)."""
        self._unsynced = False
        self._dir_unsynced = False

    def start(self) -> None:
        """Append to the newest live log, or create the next one."""
        if self.seqs:
            seq = self.seqs[-1]
            self.fd = os.open(self._dir / wal_name(seq), os.O_WRONLY | os.O_APPEND)
            self.seq = seq
            self.size = os.fstat(self.fd).st_size
            self.end = LogEnd(seq, self.size, None)
            # A writer that died (in this process) may have left it unsynced.
            self._unsynced = True
        else:
            self.new_log()

    def new_log(self) -> None:
        """Start the next log file (header written, not yet fsynced).

        Raises:
            WriteError: it could not be created.
        """
        seq = self.seq + 1
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
        if self.fd != -1:
            os.close(self.fd)
        self.fd, self.seq, self.size = fd, seq, len(header)
        self.seqs.append(seq)
        self._unsynced = True
        self._dir_unsynced = True
        self.end = LogEnd(seq, len(header), self.end.last_timestamp)

    def rotate(self) -> None:
        """Seal the current log (fsynced) and start the next one.

        Raises:
            WriteError: the fsync or the new file failed.
        """
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise WriteError(exc.errno, f"could not fsync the log: {exc}") from exc
        self.new_log()

    def append(self, record: bytes, last_timestamp: int) -> None:
        """Append one record, all or nothing, and publish the new end.

        Raises:
            WriteError: the write failed; the log is as it was.
        """
        append_all(self.fd, self.size, record, "the log", self._dir)
        self.size += len(record)
        self.end = LogEnd(self.seq, self.size, last_timestamp)
        self._unsynced = True

    def note_directory_changed(self) -> None:
        """A file was created or removed: the next :meth:`sync` fsyncs the directory."""
        self._dir_unsynced = True

    def sync(self) -> None:
        """fsync the log, and the directory when a file came or went since.

        Raises:
            WriteError: an fsync failed (what it did not make durable stays
                marked for the next call).
        """
        try:
            if self._unsynced:
                os.fsync(self.fd)
                self._unsynced = False
            if self._dir_unsynced:
                fsync_directory(self._dir)
                self._dir_unsynced = False
        except OSError as exc:
            raise WriteError(exc.errno, f"could not fsync {self._dir}: {exc}") from exc

    def close(self) -> None:
        """Close the log file (no sync)."""
        if self.fd != -1:
            os.close(self.fd)
            self.fd = -1
