"""Names and small helpers for the files of a data directory."""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from pathlib import Path
from typing import Final

from statsyard.exceptions import NotADataDirectoryError
from statsyard.storage._framing import next_data

logger = logging.getLogger("statsyard.storage")

MARKER_NAME: Final = "STATSYARD"
MARKER_TEXT: Final = b"StatsYard data directory\nformat 5\n"
MARKER_TEXT_4: Final = b"StatsYard data directory\nformat 4\n"
"""A format-4 directory's marker: read as it is, rewritten to format 5 by the
first writer that opens it (a merge writes an index record kind that a
format-4 StatsYard would take for damage, loading a merged segment's sources
beside it, so it must refuse)."""
MARKER_TEXT_3: Final = b"StatsYard data directory\nformat 3\n"
"""A format-3 directory's marker: read as it is, rewritten to format 5 by the
first writer that opens it (its files stay as they are; new log records are
zstd-compressed batches, which a format-3 StatsYard would take for damage,
so it must refuse)."""
MARKER_TEXT_2: Final = b"StatsYard data directory\nformat 2\n"
"""A format-2 directory's marker: read as it is, rewritten to format 5 by the
first writer that opens it (new blocks are version 3 too, which a format-2
StatsYard cannot read)."""
OLDER_MARKERS: Final = (MARKER_TEXT_4, MARKER_TEXT_3, MARKER_TEXT_2)
"""Markers of the older formats this version reads and upgrades."""

MERGE_DAT_TMP: Final = "merge.dat.tmp"
"""Where a merge writes its data file before the commit renames it."""
MERGE_IDX_TMP: Final = "merge.idx.tmp"
"""Where a merge writes its index file before the commit renames it."""

WAL_PATTERN: Final = re.compile(r"^wal-(\d{16})\.log$")
SEGMENT_PATTERN: Final = re.compile(r"^seg-(\d{16})\.dat$")
INDEX_PATTERN: Final = re.compile(r"^seg-(\d{16})\.idx$")

DAMAGED_DIR: Final = "damaged"
"""Sub-directory where the writer moves damaged files (never deletes them)."""
MAX_FILE_BYTES: Final = 2**30
"""Largest log or index file a writer produces (a log rotates at
``segment_bytes`` <= 512 MiB, plus one record <= 256 MiB): a bigger one is
damage (a sparse file, a stray copy), never read."""


_NOT_A_FILE: Final = frozenset(
    {errno.ENXIO, errno.ENODEV, errno.ELOOP, errno.EISDIR, errno.EOPNOTSUPP}
)
"""What ``open`` says of a socket, device or symlink loop named like a file."""


