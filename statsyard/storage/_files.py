"""Names and small helpers for the files of a data directory."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Final

from statsyard.exceptions import NotADataDirectoryError

logger = logging.getLogger("statsyard.storage")

MARKER_NAME: Final = "STATSYARD"
MARKER_TEXT: Final = b"StatsYard data directory\nformat 2\n"

WAL_PATTERN: Final = re.compile(r"^wal-(\d{16})\.log$")
SEGMENT_PATTERN: Final = re.compile(r"^seg-(\d{16})\.dat$")
INDEX_PATTERN: Final = re.compile(r"^seg-(\d{16})\.idx$")


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
        content = marker.read_bytes()
        if content != MARKER_TEXT:
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


def fsync_directory(directory: Path) -> None:
    """Make the directory's entries (created, renamed, removed files) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
