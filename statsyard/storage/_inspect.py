"""What recovery shares: judging file headers, opening files safely, counting damage.

Every file of a data directory is untrusted input. :class:`FileInspector`
opens only regular files (``O_NONBLOCK``, ``fstat``), judges headers, and
handles a damaged file the one way: the writer moves it into ``damaged/``,
a reader skips it; both count it and say so at WARNING.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from statsyard.exceptions import CorruptRecordError
from statsyard.storage._catalog import Catalog
from statsyard.storage._files import DamagedFileError, open_regular, quarantine
from statsyard.storage._framing import (
    FILE_HEADER_SIZE,
    INDEX_MAGIC,
    check_file_header,
    pack_file_header,
)

logger = logging.getLogger("statsyard.storage")

GOOD, TORN, DAMAGED, FOREIGN = "good", "torn", "damaged", "foreign"


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
        return TORN if magic.startswith(header[:8]) else FOREIGN
    if header[:8] != magic:
        return FOREIGN
    try:
        check_file_header(header, magic, str(path))
    except CorruptRecordError as exc:
        if "unsupported format version" in str(exc):
            raise
        return DAMAGED
    return GOOD


class FileInspector:
    """Opens, judges and counts the files of a data directory while loading it.

    Args:
        directory: the data directory.
        catalog: the catalog being filled.
        repair: the writer: repair and quarantine; else read only.
        settled: (reader) the directory did not change since the last
            attempt, so what looks like a concurrent change is damage.
    """

    def __init__(
        self, directory: Path, catalog: Catalog, *, repair: bool, settled: bool
    ) -> None:
        self._dir = directory
        self._catalog = catalog
        self._repair = repair
        self._settled = settled
        self.bytes_read = 0
        """File bytes read."""
        self.directory_changed = False
        """A file was moved or removed (the writer must fsync the directory)."""

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
        if state == FOREIGN and not found:
            self._damage(path, f"not a StatsYard {what}")
            return False
        if state in (DAMAGED, FOREIGN):
            self._catalog.skipped_records += 1
            if self._repair:
                rewrite_header(path, magic)
                logger.warning("Rewrote the damaged file header of %s", path)
            else:
                logger.warning("Skipped the damaged file header of %s", path)
        return True


def truncate(path: Path, size: int, *, header: bytes | None = None) -> None:
    """Cut ``path`` to ``size`` bytes (writing a fresh ``header`` at 0), fsynced."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        if size == 0 and header is not None:
            os.write(fd, pack_file_header(header))
        os.fsync(fd)
    finally:
        os.close(fd)


def rewrite_header(path: Path, magic: bytes) -> None:
    """Write a sound header over a damaged one (it carries no data), fsynced."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, pack_file_header(magic), 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def create_index(path: Path) -> None:
    """A new, empty index file (atomically: written aside, fsynced, renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(pack_file_header(INDEX_MAGIC))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