class DamagedFileError(Exception):
    """A file named as a StatsYard file cannot be one (internal signal).

    Attributes:
        reason: what is wrong with it, for the log.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def open_regular(path: Path, *, max_bytes: int | None = None) -> tuple[int, int]:
    """Open a data file for reading, refusing anything but a regular file.

    Opened ``O_NONBLOCK`` so that a FIFO or device named like a data file
    cannot block, then checked with ``fstat`` before a byte is read.

    Returns:
        The descriptor and the file's size.

    Raises:
        FileNotFoundError: it is gone.
        DamagedFileError: it is not a regular file, cannot be opened as one,
            or is bigger than ``max_bytes``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno not in _NOT_A_FILE:
            raise  # missing, no permission, out of descriptors: not damage
        raise DamagedFileError(path, f"cannot be opened: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DamagedFileError(path, f"is a {_kind(info.st_mode)}, not a file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise DamagedFileError(
                path,
                f"is {info.st_size} bytes, more than any writer makes ({max_bytes})",
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"


def quarantine(directory: Path, path: Path, reason: str) -> Path:
    """Move a damaged file into ``damaged/`` of the data directory, logged at WARNING.

    Never deletes: a name already taken there gets a numbered suffix.

    Returns:
        Where it went.
    """
    aside = directory / DAMAGED_DIR
    aside.mkdir(exist_ok=True)
    target = aside / path.name
    number = 0
    while target.exists() or target.is_symlink():
        number += 1
        target = aside / f"{path.name}.{number}"
    os.rename(path, target)
    logger.warning("Moved %s into %s/: %s", path, DAMAGED_DIR, reason)
    return target


def save_bytes(directory: Path, path: Path, fd: int, start: int, end: int) -> Path:
    """Copy bytes ``[start, end)`` of ``fd`` into ``damaged/`` before they are cut.

    Returns:
        The copy's path (``damaged/<name>.<start>``).
    """
    aside = directory / DAMAGED_DIR
    aside.mkdir(exist_ok=True)
    target = aside / f"{path.name}.{start}"
    number = 0
    while target.exists():
        number += 1
        target = aside / f"{path.name}.{start}.{number}"
    with open(target, "xb") as out:
        out.truncate(end - start)  # holes stay holes: only data is copied
        pos = start
        while pos < end:
            data = next_data(fd, pos)
            if data == -1 or data >= end:
                break
            chunk = os.pread(fd, min(2**20, end - data), data)
            if not chunk:
                break
            os.pwrite(out.fileno(), chunk, data - start)
            pos = data + len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return target


def wal_name(seq: int) -> str:
    """File name of write-ahead log number ``seq``."""
    return f"wal-{seq:016d}.log"


def segment_name(seq: int) -> str:
    """File name of the data file of segment ``seq``."""
    return f"seg-{seq:016d}.dat"


def index_name(seq: int) -> str:
    """File name of the index file of segment ``seq``."""
    return f"seg-{seq:016d}.idx"


def numbered(directory: Path, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    """The files of ``directory`` whose names match ``pattern``, by number."""
    found = []
    for name in os.listdir(directory):
        match = pattern.match(name)
        if match is not None:
            found.append((int(match.group(1)), directory / name))
    found.sort()
    return found


def listing(directory: Path) -> list[tuple[str, int, int]]:
    """``(name, size, mtime ns)`` of the data files: equal listings, no change."""
    found = []
    for entry in os.scandir(directory):
        name = entry.name
        if (
            WAL_PATTERN.match(name)
            or SEGMENT_PATTERN.match(name)
            or (INDEX_PATTERN.match(name))
        ):
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            found.append((name, info.st_size, info.st_mtime_ns))
    return sorted(found)


def check_data_directory(directory: Path, *, create: bool) -> None:
    """Make sure ``directory`` is a StatsYard data directory.

    Args:
        directory: the path.
        create: create the directory and its marker when the directory is
            missing or empty (the writer); a reader never creates anything.

    Raises:
        NotADataDirectoryError: the path is a file, holds other things than a
            StatsYard data directory, or (for a reader) does not exist.
    """
    where = str(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADataDirectoryError(
            f"{where} is not a StatsYard data directory: it is not a directory",
            path=where,
        )
    marker = directory / MARKER_NAME
    if directory.is_dir() and marker.is_file():
        with open(marker, "rb") as f:  # a regular file: is_file() said so
            content = f.read(len(MARKER_TEXT) + 1)
        if content != MARKER_TEXT and content not in OLDER_MARKERS:
            raise NotADataDirectoryError(
                f"{where} is not a StatsYard data directory this version can read: "
                f"{MARKER_NAME} holds {content[:60]!r}, expected {MARKER_TEXT!r}",
                path=where,
            )
        return
    if not create:
        reason = (
            "it does not exist" if not directory.exists() else f"no {MARKER_NAME} file"
        )
        raise NotADataDirectoryError(
            f"{where} is not a StatsYard data directory: {reason}", path=where
        )
    if directory.is_dir() and any(directory.iterdir()):
        raise NotADataDirectoryError(
            f"{where} is not a StatsYard data directory: it is not empty and has no "
            f"{MARKER_NAME} file; give an empty or new directory",
            path=where,
        )
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (MARKER_NAME + ".tmp")
    with open(tmp, "wb") as f:
        f.write(MARKER_TEXT)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, marker)
    fsync_directory(directory)
    logger.info("Created data directory %s", where)


def upgrade_marker(directory: Path) -> None:
    """Rewrite a format-2, -3 or -4 marker as format 5 (the writer, once it
    holds the lock): in place, one byte, fsynced; not by a rename, since the
    writer's lock is taken on this inode."""
    with open(directory / MARKER_NAME, "r+b") as f:
        content = f.read(len(MARKER_TEXT) + 1)
        if content not in OLDER_MARKERS:
            return
        f.seek(len(MARKER_TEXT) - 2)
        f.write(MARKER_TEXT[-2:-1])
        f.flush()
        os.fsync(f.fileno())
    logger.info(
        "Upgraded data directory %s from format %s to format 5",
        directory,
        content[-2:-1].decode("ascii"),
    )


def fsync_directory(directory: Path) -> None:
    """Make the directory's entries (created, renamed, removed files) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
